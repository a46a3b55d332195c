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
from common.runtime import BatchResult, Entry, StreamWorker, TrimPolicy, TrimResult
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
        # The producer owns the trimming of the public stream: it keeps its retention for
        # readers outside any group (0 = keep everything; only HARD_MAXLEN applies then).
        signals_policy = TrimPolicy(settings.stream_retention_ms or None)
        super().__init__(
            settings.common,
            group=GROUP_SIGNALS,
            streams=[keys.patterns],
            redis=redis,
            consumer=consumer,
            name="signals",
            burst=burst,
            produces={keys.signals: signals_policy},
        )
        self.model = settings.model
        self.publish = settings.publish
        self.appender = SignalAppender(
            self.redis, keys, retention_ms=settings.id_retention_ms, maxlen=settings.stream_maxlen
        )

    async def start(self) -> None:
        await super().start()
        get_logger("signals.worker").debug(
            "signals_started", consumer=self.consumer_name, model=self.model.fingerprint
        )

    async def trim(self, *, now_ms: int | None = None) -> list[TrimResult]:
        """The runtime's trimming (``patterns`` below what every group acked, ``signals`` by
        its retention policy), plus the signals-specific trim counter."""
        results = await super().trim(now_ms=now_ms)
        for r in results:
            if r.stream == self.appender.keys.signals:
                TRIMMED.inc(r.trimmed)
        return results

    async def handle(self, batch: list[Entry]) -> BatchResult:
        """Score, append, publish; the runtime acks what is not marked failed."""
        result = BatchResult()
        scored: list[Signal] = []
        for entry in batch:
            try:
                scored.extend(score_event(PatternEvent.decode(entry.fields), self.model))
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
