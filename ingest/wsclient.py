"""The WebSocket client ingest reads exchanges with: picows, frames taken in batches.

Why not the ``websockets`` library: its client wakes a coroutine per frame and copies each
frame through an assembler — half of ingest's CPU. Receiving alone (``python -m tests.bench
ingest``, a raw feed on loopback, same run): ``websockets`` about 0.3M frames/s, this module
1.5-1.8M, aiohttp about the same, ``picows.websockets`` (a compiled websockets-like API, one
``await`` per frame) up to 3M but without batches. picows parses frames in C and calls
:meth:`_Listener.on_ws_frame` synchronously for each one from ``data_received``; the listener
only appends the payload to a list, and the reader takes everything that has arrived in one
call (:meth:`WebSocket.recv_batch`), which Binance's ``parse_many`` decodes as one batch.

What the connection manager (``ingest.connection``) relies on, and where it is kept:

* **bounded memory** — past ``_HIGH_WATER`` frames not yet taken, reading from the socket
  pauses (TCP then pushes back on the exchange), and resumes below ``_LOW_WATER``; not
  while we close, though: the server's close frame is queued behind what it sent before,
  and each of those frames is kept (:meth:`WebSocket.close`);
* **keepalive** — a WebSocket ping every ``ping_interval_s``; no pong within
  ``ping_timeout_s`` closes the socket (reason ``ping_timeout``), as a hung peer must be;
  the server's pings are answered by picows (``enable_auto_pong``);
* **messages, not frames** — fragmented messages are reassembled (Binance does not
  fragment, a conforming server may); one above ``max_message_bytes`` ends the session, as
  ``max_size`` did in ``websockets``;
* **bytes** — payloads are never decoded here: a frame that is not UTF-8 is the parser's
  ``invalid_json``, not a lost connection;
* **why it ended** — :class:`SocketClosed` ``reason``: ``closed`` (the server closed with a
  close frame), ``ping_timeout`` (our keepalive gave up), ``dropped`` (anything else: a
  reset, an EOF, a protocol error or a message too big, which we close);
* **TLS** for ``wss://`` with the default verified context; no proxy (none is read from
  the environment); ``open_timeout_s`` bounds TCP connect, TLS and the HTTP upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Final

import picows
from picows import WSCloseCode, WSFrame, WSMsgType, WSTransport

#: Frames received and not yet taken by the reader: pause the socket above, resume below.
_HIGH_WATER: Final = 4096
_LOW_WATER: Final = 1024
_NEVER: Final = sys.maxsize
_TEXT: Final = WSMsgType.TEXT
_BINARY: Final = WSMsgType.BINARY
_CONTINUATION: Final = WSMsgType.CONTINUATION
_PONG: Final = WSMsgType.PONG
_CLOSE: Final = WSMsgType.CLOSE


class SocketClosed(Exception):
    """The WebSocket ended (every frame received before the end was returned first)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # closed | ping_timeout | dropped


