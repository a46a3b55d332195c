"""The end-to-end benchmark's exchange: Binance trade frames over a real WebSocket.

:class:`FeedServer` speaks Binance's side of the protocol with the simulator's own
``ServerSession`` (``ingest.simulator.venues.binance``: the client subscribes with
``SUBSCRIBE`` messages, gets its acks; pings are answered by ``websockets``). Each
connection serves one *group* of symbols: once its subscriptions cover a group, and every
group has a subscriber (so all ingest processes start together), the group's frames go out
pre-encoded as raw unmasked WebSocket text frames, written straight to the socket in large
slices under the transport's back-pressure. The server's own cost per frame is then a memory
copy, so what is measured is ingest and the stages behind it, not a Python sender
(``alphapulse simulate`` sends frame by frame through ``websockets``, which caps it near
ingest's own ceiling).

Frames are rendered here from the synthetic trades with a template (checked against
``get_server("binance").session().render_trades``, byte for byte, by :func:`render_frames`).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Sequence

from websockets.asyncio.server import Server, ServerConnection, serve

from common.contracts import Side, Tick
from ingest.simulator.venues import get_server

SLICE = 1 << 20  # bytes written per transport.write
HIGH_WATER = 8 << 20  # wait while more than this is buffered in the transport


def render_frames(
    natives: Sequence[str],
    ids: Sequence[int],
    *,
    prices: Sequence[str],
    qtys: Sequence[str],
    ms: Sequence[int],
    buyer_maker: Sequence[bool],
) -> list[bytes]:
    """Binance combined-stream ``trade`` frames, as ``render_trades`` writes them."""
    out = [
        b'{"stream":"%s@trade","data":{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"%s",'
        b'"T":%d,"m":%s,"M":true}}'
        % (
            n.lower().encode(),
            t,
            n.encode(),
            i,
            p.encode(),
            q.encode(),
            t,
            b"true" if m else b"false",
        )
        for n, i, p, q, t, m in zip(natives, ids, prices, qtys, ms, buyer_maker, strict=True)
    ]
    if out:  # the template must stay what the adapter's server side sends
        side: Side = "sell" if buyer_maker[0] else "buy"
        tick = Tick("binance", "", natives[0], str(ids[0]), float(prices[0]), float(qtys[0]),
                    side, ms[0] * 1_000_000, 0)  # fmt: skip
        want = get_server("binance").session().render_trades([tick])[0]
        if out[0].decode() != want:
            raise AssertionError(f"frame template drifted:\n{out[0]!r}\n{want!r}")
    return out


def ws_frames(payloads: Sequence[bytes]) -> bytes:
    """Payloads as consecutive unmasked WebSocket text frames (server to client)."""
    parts = []
    for p in payloads:
        n = len(p)
        if n < 126:
            parts.append(bytes((0x81, n)))
        elif n < 65536:
            parts.append(struct.pack("!BBH", 0x81, 126, n))
        else:
            parts.append(struct.pack("!BBQ", 0x81, 127, n))
        parts.append(p)
    return b"".join(parts)


class FeedServer:
    """Serve ``groups`` (native symbols → their encoded frames) to one connection each; when
    ``live``, what :meth:`push` hands a group afterwards too, until :meth:`close`. With
    ``hold``, nothing goes out before :meth:`release` (e.g. once the stack has settled)."""

    def __init__(
        self, groups: list[tuple[frozenset[str], bytes]], *, live: bool = False, hold: bool = False
    ) -> None:
        self.groups = groups
        self._go = asyncio.Event()
        if not hold:
            self._go.set()
        self.live: list[asyncio.Queue[bytes | None]] | None = (
            [asyncio.Queue() for _ in groups] if live else None
        )
        self.subscribed = [asyncio.Event() for _ in groups]
        self.sent = [asyncio.Event() for _ in groups]
        self.started_at: float | None = None  # loop time the first byte of trades went out
        self.sent_at: float | None = None  # loop time the last byte was handed to the kernel
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}" + get_server("binance").path

    async def start(self) -> None:
        # No keepalive pings: frames are written raw to the transport in arbitrary slices, so
        # a ping or pong the library wrote between two slices would land inside a frame.
        self._server = await serve(
            self._handle, "127.0.0.1", 0, max_size=None, compression=None, ping_interval=None
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    def push(self, group: int, data: bytes) -> None:
        """Send ``data`` (encoded frames) to ``group``'s connection next (live servers)."""
        assert self.live is not None
        self.live[group].put_nowait(data)

    async def close(self) -> None:
        for queue in self.live or ():
            queue.put_nowait(None)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 10)

    async def all_sent(self) -> None:
        await asyncio.gather(*(e.wait() for e in self.sent))

    async def _handle(self, ws: ServerConnection) -> None:
        session = get_server("binance").session()
        reply = session.on_connect(ws.request.path if ws.request else "/stream")
        for frame in reply.frames:
            await ws.send(frame)
        group = None
        async for message in ws:
            reply = session.handle(message)
            for frame in reply.frames:
                await ws.send(frame)
            group = next(
                (i for i, (syms, _) in enumerate(self.groups) if syms <= session.subscribed), None
            )
            if group is not None:
                break
        if group is None or self.subscribed[group].is_set():
            return  # closed before subscribing, or a second subscriber of a group
        self.subscribed[group].set()
        await asyncio.gather(*(e.wait() for e in self.subscribed))
        await self._go.wait()
        loop = asyncio.get_running_loop()
        if self.started_at is None:
            self.started_at = loop.time()
        await self._send_raw(ws, self.groups[group][1])
        if self.live is not None:
            while (data := await self.live[group].get()) is not None:
                await self._send_raw(ws, data)
        self.sent[group].set()
        self.sent_at = loop.time()
        await ws.wait_closed()

    def release(self) -> None:
        """Let a held feed go out (to every group once all have subscribed)."""
        self._go.set()

    @staticmethod
    async def _send_raw(ws: ServerConnection, data: bytes) -> None:
        transport = ws.transport
        view = memoryview(data)
        for i in range(0, len(data), SLICE):
            await _buffered_below(transport, HIGH_WATER)
            if transport.is_closing():
                raise ConnectionError("ingest closed the connection mid-feed")
            transport.write(view[i : i + SLICE])
        await _buffered_below(transport, 1)


async def _buffered_below(transport: asyncio.WriteTransport, limit: int) -> None:
    """Poll (1 ms) until the transport buffers fewer than ``limit`` bytes: its flow-control
    callbacks belong to the websockets protocol, which these raw writes bypass."""
    for _ in iter(lambda: transport.get_write_buffer_size() < limit, True):
        await asyncio.sleep(0.001)
