"""The signals worker: ``patterns`` (group ``signals``) -> score -> exactly-once append -> ack.

Per batch of ``patterns`` entries (v2: the pattern events of one detector write, columnar;
v1: one event; :mod:`common.columns` decodes both):

1. decode and score the events (pure, ``signals.columnar``: a v2 entry from its columns;
   an entry that does not decode is dead-lettered, an event that cannot be scored is
   dead-lettered alone, and the batch goes on);
2. stamp ``emitted_at`` (one stamp per slice, set as the signals are built) and append the
   slice's signals in one Lua call (``append.lua``): ids already on the stream are skipped,
   so a redelivery never duplicates a signal;
3. PUBLISH the newly appended ones on their symbol's channel (lossy by design), in the
   same script call as their append;
4. XACK the batch.

Steps 1-3 run in append slices of about ``SIGNALS_APPEND_SLICE_MS`` of scoring each: a read
holds up to ``BATCH_COUNT`` detector writes (a whole bar boundary at 1,000 symbols), and its
first writes' signals go out while the rest are still scored, instead of all waiting for the
last one.

A crash anywhere before 4 leaves the entries pending; another instance (or this one after a
restart) claims them with XAUTOCLAIM once idle for ``CLAIM_IDLE_MS`` and repeats 1-4: step 2
then appends only what was missing. Scoring depends only on the event, so any number of
instances produce the same signals, whichever instance handles which event.

Live configuration (``common.configstore``, ``signals.versions``): the worker keeps every
configuration version (a ``ConfigFollower`` blocks on the history stream beside the loop)
and scores each event with the version covering its bar's open time. Step 2 passes the
newest version it knows: if a newer one was written meanwhile, the script appends nothing,
and the worker reloads the history and scores the batch again. So a version is never
applied late, even by a worker that missed it, and a worker started, restarted or killed in
the middle of a change gives the same signals. A namespace without a configuration gets
version 1 from this worker's start-time settings (``SIGNALS_MODEL_FILE``), ``effective_from``
0; once a version exists, ``SIGNALS_MODEL_FILE`` is ignored (a differing one is logged).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

from common.configstore import ConfigFollower, ConfigRefused, ConfigVersion, write_version
from common.contracts import Fields
from common.errors import BadInput
from common.logging import get_logger
from common.names import GROUP_SIGNALS
from common.redis import AnyRedis
from common.stream_worker import BatchResult, Entry, StreamWorker, TrimPolicy, TrimResult
from signals.append import SignalAppender
from signals.columnar import score_entry
from signals.contract import Signal, now_iso
from signals.liveconfig import seed_document
from signals.metrics import SIGNALS_METRICS
from signals.settings import SignalsSettings
from signals.versions import ModelHistory


class SignalsService(StreamWorker):
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
        self.emit_warming = settings.emit_warming
        self.append_slice_ms = settings.append_slice_ms
        self.clock: Callable[[], float] = time.monotonic  # ends append slices (tests: a fake)
        self.seed = dict(settings.config_seed or seed_document({}, settings.model))
        self.history = ModelHistory.seed(settings.model)
        self.config = ConfigFollower(self.redis, keys, worker="signals", on_change=self._apply)
        self.publish = settings.publish
        self.appender = SignalAppender(
            self.redis, keys, retention_ms=settings.id_retention_ms, maxlen=settings.stream_maxlen
        )

    def _apply(self, versions: Sequence[ConfigVersion]) -> None:
        """A new configuration version: rebuild the models (versions are few, immutable)."""
        self.history = ModelHistory.from_config(versions)

    async def start(self) -> None:
        await super().start()
        log = get_logger("signals.service")
        await self.config.refresh()
        if self.config.current is None:
            try:
                await write_version(
                    self.redis,
                    self.appender.keys,
                    self.seed,
                    who=f"signals:{self.consumer_name}",
                    at=now_iso(),
                    comment="seed: start-time settings (SIGNALS_MODEL_FILE)",
                    effective_from=0,
                    expected_version=0,
                )
            except ConfigRefused as e:
                if e.reason != "conflict":  # another worker seeding first is fine
                    raise
            await self.config.refresh()
        first = self.config.versions[0]
        if first.version == 1 and dict(first.doc) != self.seed:
            log.warning("config_seed_ignored", reason="the namespace has a configuration")
        log.debug(
            "signals_started",
            consumer=self.consumer_name,
            config_version=self.history.newest.version,
            model=self.history.newest.name,
        )

    async def run(self) -> None:
        """The runtime's loop, with the configuration follower beside it."""
        async with self.config.running(lambda: self.stopping):
            await super().run()

    async def trim(self, *, now_ms: int | None = None) -> list[TrimResult]:
        """The runtime's trimming (``patterns`` below what every group acked, ``signals`` by
        its retention policy), plus the signals-specific trim counter."""
        results = await super().trim(now_ms=now_ms)
        for r in results:
            if r.stream == self.appender.keys.signals:
                SIGNALS_METRICS.trimmed.inc(r.trimmed)
        return results

    async def handle(self, batch: list[Entry]) -> BatchResult:
        """Score, append, publish, in append slices; the runtime acks what is not marked
        failed."""
        result = BatchResult()
        done = 0
        while done < len(batch):
            done = await self._handle_slice(batch, done, result)
        return result

    async def _handle_slice(self, batch: list[Entry], start: int, result: BatchResult) -> int:
        """Score the entries from ``batch[start]`` on until about ``SIGNALS_APPEND_SLICE_MS``
        of work is done, append and publish their signals; returns where the next slice
        starts. So the first detector writes of a read are on the stream while the rest are
        still being scored (a read holds up to ``BATCH_COUNT`` writes: a whole bar boundary),
        at the price of one script call per slice. A slice is what a read of fewer entries
        would have been: the append's configuration guard and the id dedupe hold per slice."""
        budget = self.append_slice_ms / 1000
        for _ in range(5):
            history = self.history
            stamp = now_iso()  # the slice's emitted_at, set as its signals are built
            failed = BatchResult()
            scored: list[Signal] = []
            through: int | None = None
            events = 0
            deadline = self.clock() + budget
            end = start
            # Entry by entry: only one entry's events are decoded at a time (an entry holds up
            # to ``MAX_ENTRY_RECORDS``; a read up to BATCH_COUNT entries), only signals are kept.
            while end < len(batch) and (end == start or not budget or self.clock() < deadline):
                entry = batch[end]
                end += 1
                try:
                    scores = score_entry(
                        history, entry.fields, emit_warming=self.emit_warming, emitted_at=stamp
                    )
                except BadInput as err:
                    failed.fail(entry, err)  # dead-lettered by the runtime, counted by reason
                    continue
                for i, (open_time, outcome) in enumerate(
                    zip(scores.open_times, scores.results, strict=True)
                ):
                    if isinstance(outcome, BadInput):
                        one = _one_event(entry, scores.event(i), len(scores.results))
                        failed.fail(one, outcome)
                        continue
                    scored.extend(outcome)
                    events += 1
                    through = max(through or 0, open_time)
            if await self.emit(scored, history.newest.version, through) is not None:
                SIGNALS_METRICS.events.inc(events)
                result.failed.extend(failed.failed)
                return end
            SIGNALS_METRICS.rescored.inc()  # a version newer than ours exists: load it, score again
            await self.config.refresh()
        raise RuntimeError("the configuration kept changing under one batch; retried later")

    async def emit(
        self,
        signals: Sequence[Signal],
        config_version: int | None = None,
        scored_through: int | None = None,
    ) -> list[Signal] | None:
        """Append ``signals`` (stamped as ``handle`` built them) atomically, publish the new
        ones; returns the new ones, or None (nothing appended) when ``config_version`` is no
        longer the newest version."""
        started = time.perf_counter()
        stream_ids = await self.appender.append(
            signals,
            config_version=config_version,
            scored_through=scored_through,
            publish=self.publish,
        )
        SIGNALS_METRICS.append_seconds.observe(time.perf_counter() - started)
        if stream_ids is None:
            return None
        new = [s for s, sid in zip(signals, stream_ids, strict=True) if sid is not None]
        SIGNALS_METRICS.duplicates.inc(len(signals) - len(new))
        for direction, count in Counter(s.direction for s in new).items():
            SIGNALS_METRICS.emitted.labels(direction).inc(count)
        return new


def _one_event(entry: Entry, event: Fields, events_in_entry: int) -> Entry:
    """What to dead-letter for one event that cannot be scored: the entry itself when it
    holds just that event, else the event alone as an entry of its own (``event``) under the
    entry's id (the entry's other events are scored; the dead letter acks the entry like any
    failure)."""
    if events_in_entry == 1:
        return entry
    return Entry(entry.stream, entry.id, dict(event), entry.deliveries)