class _Listener(picows.WSListener):
    """Collects the payloads picows parses, wakes the reader, answers the server's close."""

    def __init__(self, max_message_bytes: int) -> None:
        super().__init__()
        self.frames: list[bytes] = []  # received; those before ``head`` already taken
        self.head = 0
        # len(frames) at which on_ws_frame calls _notify: head + 1 while the reader waits
        # (wake it), else head + the high-water mark (pause reading)
        self.notify_at = _HIGH_WATER
        self.max_message_bytes = max_message_bytes
        self.waiter: asyncio.Future[None] | None = None  # the reader, waiting for frames
        self.pong: asyncio.Future[None] | None = None  # the keepalive, waiting for a pong
        self.paused = False
        self.closing = False  # our close frame is sent: never pause (see WebSocket.close)
        self.taken = 0  # frames recv_batch returned so far (with the pending ones: progress)
        self.disconnected = False
        self.close_received = False
        self._parts: list[bytes] | None = None  # a fragmented message being assembled
        self._parts_size = 0
        self._transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Called by picows for every frame, synchronously: the common case (a whole text
        frame within the limit) is an append, the reader woken only if it waits."""
        if (
            frame.msg_type is _TEXT
            and frame.fin
            and frame.payload_size <= self.max_message_bytes
            and self._parts is None
        ):
            frames = self.frames
            frames.append(frame.get_payload_as_bytes())
            if len(frames) >= self.notify_at:  # the reader waits, or the buffer is full
                self._notify(transport)
            return
        self._other_frame(transport, frame)

    def _other_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if frame.payload_size > self.max_message_bytes:
            # picows has sent the close frame (its max_frame_size) but may still hand it over
            raise picows.WSProtocolError(WSCloseCode.MESSAGE_TOO_BIG, "frame above the limit")
        if kind is _TEXT or kind is _BINARY or kind is _CONTINUATION:
            self._fragment(transport, frame)
        elif kind is _PONG:
            if self.pong is not None and not self.pong.done():
                self.pong.set_result(None)
            return
        elif kind is _CLOSE:
            if not transport.is_close_frame_sent:  # the server closed (not an answer to ours)
                self.close_received = True
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        else:
            return
        if len(self.frames) >= self.notify_at:
            self._notify(transport)

    def _notify(self, transport: WSTransport) -> None:
        """Wake the reader if it waits; pause reading if the buffer is full (the frames
        still in the chunk being parsed are kept: no call per frame until recv_batch)."""
        self._wake()
        if len(self.frames) - self.head < _HIGH_WATER:
            self.notify_at = self.head + _HIGH_WATER
            return
        if self.closing:  # the server's close frame is behind these: keep reading
            self.notify_at = len(self.frames) + _HIGH_WATER
            return
        self.notify_at = _NEVER  # recv_batch sets it again when it takes frames
        if not self.paused:
            self.paused = True
            transport.underlying_transport.pause_reading()

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fragment(self, transport: WSTransport, frame: WSFrame) -> None:
        """A binary frame, or one frame of a fragmented message (RFC 6455 §5.4): kept until
        its ``fin``."""
        starts = frame.msg_type is not _CONTINUATION
        if starts == (self._parts is None):
            parts = self._parts = [] if starts else self._parts
            assert parts is not None
            self._parts_size += frame.payload_size
            if self._parts_size > self.max_message_bytes:
                raise picows.WSProtocolError(
                    WSCloseCode.MESSAGE_TOO_BIG, f"message above {self.max_message_bytes} bytes"
                )
            parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                self.frames.append(b"".join(parts))
                self._parts, self._parts_size = None, 0
            return
        # picows sends the close frame and disconnects (reason: dropped)
        raise picows.WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "bad fragment sequence")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected = True
        self._wake()
        if self.pong is not None and not self.pong.done():
            self.pong.set_result(None)

    def resume(self) -> None:
        if self.paused and self._transport is not None:
            self.paused = False
            self._transport.underlying_transport.resume_reading()


class WebSocket:
    """One open client WebSocket: frames in batches, text out, keepalive, close."""

    def __init__(
        self, transport: WSTransport, listener: _Listener, ping_interval_s: float | None,
        ping_timeout_s: float | None,
    ) -> None:  # fmt: skip
        self.transport = transport
        self._listener = listener
        self._ping_timed_out = False
        self._keepalive: asyncio.Task[None] | None = None
        # Awaited, so a failure picows recorded (a protocol error) is consumed, not logged
        # as "never retrieved"; close() waits on it.
        self._ended = asyncio.create_task(self._wait_ended(), name="ws.ended")
        if ping_interval_s:
            self._keepalive = asyncio.create_task(
                self._keep_alive(ping_interval_s, ping_timeout_s), name="ws.keepalive"
            )

    @property
    def pending(self) -> int:
        """Frames received that :meth:`recv_batch` has not returned yet."""
        return len(self._listener.frames) - self._listener.head

    @property
    def reason(self) -> str:
        """Why the socket ended (meaningful once it has)."""
        if self._ping_timed_out:
            return "ping_timeout"
        return "closed" if self._listener.close_received else "dropped"

    async def recv_batch(self, limit: int) -> list[bytes]:
        """Every frame received so far, at most ``limit`` (oldest first); waits for one when
        none is there. Raises :class:`SocketClosed` once the socket ended and every frame
        received before the end was returned. Does not yield while frames are waiting."""
        listener = self._listener
        frames, head = listener.frames, listener.head
        while len(frames) == head:
            if listener.disconnected:
                raise SocketClosed(self.reason)
            listener.waiter = asyncio.get_running_loop().create_future()
            listener.notify_at = head + 1
            try:
                await listener.waiter
            finally:
                listener.waiter = None
            frames, head = listener.frames, listener.head
        end = head + limit
        if end >= len(frames):  # all of them: the list itself, a new one for what comes
            listener.frames, listener.head = [], 0
            batch = frames if head == 0 else frames[head:]
        else:  # a part: the rest stays (sliced once, when it is all taken)
            listener.head = end
            batch = frames[head:end]
        listener.notify_at = listener.head + _HIGH_WATER
        listener.taken += len(batch)
        if listener.paused and len(listener.frames) - listener.head < _LOW_WATER:
            listener.resume()
        return batch

    def send(self, text: str) -> None:
        """Send one text frame (written at once: subscribe and ping messages are small)."""
        if self.transport.is_disconnected or self.transport.is_close_frame_sent:
            raise SocketClosed(self.reason)
        self.transport.send(_TEXT, text.encode())

    def abort(self) -> None:
        """Drop the TCP connection now (a hung peer would not answer a close handshake)."""
        self.transport.disconnect(graceful=False)

    async def close(self, timeout_s: float = 2.0, limit_s: float = 30.0) -> None:
        """Close handshake (the server's close frame awaited), then the TCP connection.

        Every frame the server sent before its close frame is kept for recv_batch, however
        many and however slowly the reader takes them: reading is resumed and not paused
        again until the socket ends (a conforming server sends nothing after its close
        frame, so what arrives is what it had sent before it read ours). The TCP connection
        is dropped early only after ``timeout_s`` in which not one frame arrived (a hung
        peer), or once the handshake has taken ``limit_s`` (a peer that streams on and never
        answers; what it sends after our close frame, a rotation's replacement has too)."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        transport, listener = self.transport, self._listener
        if not transport.is_disconnected:
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
            listener.closing = True
            listener.resume()  # the server's close frame is behind what it sent before
            loop = asyncio.get_running_loop()
            give_up = loop.time() + limit_s
            while (left := give_up - loop.time()) > 0:
                received = listener.taken + self.pending
                try:
                    await asyncio.wait_for(asyncio.shield(self._ended), min(timeout_s, left))
                    break
                except TimeoutError:
                    if listener.taken + self.pending == received:
                        break  # not one frame in timeout_s: a hung peer
            transport.disconnect(graceful=False)
        tasks = [self._ended] if self._keepalive is None else [self._ended, self._keepalive]
        await asyncio.gather(*tasks, return_exceptions=True)  # the keepalive: cancelled

    async def _wait_ended(self) -> None:
        with contextlib.suppress(Exception):  # a local failure: disconnected all the same
            await self.transport.wait_disconnected()

    async def _keep_alive(self, interval_s: float, timeout_s: float | None) -> None:
        listener, loop = self._listener, asyncio.get_running_loop()
        while not listener.disconnected:
            await asyncio.sleep(interval_s)
            if listener.disconnected or self.transport.is_close_frame_sent:
                return
            pong = listener.pong = loop.create_future()
            self.transport.send_ping()
            try:
                await asyncio.wait_for(pong, timeout_s)
            except TimeoutError:
                self._ping_timed_out = True
                self.transport.send_close(WSCloseCode.INTERNAL_ERROR, b"keepalive ping timeout")
                self.transport.disconnect(graceful=False)
                return


async def connect(
    url: str,
    *,
    open_timeout_s: float,
    ping_interval_s: float | None,
    ping_timeout_s: float | None,
    max_message_bytes: int,
) -> WebSocket:
    """Open a client WebSocket to ``url`` (``ws://`` or ``wss://``).

    Raises what the dial raises: ``OSError`` (DNS, refused, reset, TLS: ``ssl.SSLError``),
    ``TimeoutError``, ``picows.WSHandshakeError`` (the HTTP upgrade was refused),
    ``ConnectionResetError`` (closed before the upgrade's answer), ``picows.WSInvalidURL``
    (a configuration error)."""
    async with asyncio.timeout(open_timeout_s):
        transport, listener = await picows.ws_connect(
            lambda: _Listener(max_message_bytes),
            url,
            websocket_handshake_timeout=open_timeout_s,
            enable_auto_ping=False,  # ours: picows' needs the reply timeout <= the interval
            enable_auto_pong=True,
            max_frame_size=max_message_bytes,
            proxy=None,
            # the event loop's own transports (uvloop): picows' aiofastnet ones measured no
            # faster here (raw feed → ingest, 0.42-0.44M ticks/s either way)
            use_aiofastnet=False,
            logger_name="ingest.ws",
        )
    if not isinstance(listener, _Listener):  # the upgrade was never answered
        raise ConnectionResetError("the server closed the connection before the upgrade")
    return WebSocket(transport, listener, ping_interval_s, ping_timeout_s)
