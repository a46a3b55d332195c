"""The signals worker: ``patterns`` (group ``signals``) -> score -> exactly-once append -> ack.

Per batch of pattern events:

1. decode and score every event (pure; a bad event is dead-lettered and the batch goes on);
2. stamp ``emitted_at`` and append all the batch's signals in one Lua call (``append.lua``):
   ids already on the stream are skipped, so a redelivery never duplicates a signal;
3. PUBLISH the newly appended ones on their symbol's channel (lossy by design);
4. XACK the batch.

A crash anywhere before 4 leaves the entries pending; another instance (or this one after a
restart) claims them with XAUTOCLAIM once idle for ``CLAIM_IDLE_MS`` and repeats 1-4: step 2
then appends only what was missing. Scoring depends only on the event, so any number of
instances produce the same signals, whichever instance handles which event.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import Counter, Histogram

from common.contracts import PatternEvent
from common.errors import BadInput
from common.logging import get_logger
from common.names import GROUP_SIGNALS
from common.redis import AnyRedis
from common.runtime import BatchResult, Entry, StreamWorker, TrimResult
from common.trimming import parse_id, safe_minid
from signals.append import SignalAppender
from signals.contract import Signal, now_iso
from signals.scoring import score_event
from signals.settings import SignalsSettings

EVENTS = Counter("alphapulse_signals_events_total", "Pattern events scored.")
EMITTED = Counter(
    "alphapulse_signals_emitted_total", "Signals appended to the stream.", ["direction"]
)
DUPLICATES = Counter(
    "alphapulse_signals_duplicates_total",
    "Signals already on the stream (redelivered events), not appended again.",
)
TRIMMED = Counter(
    "alphapulse_signals_trimmed_total", "Entries trimmed from the signals stream (retention)."
)
APPEND_SECONDS = Histogram(
    "alphapulse_signals_append_seconds",
    "Time of one atomic check-and-append call.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)


def signals_minid(group_minid: str | None, cutoff_ms: int) -> str:
    """Where ``signals`` may be trimmed: below the oldest entry any consumer group still needs
    (``group_minid``; None without groups) and below ``cutoff_ms`` (the retention that keeps
    history for group-less readers: WebSocket resume, ``tail --from``)."""
    cutoff = f"{max(cutoff_ms, 0)}-0"
    if group_minid is None or parse_id(cutoff) < parse_id(group_minid):
        return cutoff
    return group_minid


class SignalsWorker(StreamWorker):
    """One consumer of group ``signals`` (the runtime's loop around ``handle``); run many."""

    name = "signals"

    def __init__(
        self,
        settings: SignalsSettings,
        *,
        redis: AnyRedis | None = None,
        consumer: str | None = None,
        burst: bool = False,
    ) -> None:
        keys = settings.common.keys()
        super().__init__(
            settings.common,
            group=GROUP_SIGNALS,
            streams=[keys.patterns],
            redis=redis,
            consumer=consumer,
            name="signals",
            burst=burst,
        )
        self.model = settings.model
        self.emit_warming = settings.emit_warming
        self.stream_retention_ms = settings.stream_retention_ms
        self.publish = settings.publish
        self.appender = SignalAppender(
            self.redis, keys, retention_ms=settings.id_retention_ms, maxlen=settings.stream_maxlen
        )

    async def start(self) -> None:
        await super().start()
        get_logger("signals.worker").info(
            "signals_started", consumer=self.consumer_name, model=self.model.fingerprint
        )

    async def trim(self) -> list[TrimResult]:
        """Trim ``patterns`` (the runtime's safe MINID), then ``signals`` (``signals_minid``)."""
        results = await super().trim()
        if self.stream_retention_ms:
            results.append(await self.trim_signals(int(time.time() * 1000)))
        return results

    async def trim_signals(self, now_ms: int) -> TrimResult:
        """Trim the public stream below what its groups need *and* below the retention."""
        stream = self.appender.keys.signals
        if not await self.redis.exists(stream):
            return TrimResult(stream, None, 0, 0)
        positions = await self.consumer.group_positions(stream)
        minid = signals_minid(safe_minid(positions), now_ms - self.stream_retention_ms)
        trimmed = int(await self.redis.xtrim(stream, minid=minid, approximate=False))
        TRIMMED.inc(trimmed)
        return TrimResult(stream, minid, trimmed, 0)

    async def handle(self, batch: list[Entry]) -> BatchResult:
        """Score, append, publish; the runtime acks what is not marked failed."""
        result = BatchResult()
        scored: list[Signal] = []
        for entry in batch:
            try:
                event = PatternEvent.decode(entry.fields)
                scored.extend(score_event(event, self.model, emit_warming=self.emit_warming))
            except BadInput as err:
                result.fail(entry, err)  # dead-lettered by the runtime, counted by reason
        EVENTS.inc(len(batch) - len(result.failed))
        await self.emit(scored)
        return result

    async def emit(self, scored: Sequence[Signal]) -> list[Signal]:
        """Stamp, append atomically, publish the new ones; returns the new ones."""
        stamp = now_iso()
        stamped = [s.stamped(stamp) for s in scored]
        started = time.perf_counter()
        stream_ids = await self.appender.append(stamped)
        APPEND_SECONDS.observe(time.perf_counter() - started)
        new = [s for s, sid in zip(stamped, stream_ids, strict=True) if sid is not None]
        DUPLICATES.inc(len(stamped) - len(new))
        for s in new:
            EMITTED.labels(s.direction).inc()
        if self.publish:
            await self.appender.publish(new)
        return new
