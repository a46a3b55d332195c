"""The local exchange simulator: a websockets server speaking each exchange's protocol.

One server (one port) serves several exchanges by path: exchange ``X`` lives at
``ws://HOST:PORT/X`` + the path the real exchange serves on (e.g. ``/binance/stream``,
``/kraken/v2``), which is what ``INGEST_URL_<X>`` should point at. The protocol itself —
subscribe handshake, acks, pongs, heartbeats, the trade frames — comes from the exchange's
server half (``ingest.simulator.venues``: a ``ServerSession`` per connection), so the
simulator sends exactly what the real exchange would. The market model (replay clock,
per-subscription cursors, overlap on reconnect, gap injection) is in
``ingest.simulator.market``; this module only moves frames.

The same port serves each exchange's public REST trade history (``GET /X`` + the adapter's
``history_path``, e.g. ``/binance/api/v3/historicalTrades?symbol=&fromId=&limit=``,
``/kraken/0/public/Trades?pair=&since=``): plain HTTP requests are answered from the recording
before any WebSocket handshake, with the trades the market has got to (the symbol's head), so
ingest's gap backfill (``ingest.backfill``) is tested without the internet; ``INGEST_REST_URL_X``
points at ``http://HOST:PORT/X`` (:meth:`Simulator.rest_url`). Trades removed by gap
injection are not served either: the exchange never had them. ``Faults.rest_down`` answers
every history request with HTTP 503.

Faults (``market.Faults``) are applied per connection: drops (the TCP connection is aborted,
as a network cut looks), malformed and duplicated frames, stalls (``stall_every_s`` into a
connection the server stops reading and sending, so neither trades nor pongs arrive and the
client's watchdog must notice; ``stall_for_s`` later it cuts the connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from common.errors import BadInput
from common.logging import get_logger
from ingest.simulator.market import Faults, Feed, FrameFaults, Subscription, history_slice
from ingest.simulator.venues import ServerReply, ServerSession, get_server, rest_url, stream_url
from ingest.venues import get_adapter


@dataclass(slots=True)
class SimStats:
    """What the simulator did (for reports and tests)."""

    connections: int = 0
    trade_frames: int = 0
    duplicate_frames: int = 0
    malformed_frames: int = 0
    drops: int = 0
    stalls: int = 0
    history_requests: int = 0


class _Clock:
    """Replay time of one feed: starts at its first subscription, scaled by ``speed``."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.started: float | None = None

    def elapsed_ns(self) -> float:
        if self.speed <= 0:
            return float("inf")
        if self.started is None:
            self.started = time.monotonic()
        return (time.monotonic() - self.started) * 1e9 * self.speed


