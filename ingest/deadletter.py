"""Bad frames: dead-lettered to ``dlq:ingest`` and logged at a bounded rate.

A malformed frame must never stop a connection, and a flood of them must not stop the
process either: frames are queued in a bounded buffer and appended in pipelines by one task
(``MAXLEN ~ DLQ_MAXLEN``); when the buffer is full the oldest is given up and counted in
``alphapulse_ingest_dlq_dropped_total`` (never silently). Log lines are limited per
``(exchange, reason)`` with the number of suppressed events reported on the next line.

A dead letter carries the fields of the runtime's dead letters (``stream`` = ``ingest``,
``error``, ``reason``, ``consumer``, ``time_ms``) plus ``exchange``, ``frame`` (the raw frame,
truncated to ``max_frame`` bytes) and ``frame_bytes`` (its full length).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from prometheus_client import Counter
from redis.exceptions import RedisError

from common.dead_letters import write_dead_letters
from common.logging import get_logger
from common.names import Keys


class RateLimitedLog:
    """At most one log line per key every ``interval`` seconds; counts what it held back."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[tuple[str, ...], float] = {}
        self._suppressed: dict[tuple[str, ...], int] = {}

    def allow(self, *key: str) -> int | None:
        """``None`` to stay quiet, else the number of events suppressed since the last line."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)


class DeadLetters:
    """Buffered, bounded writer of ``dlq:ingest``."""

    def __init__(
        self,
        redis: Any,
        keys: Keys,
        *,
        consumer: str,
        dropped: Counter,
        max_frame: int = 4096,
        max_buffer: int = 10_000,
        flush_interval: float = 0.1,
    ) -> None:
        self._redis = redis
        self.key = keys.dlq("ingest")
        self.consumer = consumer
        self._dropped = dropped
        self.max_frame = max_frame
        self._buffer: deque[dict[bytes, bytes]] = deque()
        self._max_buffer = max_buffer
        self._flush_interval = flush_interval
        self._wake = asyncio.Event()
        self._logs = RateLimitedLog()
        self._log = get_logger("ingest.deadletter")

    def add(self, exchange: str, reason: str, detail: str, frame: str | bytes) -> None:
        """Queue one bad frame (sync: called from the parsing path) and log it, rate-limited."""
        raw = frame.encode(errors="replace") if isinstance(frame, str) else frame
        if len(self._buffer) >= self._max_buffer:
            self._buffer.popleft()
            self._dropped.inc()
        self._buffer.append(
            {
                b"stream": b"ingest",
                b"exchange": exchange.encode(),
                b"reason": reason.encode(),
                b"error": detail[:1024].encode(errors="replace"),
                b"consumer": self.consumer.encode(),
                b"time_ms": b"%d" % int(time.time() * 1000),
                b"frame": raw[: self.max_frame],
                b"frame_bytes": b"%d" % len(raw),
            }
        )
        self._wake.set()
        suppressed = self._logs.allow(exchange, reason)
        if suppressed is not None:
            self._log.warning(
                "bad_frame",
                exchange=exchange,
                reason=reason,
                detail=detail[:200],
                suppressed=suppressed,
            )

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def run(self) -> None:
        """Flush forever (cancel to stop; call ``flush`` afterwards for the rest)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(self._flush_interval)

    async def flush(self) -> None:
        """Append everything buffered; on a Redis error keep it for the next attempt."""
        while self._buffer:
            batch, self._buffer = self._buffer, deque()
            try:
                await write_dead_letters(self._redis, [(self.key, f) for f in batch])
            except RedisError as e:
                self._log.warning("dlq_write_failed", error=repr(e), pending=len(batch))
                batch.extend(self._buffer)  # keep arrival order, then re-apply the bound
                while len(batch) > self._max_buffer:
                    batch.popleft()
                    self._dropped.inc()
                self._buffer = batch
                self._wake.set()
                return
