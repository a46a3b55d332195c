"""The WebSocket fan-out's core: one reader of the ``signals`` stream and the clients it feeds.

``SignalsHub`` follows the stream with ``XREAD BLOCK`` (no consumer group: no per-client state
in Redis) and offers each signal, rendered once, to every live client whose filters match; it
never awaits a client, so a slow one cannot slow the others: a full queue gets it closed with
4408. Used by the signals WebSocket server (``signals.ws``) and the console's live page
(``signals.console.live``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from websockets.asyncio.server import ServerConnection

from common.backoff import OUTAGE, Backoff
from common.logging import get_logger
from common.metrics import Readiness
from common.redis import AnyRedis
from common.trimming import parse_id
from signals.metrics import SIGNALS_METRICS
from signals.ws_log import ConnectionLog, peer_of
from signals.ws_protocol import CLOSE_SLOW, Filters, signal_message

READ_COUNT = 1000


class Client:
    """One subscribed connection: filters, a bounded queue, and whether it is live yet."""

    def __init__(self, ws: ServerConnection, filters: Filters, queue_size: int) -> None:
        self.ws = ws
        self.filters = filters
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.live = False
        self.kicked = False
        self.after: tuple[int, int] = (0, 0)  # last entry sent by the backfill
        self.resume_max = 100_000  # most entries a resume may replay (set by the server)
        self.peer = peer_of(ws.remote_address)

    def offer(self, frame: str) -> bool:
        """Queue a frame without waiting; False when the queue is full (the client is slow)."""
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True


class SignalsHub:
    """The single stream reader and the set of clients it fans out to."""

    def __init__(
        self,
        redis: AnyRedis,
        stream: str,
        *,
        block_ms: int = 1000,
        readiness: Readiness | None = None,
        events: ConnectionLog | None = None,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.block_ms = block_ms
        self.clients: set[Client] = set()
        self.last_id = "0-0"
        self.readiness = readiness if readiness is not None else Readiness()
        self.events = events or ConnectionLog(get_logger("signals.ws"), lines=20, interval_s=10)
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        newest: Any = await self.redis.xrevrange(self.stream, count=1)
        self.last_id = newest[0][0].decode() if newest else "0-0"

    async def run(self, stopping: asyncio.Event) -> None:
        """Follow the stream until ``stopping`` is set; rides out Redis outages with backoff
        (clients stay connected and get what they missed from ``last_id`` on recovery)."""
        retry = Backoff(OUTAGE)
        while not stopping.is_set():
            try:
                reply: Any = await self.redis.xread(
                    {self.stream: self.last_id}, count=READ_COUNT, block=self.block_ms
                )
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                delay = retry.next()
                self.readiness.set("connected", False)
                get_logger("signals.ws").warning(
                    "redis_unavailable", error=repr(e), retry_in_s=round(delay, 3)
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                continue
            retry.reset()
            self.readiness.set("connected", True)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    self.dispatch(entry_id.decode(), fields)

    def dispatch(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Offer one stream entry to every matching live client (never awaits)."""
        self.last_id = entry_id
        rendered = render(entry_id, fields)
        if rendered is None:
            return
        doc, frame = rendered
        position = parse_id(entry_id)
        for client in list(self.clients):
            wanted = (
                client.live
                and not client.kicked
                and position > client.after
                and client.filters.matches(doc)
            )
            if wanted and not client.offer(frame):
                self.kick(client, CLOSE_SLOW, "slow client: send queue full", "slow")
                self.events.event(
                    "ws_cut", "slow", peer=client.peer, queue=client.queue.maxsize, code=CLOSE_SLOW
                )

    async def close_all(self, code: int, reason: str) -> None:
        """Close every client (shutdown) and wait for all pending closes."""
        for client in list(self.clients):
            self.kick(client, code, reason, "shutdown")
        await asyncio.gather(*self._closing, return_exceptions=True)

    def kick(self, client: Client, code: int, reason: str, label: str) -> None:
        """Close a client from outside its own task (the close runs as a tracked task)."""
        client.kicked = True
        self.clients.discard(client)
        SIGNALS_METRICS.ws_closed.labels(label).inc()
        task = asyncio.create_task(client.ws.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def render(entry_id: str, fields: dict[bytes, bytes]) -> tuple[dict[str, Any], str] | None:
    """(signal JSON as a dict for filtering, the frame to send), or None for a bad entry."""
    raw = fields.get(b"d")
    try:
        doc = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        get_logger("signals.ws").warning("bad_signal_entry", id=entry_id)
        return None
    assert raw is not None
    return doc, signal_message(entry_id, raw)
