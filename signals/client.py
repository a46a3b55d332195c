"""``signals.client`` — consume the public ``signals`` stream from any Python service.

Example service (a risk check that must see every signal at least once)::

    import asyncio
    from signals.client import SignalSubscription

    async def main() -> None:
        async with SignalSubscription(
            "redis://127.0.0.1:6379/0", group="risk-service", start="now", ack="manual"
        ) as sub:
            async for signal in sub:
                print(signal.id, signal.direction, signal.score, signal.supporting)
                await sub.ack(signal)  # only once the signal is fully handled

    asyncio.run(main())

Semantics:

* Each ``group`` is its own Redis consumer group on ``signals``: every group sees every
  signal; instances sharing one group share the signals between them.
* ``start`` applies when the group is created: ``"now"`` (only new signals), ``"beginning"``
  (everything still in the stream) or a stream entry id (everything after it). An existing
  group continues where it stopped.
* At-least-once. ``ack="auto"`` acks a signal when the loop asks for the next one (i.e. after
  the loop body finished with it); ``ack="manual"`` leaves it to ``await sub.ack(signal)``.
  An unacked signal is delivered again: on restart the consumer first re-reads its own pending
  signals (the consumer name is stable per host and group unless given), and it claims those
  of consumers dead for ``claim_idle_ms``. De-duplicate on ``signal.id`` if it matters.
* Entries that are not valid signals go to ``dlq:signals`` and are skipped.
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Literal

from common.errors import BadInput
from common.names import Keys
from common.redis import AnyRedis, redis_from_settings
from common.settings import CommonSettings
from common.stream_consumer import Entry, StreamConsumer
from signals.contract import Signal, decode_entry

AckMode = Literal["auto", "manual"]
_STARTS = {"now": "$", "beginning": "0"}


class SignalSubscription:
    """``async for signal in SignalSubscription(url, group=...)`` — typed ``Signal`` objects."""

    def __init__(
        self,
        redis_url: str = "redis://127.0.0.1:6379/0",
        *,
        group: str,
        start: str = "now",
        ack: AckMode = "auto",
        consumer: str | None = None,
        namespace: str = "",
        count: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 60_000,
        redis: AnyRedis | None = None,
    ) -> None:
        if ack not in ("auto", "manual"):
            raise ValueError(f"ack must be 'auto' or 'manual', got {ack!r}")
        self.keys = Keys(partitions=1, namespace=namespace)
        self._owns_redis = redis is None
        self.redis: AnyRedis = (
            redis if redis is not None else redis_from_settings(CommonSettings(redis_url=redis_url))
        )
        self.ack_mode = ack
        self.start_id = _STARTS.get(start, start)
        self.consumer = StreamConsumer(
            redis=self.redis,
            group=group,
            streams=[self.keys.signals],
            keys=self.keys,
            consumer=consumer or f"{group}-{socket.gethostname()}",
            count=count,
            block_ms=block_ms,
            claim_idle_ms=claim_idle_ms,
        )
        self._buffer: deque[tuple[Entry, Signal]] = deque()
        self._unacked: dict[str, str] = {}  # signal id -> stream entry id
        self._last: Signal | None = None
        self._own_pending_cursor: str | None = "0-0"  # None once our old pending are replayed
        self._started = False
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self.consumer.ensure_groups(self.start_id)

    async def close(self, *, ack_last: bool = True) -> None:
        """Ack the last signal in auto mode (unless ``ack_last`` is false: the loop body failed
        on it), then release the connection (idempotent)."""
        if self._closed:
            return
        if ack_last and self.ack_mode == "auto" and self._last is not None and self._started:
            await self.ack(self._last)
        self._closed = True
        if self._owns_redis:
            await self.redis.aclose()

    async def __aenter__(self) -> SignalSubscription:
        await self.start()
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        await self.close(ack_last=exc_type is None)  # a signal the body failed on stays pending

    # --- iteration -------------------------------------------------------------------------
    def __aiter__(self) -> SignalSubscription:
        return self

    async def __anext__(self) -> Signal:
        if self._closed:
            raise StopAsyncIteration
        await self.start()
        if self.ack_mode == "auto" and self._last is not None:
            await self.ack(self._last)
            self._last = None
        while not self._buffer:
            await self._fill()
        entry, signal = self._buffer.popleft()
        self._unacked[signal.id] = entry.id
        self._last = signal
        return signal

    async def ack(self, *signals: Signal) -> int:
        """Acknowledge handled signals; returns how many were still pending."""
        ids = [self._unacked.pop(s.id) for s in signals if s.id in self._unacked]
        return await self.consumer.ack(self.keys.signals, ids)

    @property
    def pending(self) -> int:
        """Signals handed out by this object and not acked yet."""
        return len(self._unacked)

    async def _fill(self) -> None:
        """Own pending entries first (after a restart), then idle ones of dead consumers, then
        new ones (blocking up to ``block_ms``)."""
        if self._own_pending_cursor is not None:
            entries = await self._read_own_pending()
        else:
            entries = await self.consumer.claim()
            if not entries:
                entries = await self.consumer.read()
        for entry in entries:
            try:
                self._buffer.append((entry, decode_entry(entry.fields)))
            except BadInput as err:
                await self.consumer.dead_letter(entry, err)

    async def _read_own_pending(self) -> list[Entry]:
        """The next page of this consumer's own pending signals (after a restart). A signal
        trimmed from the stream while pending comes back without fields: there is nothing to
        hand out or redo, so it is acked, not dead-lettered (it was a valid signal)."""
        entries = await self.consumer.read_pending(self._own_pending_cursor or "0-0")
        self._own_pending_cursor = entries[-1].id if entries else None
        await self.consumer.ack(self.keys.signals, [e.id for e in entries if not e.fields])
        return [e for e in entries if e.fields]
