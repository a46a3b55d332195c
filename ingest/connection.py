"""One exchange connection kept alive forever: connect, subscribe, watch, reconnect, rotate.

A ``Connection`` owns a group of symbols of one exchange (a group fits the adapter's
per-connection limits; ``ExchangeAdapter.connection_plan`` makes the groups). Its task runs
WebSocket *sessions* one after another:

1. **connect** to the adapter's URL (overridable: the simulator or a test server), then send
   the adapter's subscribe messages no faster than ``subscribe_rate_per_s``;
2. **read** frames: parse (adapter, pure) → drop duplicates and count gaps
   (``ingest.sequence.TradeDeduper``, one per exchange, shared by all its connections and
   sessions) → hand the ticks to the writer. While the writer's buffer is full the read
   loop waits (``wait_for_space``), so a slow Redis stops reading and TCP pushes back on
   the exchange;
3. **keep alive / watch**: WebSocket pings (``ingest.wsclient``'s keepalive closes the socket
   when a pong does not come back within ``ws_ping_timeout_s`` — a hung peer), the adapter's text
   ping every ``ping_interval_s`` when it has one, and an idle timeout only where the adapter
   guarantees frames on quiet symbols (``Heartbeat.idle_timeout_s``; pongs and heartbeats
   count, trades are not needed). No false alarm on a symbol that does not trade;
4. **reconnect** when the session ends, after a capped exponential backoff with full jitter
   (``common.backoff``: ``uniform(0, min(cap, base·2^attempt))``; the attempt count resets
   once a session has lived ``backoff_reset_s``), then resubscribe;
5. **rotate** before the exchange's connection age limit (Binance: 24 h, setting
   ``max_age_s``): the replacement session is opened and subscribed *before* the old one is
   closed (once the replacement's first frame, its ack, arrived). The old one then hands on
   every frame it received — no timer cuts that short, however long the writer holds it
   back — and only then does the replacement hand on its own (it keeps receiving
   meanwhile): each symbol's trades reach the deduper in order, which drops the overlap.
   If the replacement cannot connect, the old session keeps reading meanwhile.

What happens to each frame — parse, plausibility, duplicates and gaps, holding a symbol
whose gap is being backfilled (``ingest.backfill``), counting, dead-lettering — is the pure
``ingest.framestep.FrameStep``: ``handle_frame`` (``FrameStep.frame``) per frame, and
``offer_frames`` (``FrameStep.frames``: ``parse_many`` columns, in-order runs accepted at
once) for the frames that arrived together. This module only moves frames from the socket
(``ingest.wsclient``: picows, every frame received so far taken in one call) to it and its
trades to the writer, and publishes its counts every 0.25 s whether frames arrive or not.
Frames are read as bytes (no UTF-8 decoding in the client, which would fail the whole
connection on one bad byte): a frame that is not UTF-8 is ``invalid_json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from picows import WSHandshakeError

from common.backoff import BackoffPolicy
from common.logging import get_logger
from common.plausibility import PlausibilityLimits
from ingest.backfill import GapFiller
from ingest.deadletter import RateLimitedLog
from ingest.disconnects import connect_failure_reason
from ingest.framestep import DeadLetterSink, FrameStep
from ingest.metrics import IngestMetrics
from ingest.sequence import TradeDeduper
from ingest.settings import DEFAULTS, IngestSettings
from ingest.venues import ExchangeAdapter
from ingest.writer import TickWriter
from ingest.wsclient import SocketClosed, WebSocket, connect

_PUBLISH_EVERY_S = 0.25
_YIELD_EVERY = 64


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """Timing knobs of a connection (defaults and values: ``IngestSettings``)."""

    url: str | None = None  # base URL override (None: the adapter's default_url)
    max_age_s: float | None = None  # rotate after this long (None: the adapter's limit)
    rotate_margin: float = 0.95  # rotate at this fraction of the adapter's own age limit
    open_timeout_s: float = DEFAULTS.open_timeout_s
    ws_ping_interval_s: float = DEFAULTS.ws_ping_interval_s
    ws_ping_timeout_s: float = DEFAULTS.ws_ping_timeout_s
    idle_timeout_s: float | None = DEFAULTS.idle_timeout_s  # None: the adapter's
    ping_interval_s: float | None = DEFAULTS.ping_interval_s  # None: the adapter's
    backoff_base_s: float = DEFAULTS.backoff_base_s
    backoff_max_s: float = DEFAULTS.backoff_max_s
    backoff_reset_s: float = 30.0
    rotation_ready_timeout_s: float = 10.0
    read_batch: int = DEFAULTS.read_batch  # frames already received handled as one batch
    # The time-ahead bound (the deduper applies the id-jump bound).
    limits: PlausibilityLimits = DEFAULTS.limits

    @classmethod
    def from_settings(cls, settings: IngestSettings, exchange: str) -> ConnectionOptions:
        """The options of ``exchange``'s connections: its URL override, and every knob of
        the settings that has the same name here."""
        same = {f.name: getattr(settings, f.name) for f in fields(cls) if f.name in _SETTINGS}
        return cls(url=settings.url(exchange), max_age_s=settings.max_connection_age_s, **same)


_SETTINGS = frozenset(f.name for f in fields(IngestSettings))


class _EndedWhileSubscribing(Exception):
    """The socket opened, then closed before every subscribe message was sent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Session:
    """One open WebSocket of a connection, with its reader and keepalive tasks."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.opened = time.monotonic()
        self.last_frame = self.opened
        self.first_frame = asyncio.Event()
        # Set when its frames may go to the deduper and the writer: at once for a session
        # that replaces none; for a rotation's replacement, once the session it replaces
        # has handed on every frame it received, so each symbol's trades arrive in order.
        self.turn = asyncio.Event()
        self.reason = "closed"
        self.tasks: list[asyncio.Task[None]] = []
        self.done = asyncio.Event()
        self.closed = False

    async def close(self, reason: str, *, drain: bool = True) -> None:
        """Close the socket and end the tasks. With ``drain`` (and its turn come), the reader
        first hands on every frame received before the socket ended — however long the
        writer holds it back (backpressure): no timer drops received trades. Without (the
        connection is cancelled, or a replacement retired before its turn, whose trades the
        session it was to replace delivers), the socket is dropped and its frames with it."""
        if self.closed:
            return
        self.closed = True
        if not self.done.is_set():
            self.reason = reason
        self.done.set()
        drain = drain and self.turn.is_set()
        if reason == "silent" or not drain:
            self.ws.abort()  # a hung peer would not answer a close handshake
        try:
            await self.ws.close()
            if drain and self.tasks:
                await asyncio.wait(self.tasks[:1])  # the reader ends after the last frame
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)


class Connection:
    """Keeps one group of ``symbols`` of one exchange subscribed until ``stop()``."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        symbols: Sequence[str],
        *,
        writer: TickWriter,
        deduper: TradeDeduper,
        metrics: IngestMetrics,
        dead_letters: DeadLetterSink,
        options: ConnectionOptions | None = None,
        seed: int | None = None,
        filler: GapFiller | None = None,
    ) -> None:
        self.adapter = adapter
        self.symbols = list(symbols)  # native symbols
        self.writer = writer
        self.metrics = metrics
        self.options = options or ConnectionOptions()
        # Parse, check, dedupe, hold, count: the pure per-frame step. Its methods are bound
        # here, not wrapped: the reader calls them once a frame.
        self.step = FrameStep(adapter, deduper, metrics=metrics, dead_letters=dead_letters,
                              filler=filler, limits=self.options.limits)  # fmt: skip
        self.handle_frame = self.step.frame
        self.publish_metrics = self.step.publish_metrics
        self._rng = random.Random(seed)
        self._retry = BackoffPolicy(self.options.backoff_base_s, self.options.backoff_max_s)
        self._stopping = asyncio.Event()
        self._logs = RateLimitedLog()
        self._log = get_logger("ingest.connection", exchange=adapter.name)
        self.sessions_opened = 0
        self.open_sessions = 0  # WebSockets open now (ingest is ready while one is)

    @property
    def max_age_s(self) -> float | None:
        if self.options.max_age_s is not None:
            return self.options.max_age_s
        limit = self.adapter.max_connection_age_s
        return None if limit is None else limit * self.options.rotate_margin

    def stop(self) -> None:
        self._stopping.set()

    # --- the connection loop ---------------------------------------------------------
    async def run(self) -> None:
        """Sessions one after another until ``stop()``; returns after closing the last."""
        attempt = 0
        current: _Session | None = None
        retiring: _Session | None = None  # a rotation's old session, until it is drained
        ended: str | None = None  # why the previous session ended (None: first / rotation)
        try:
            while not self._stopping.is_set():
                try:
                    session = await self._open(replacing=current is not None)
                except _EndedWhileSubscribing as e:  # it was open: the next one reconnects
                    ended = ended or e.reason
                    attempt += 1
                    await self._backoff(attempt, e.reason, "")
                    continue
                except (OSError, TimeoutError, WSHandshakeError) as e:
                    reason = connect_failure_reason(e)  # the metric's label and the log's
                    self.metrics.connect_failures.labels(self.adapter.name, reason).inc()
                    attempt += 1
                    await self._backoff(attempt, reason, repr(e), host=self._host())
                    continue
                if ended is not None:
                    self.metrics.reconnects.labels(self.adapter.name, ended).inc()
                    ended = None
                retiring, current = current, session
                if retiring is not None:  # rotation: the replacement is up, retire the old
                    await self._retire(retiring, session)
                    retiring = None
                outcome = await self._watch(session)
                if outcome == "rotate":
                    self.metrics.rotations.labels(self.adapter.name).inc()
                    continue  # `current` keeps reading while the replacement opens
                await self._close(session, outcome)
                current = None
                if self._stopping.is_set():
                    break
                ended = outcome
                lived = time.monotonic() - session.opened
                attempt = 0 if lived >= self.options.backoff_reset_s else attempt + 1
                await self._backoff(attempt, outcome, "")
        except BaseException:
            # Cancelled (the service ends: a failed writer, the shutdown grace): nothing may
            # wait for the writer now, so the sockets are dropped without draining.
            for s in (retiring, current):
                if s is not None:
                    await self._close(s, "stopped", drain=False)
            raise
        if current is not None:
            await self._close(current, "stopped")

    async def _retire(self, old: _Session, new: _Session) -> None:
        """Rotation: once the replacement is subscribed (its first frame, the ack, arrived),
        close ``old`` and hand on every frame it received; only then does ``new`` hand on
        its own. Each symbol's trades thus reach the deduper in order: the overlap is
        dropped as duplicates, and the old reader's backlog is neither lost nor counted as
        a gap because the replacement's later trades overtook it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(new.first_frame.wait(), self.options.rotation_ready_timeout_s)
        try:
            await self._close(old, "rotated")
        finally:
            new.last_frame = time.monotonic()  # it was receiving, waiting for its turn
            new.turn.set()
        self._log.info("rotated", symbols=len(self.symbols))

    def _host(self) -> str:
        """``host[:port]`` of the endpoint dialled (anything before an ``@`` left out)."""
        url = self.adapter.connect_url(self.symbols, self.options.url)
        return urlsplit(url).netloc.rpartition("@")[2]

    async def _close(self, session: _Session, reason: str, *, drain: bool = True) -> None:
        if not session.closed:
            self.open_sessions -= 1
            self.metrics.connected.labels(self.adapter.name).dec()
        await session.close(reason, drain=drain)

    async def _backoff(self, attempt: int, reason: str, error: str, host: str = "") -> None:
        delay = self._retry.delay(attempt, self._rng)
        if self._logs.allow("reconnect", reason) is not None:
            self._log.warning(
                "reconnecting",
                reason=reason,
                error=error,
                attempt=attempt,
                delay=round(delay, 3),
                **({"host": host} if host else {}),
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _open(self, *, replacing: bool = False) -> _Session:
        """Connect, start the reader and keepalive tasks, and subscribe within rate limits.
        A ``replacing`` session (rotation) hands its frames on only once given its turn."""
        a, o = self.adapter, self.options
        url = a.connect_url(self.symbols, o.url)
        # An invalid URL (picows.WSInvalidURL) is a configuration error: not caught by run(),
        # so it ends the process instead of being retried forever.
        ws = await connect(
            url,
            open_timeout_s=o.open_timeout_s,
            ping_interval_s=o.ws_ping_interval_s,
            ping_timeout_s=o.ws_ping_timeout_s,
            # frames up to twice the adapter's limit are a BadInput, larger ones a disconnect
            max_message_bytes=a.max_frame_bytes * 2,
        )
        session = _Session(ws)
        if not replacing:
            session.turn.set()
        self.sessions_opened += 1
        self.open_sessions += 1
        self.metrics.connected.labels(a.name).inc()
        session.tasks.append(asyncio.create_task(self._read(session), name=f"{a.name}.read"))
        session.tasks.append(asyncio.create_task(self._publish_every(), name=f"{a.name}.pub"))
        hb = a.heartbeat
        if hb.ping_message is not None:
            session.tasks.append(asyncio.create_task(self._ping(session, hb.ping_message)))
        try:
            interval = 1.0 / a.subscribe_rate_per_s if a.subscribe_rate_per_s > 0 else 0.0
            for i, message in enumerate(a.subscribe_messages(self.symbols)):
                if i:
                    await asyncio.sleep(interval)
                ws.send(message)
        except SocketClosed as e:
            await self._close(session, "closed_while_subscribing")
            raise _EndedWhileSubscribing(e.reason) from e
        return session

    async def _watch(self, session: _Session) -> str:
        """Wait until the session ends (its reason), it must rotate, or we stop."""
        idle = self.options.idle_timeout_s or self.adapter.heartbeat.idle_timeout_s
        max_age = self.max_age_s
        while True:
            now = time.monotonic()
            deadlines = []
            if idle:
                deadlines.append(session.last_frame + idle)
            if max_age:
                deadlines.append(session.opened + max_age)
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            stop = asyncio.create_task(self._stopping.wait())
            done = asyncio.create_task(session.done.wait())
            await asyncio.wait({stop, done}, timeout=timeout, return_when="FIRST_COMPLETED")
            stop.cancel()
            done.cancel()
            if self._stopping.is_set():
                return "stopped"
            if session.done.is_set():
                return session.reason
            now = time.monotonic()
            if max_age and now - session.opened >= max_age:
                return "rotate"
            if idle and now - session.last_frame >= idle:
                session.reason = "silent"
                self._log.warning("silent_connection", idle_s=idle)
                return "silent"

    async def _ping(self, session: _Session, message: str) -> None:
        interval = self.options.ping_interval_s or self.adapter.heartbeat.ping_interval_s
        with contextlib.suppress(SocketClosed):
            while True:
                await asyncio.sleep(interval)
                session.ws.send(message)

    async def _publish_every(self) -> None:
        """Publish the hot-path counts every ``_PUBLISH_EVERY_S`` while the session lives,
        so a quiet socket's last trades show up without waiting for its next frame."""
        while True:
            await asyncio.sleep(_PUBLISH_EVERY_S)
            self.publish_metrics()

    async def _read(self, session: _Session) -> None:
        writer, ws = self.writer, session.ws
        cutter = writer.cutter  # its counts, read per frame without the writer's properties
        # Batches only where parse_many has a columnar path (one trade per frame), and no
        # larger than the writer's room: memory stays within its bound plus one frame.
        batch_max = self.options.read_batch if self.adapter.columnar_batches else 1
        since_yield = 0
        try:
            while True:
                room = cutter.max_pending - cutter.pending
                limit = min(batch_max, room) if room > 1 else 1
                # Every frame that arrived since the last call (bytes: invalid UTF-8 is the
                # parser's invalid_json, not a lost socket); waits only when there is none.
                frames = await ws.recv_batch(limit)
                session.last_frame = time.monotonic()
                session.first_frame.set()
                if not session.turn.is_set():
                    # A rotation's replacement: the old session's frames first (this socket
                    # keeps receiving meanwhile, up to the client's high-water mark).
                    await session.turn.wait()
                if len(frames) > 1:
                    ok = self.offer_frames(frames, time.time_ns())
                else:
                    ticks = self.handle_frame(frames[0], time.time_ns())
                    ok = not ticks or writer.offer(ticks)
                if not ok:
                    await writer.wait_for_space()  # backpressure: stop reading
                since_yield += len(frames)
                if cutter.flush_due or since_yield >= _YIELD_EVERY:
                    # recv_batch() does not yield while frames are waiting: let the flusher
                    # (and the other connections) run, or a busy socket would starve them.
                    since_yield = 0
                    await asyncio.sleep(0)
        except SocketClosed as e:
            session.reason = e.reason
        except Exception as e:  # a bug (parsers raise only BadInput): log it, reconnect
            session.reason = "error"
            self._log.error("reader_failed", error=repr(e), exc_info=e)
        finally:
            self.publish_metrics()
            session.done.set()

    # --- frames: the pure step (ingest.framestep) ------------------------------------
    def offer_frames(self, frames: Sequence[str | bytes], recv_ts: int) -> bool:
        """``handle_frame`` for many frames, straight into the writer (``FrameStep.frames``:
        trades in columns when ``parse_many`` gives them). Returns the writer's answer
        (False: ``await wait_for_space()``)."""
        return self.step.frames(frames, recv_ts, self.writer)