class Simulator:
    """Serve ``feeds`` (exchange name → Feed) on one port until stopped or finished."""

    def __init__(
        self,
        feeds: Mapping[str, Feed],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        overlap: int = 100,
        faults: Faults | None = None,
        batch: int = 100,
    ) -> None:
        for name in feeds:
            get_server(name)  # exchanges it cannot serve fail here, not on first connect
        if faults and faults.drop_after_frames and overlap >= faults.drop_after_frames:
            # Each connection would re-send its overlap and be cut before passing the head:
            # the replay would never advance.
            raise ValueError("overlap must be below drop_after_frames")
        self.feeds = dict(feeds)
        self.host = host
        self.port = port
        self.overlap = overlap
        self.faults = faults or Faults()
        self.batch = batch
        self.stats = SimStats()
        self.log = get_logger("ingest.simulator")
        self._clocks = {name: _Clock(speed) for name in feeds}
        self._server: Server | None = None
        self._changed = asyncio.Event()  # a feed advanced (for wait_finished)

    # --- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        # No permessage-deflate: on localhost it only burns CPU on both sides.
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            max_size=None,
            compression=None,
            process_request=self._history,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        self.log.debug(
            "simulator_listening", host=self.host, port=self.port, feeds=list(self.feeds)
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def url(self, exchange: str) -> str:
        """Where ingest should connect for ``exchange`` (its ``INGEST_URL_*``)."""
        return stream_url(self.host, self.port, exchange)

    def rest_url(self, exchange: str) -> str:
        """Where ingest should fetch ``exchange``'s REST history (its ``INGEST_REST_URL_*``)."""
        return rest_url(self.host, self.port, exchange)

    # --- REST trade history ----------------------------------------------------------
    def _history(self, conn: ServerConnection, request: Request) -> Response | None:
        """Answer a plain HTTP request for a trade history; None: a WebSocket handshake."""
        if "upgrade" in request.headers.get("Connection", "").lower():
            return None
        parts = urlsplit(request.path)
        name, _, rest = parts.path.lstrip("/").partition("/")
        feed = self.feeds.get(name)
        adapter = get_adapter(name) if feed is not None else None
        if feed is None or adapter is None or "/" + rest != adapter.history_path:
            return _http(404, b'{"error":"not found"}')
        self.stats.history_requests += 1
        if self.faults.rest_down:
            return _http(503, b'{"error":"service unavailable (simulated)"}')
        try:
            query = get_server(name).history_query(dict(parse_qsl(parts.query)))
        except BadInput as e:
            return _http(400, f'{{"error":"{e.reason}"}}'.encode())
        stream = feed.symbols.get(query.native)
        ticks = history_slice(stream, query, feed.loop) if stream is not None else []
        self.log.info("sim_history", exchange=name, symbol=query.native, from_id=query.from_id,
                      since_ns=query.since_ns, trades=len(ticks))  # fmt: skip
        return _http(200, get_server(name).render_history(ticks, query))

    def finished(self) -> bool:
        return all(feed.finished() for feed in self.feeds.values())

    async def wait_finished(self) -> None:
        """Return once every feed was delivered to the end (never when looping)."""
        while not self.finished():
            self._changed.clear()
            await self._changed.wait()

    # --- one connection ------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        name, _, rest = path.lstrip("/").partition("/")
        feed = self.feeds.get(name)
        if feed is None:
            await ws.close(4004, f"no simulated exchange at {path}")
            return
        self.stats.connections += 1
        conn = _Connection(self, ws, feed, get_server(name).session())
        try:
            with contextlib.suppress(ConnectionClosed):
                await conn.serve("/" + rest)
        finally:
            self.log.debug(
                "sim_connection_closed", exchange=name, trade_frames=conn.ff.trade_frames
            )


class _Connection:
    """The reader, sender, heartbeat and fault timers of one simulated connection."""

    def __init__(self, sim: Simulator, ws: ServerConnection, feed: Feed, session: ServerSession):
        self.sim = sim
        self.ws = ws
        self.feed = feed
        self.session = session
        self.clock = sim._clocks[feed.exchange]
        self.subs: dict[str, Subscription] = {}
        self.ff = FrameFaults(sim.faults)
        self.changed = asyncio.Event()  # subscriptions changed or a stall ended
        self.stalled = False

    async def serve(self, path: str) -> None:
        await self._apply(self.session.on_connect(path))
        adapter = get_adapter(self.feed.exchange)
        jobs: list[Coroutine[Any, Any, None]] = [self._read(), self._send_trades()]
        beat = adapter.heartbeat.server_heartbeat_s
        if beat:
            jobs.append(self._heartbeat(beat))
        f = self.sim.faults
        if f.drop_every_s > 0:
            jobs.append(self._drop_after(f.drop_every_s))
        if f.stall_every_s > 0 and f.stall_for_s > 0:
            jobs.append(self._stall(f.stall_every_s, f.stall_for_s))
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_until_closed(job)) for job in jobs]
            await self.ws.wait_closed()
            for task in tasks:
                task.cancel()

    async def _apply(self, reply: ServerReply) -> None:
        for frame in reply.frames:
            await self.ws.send(frame)
        for native in reply.subscribed:
            stream = self.feed.symbols.get(native)
            if stream is not None and native not in self.subs:
                self.subs[native] = Subscription.start(stream, self.sim.overlap)
        for native in reply.unsubscribed:
            self.subs.pop(native, None)
        if reply.close:
            await self.ws.close(1008, "invalid request")
        self.changed.set()

    async def _read(self) -> None:
        async for message in self.ws:
            if self.stalled:
                continue  # a stalled server answers nothing
            await self._apply(self.session.handle(message))

    async def _send_trades(self) -> None:
        loop = self.feed.loop
        while True:
            if self.stalled:
                self.changed.clear()
                await self.changed.wait()
                continue
            elapsed = self.clock.elapsed_ns()
            sent = 0
            for sub in list(self.subs.values()):
                snapshot = sub.in_snapshot
                ticks = sub.take(sub.stream.due(elapsed, loop), self.sim.batch)
                if not ticks:
                    continue
                frames = self.session.render_trades(ticks, snapshot=snapshot)
                wire = self.ff.expand(frames)
                self._count(len(frames), len(wire))
                for frame in wire:
                    await self.ws.send(frame)
                sent += len(ticks)
                if self.ff.should_drop():
                    await self._drop("frames")
                    return
            if sent:
                self.sim._changed.set()
                await asyncio.sleep(0)  # let the reader and other connections in
                continue
            await self._wait_for_due(elapsed)

    def _count(self, n_frames: int, n_wire: int) -> None:
        st = self.sim.stats
        st.trade_frames += n_frames
        extra = n_wire - n_frames
        if extra:
            f = self.sim.faults
            before = self.ff.trade_frames - n_frames
            dups = _multiples(before, self.ff.trade_frames, f.duplicate_every)
            st.duplicate_frames += dups
            st.malformed_frames += extra - dups

    async def _wait_for_due(self, elapsed: float) -> None:
        """Sleep until the next trade of a subscribed symbol is due or subscriptions change."""
        waits = [
            sub.stream.next_due_ns(sub.cursor)
            for sub in self.subs.values()
            if self.feed.loop or sub.cursor < len(sub.stream.ticks)
        ]
        self.changed.clear()
        timeout = None
        if waits and self.clock.speed > 0:
            timeout = max(0.0, (min(waits) - elapsed) / 1e9 / self.clock.speed)
        elif waits:
            timeout = 0.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)

    async def _heartbeat(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            if not self.stalled:
                for frame in self.session.heartbeat():
                    await self.ws.send(frame)

    async def _drop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._drop("timer")

    async def _drop(self, why: str) -> None:
        """Cut the TCP connection (no close frame), once what was sent has left the process:
        the frames counted as sent are then really on the wire, so tests can count them."""
        self.sim.stats.drops += 1
        self.sim.log.info("sim_drop", exchange=self.feed.exchange, why=why)
        transport = self.ws.transport
        for _ in range(200):
            if transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.005)
        transport.abort()

    async def _stall(self, after: float, duration: float) -> None:
        """Hang ``after`` seconds into the connection, then cut it ``duration`` later.

        A hung server neither sends nor reads (so no pongs either); the client's watchdog
        should give up on it first. It is cut rather than resumed at the end: frames sent
        into a connection the client has already abandoned would be lost to the client
        while counting as delivered here.
        """
        await asyncio.sleep(after)
        self.sim.stats.stalls += 1
        self.sim.log.info("sim_stall", exchange=self.feed.exchange, seconds=duration)
        self.stalled = True
        self.ws.transport.pause_reading()
        await asyncio.sleep(duration)
        await self._drop("stall_end")


def _http(status: int, body: bytes) -> Response:
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status, "OK" if status == 200 else "Error", headers, body)


async def _until_closed(job: Coroutine[Any, Any, None]) -> None:
    """Run one task of a connection; the peer going away simply ends it."""
    with contextlib.suppress(ConnectionClosed):
        await job


def _multiples(after: int, upto: int, n: int) -> int:
    """How many multiples of ``n`` lie in ``(after, upto]`` (0 when ``n`` is 0)."""
    return upto // n - after // n if n else 0
