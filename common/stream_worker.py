"""The stream worker runtime every consuming stage uses.

``StreamWorker`` reads batches for one consumer group over several streams and hands each
batch to a handler (pass ``handler=`` or override ``handle``). What the handler finished is
acked; what it marks *deferred* stays pending until the stage acks it itself with
``worker.ack(entries)`` (the detector does so after its checkpoint); what it marks *failed* (or
the whole batch, if it raises) is retried:

* ``BadInput`` (e.g. ``DecodeError``) → dead-lettered at once, counted by reason;
* any other error → logged with its traceback and left pending; XAUTOCLAIM hands it out again
  after ``CLAIM_IDLE_MS`` (to this or another consumer) and on the ``MAX_DELIVERIES``-th
  failed delivery it goes to ``dlq:<stream>``. An entry whose consumers kept dying is
  dead-lettered when claimed with more than ``MAX_DELIVERIES`` deliveries.

When a handler raises for a batch of several entries, the entries are handed over again one
by one so that one poison entry does not hold back its neighbours (handlers must therefore be
idempotent per entry — they must be anyway: delivery is at-least-once).

Delivery guarantee: at-least-once per group. Effects keyed by the entry (or by the record's
deterministic id) and applied before the ack make it effectively exactly-once.

Deferred entries are "touched" every ``claim_interval`` (XCLAIM JUSTID to this consumer: idle
time reset, delivery count unchanged) so that no other consumer claims them while this one
is alive; a crashed worker stops touching, and its deferred entries are claimed as usual.

The loop: claim idle pending entries (every ``claim_interval``) → else XREADGROUP new ones
(BLOCK ``BLOCK_MS``; with ``linger_ms``, a read that returns less than a full page waits that
long and tops the page up without blocking, so a burst is handled as one batch, after it has
arrived — the sink's choice: it keeps its work off a bar boundary) → handle → ack /
dead-letter → every ``TRIM_INTERVAL_S`` trim the streams
this worker owns the trimming of (``trim_policies``): its internal input streams below what
every group has acked, and the streams it produces (``produces=``) by their own policy. A
public input stream (``Keys.public_streams``) is never trimmed by a worker that merely reads it.
On ``request_stop`` it stops reading, finishes and acks the batch in hand and returns; ``stop``
then flushes and closes. In burst mode ``run`` returns once no new entry is left and nothing
of the group is pending apart from deferred entries.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.backoff import OUTAGE, Backoff
from common.dead_letters import error_reason
from common.errors import BadInput
from common.lifecycle import Service
from common.logging import get_logger
from common.metrics import RUNTIME_METRICS, Readiness, RuntimeMetrics
from common.redis import AnyRedis, redis_from_settings
from common.settings import CommonSettings
from common.stream_consumer import Entry, StreamConsumer, unique_consumer_name
from common.trimming import INTERNAL, TrimPolicy, TrimResult

__all__ = [
    "INTERNAL",
    "BatchResult",
    "Entry",
    "Handler",
    "StreamConsumer",
    "StreamWorker",
    "TrimPolicy",
    "TrimResult",
    "unique_consumer_name",
]

_OUTAGES = (RedisConnectionError, RedisTimeoutError, OSError)


@dataclass(slots=True)
class BatchResult:
    """What a handler did with its batch. Entries not listed here are done and get acked."""

    deferred: list[Entry] = field(default_factory=list)
    """Done, but acked later by the stage itself (``StreamWorker.ack``)."""
    failed: list[tuple[Entry, BaseException]] = field(default_factory=list)
    """Not done: retried later, or dead-lettered (``BadInput`` at once)."""

    def defer(self, entry: Entry) -> None:
        self.deferred.append(entry)

    def fail(self, entry: Entry, error: BaseException) -> None:
        self.failed.append((entry, error))


Handler = Callable[[list[Entry]], Awaitable[BatchResult | None]]


class StreamWorker(Service):
    """A consumer-group worker: the standard loop around a batch handler."""

    name = "worker"

    def __init__(
        self,
        settings: CommonSettings,
        *,
        group: str,
        streams: Sequence[str],
        handler: Handler | None = None,
        redis: AnyRedis | None = None,
        consumer: str | None = None,
        name: str | None = None,
        claim: bool = True,
        trim: bool = True,
        burst: bool = False,
        start_id: str = "0",
        produces: Mapping[str, TrimPolicy] | None = None,
        readiness: Readiness | None = None,
        metrics: RuntimeMetrics = RUNTIME_METRICS,
        linger_ms: int = 0,
    ) -> None:
        super().__init__(burst=burst, readiness=readiness)
        self.linger_ms = linger_ms
        if name:
            self.name = name
        self.settings = settings
        self.group = group
        self.streams = list(streams)
        self._handler = handler
        self._owns_redis = redis is None
        self.redis: AnyRedis = redis if redis is not None else redis_from_settings(settings)
        self.consumer = StreamConsumer.from_settings(
            self.redis,
            settings,
            group=group,
            streams=self.streams,
            consumer=consumer,
            metrics=metrics,
        )
        self.claim_enabled = claim
        self.trim_enabled = trim and settings.trim_interval_s > 0
        public = settings.keys().public_streams
        self.trim_policies: dict[str, TrimPolicy] = {
            s: INTERNAL for s in self.streams if s not in public
        }
        """Every stream this worker trims, with its policy (see ``common.trimming``)."""
        self.trim_policies.update(produces or {})
        self.start_id = start_id
        self.metrics = metrics
        self._batch_size = metrics.batch_size.labels(group)
        self._batch_seconds = metrics.batch_seconds.labels(group)
        self.claim_interval = max(0.05, min(settings.claim_idle_ms / 2000, 5.0))
        self.log = get_logger("runtime", worker=self.name, group=group, consumer=self.consumer_name)
        self._deferred: dict[tuple[str, str], Entry] = {}
        self._groups_missing = False
        self._next_claim = 0.0
        self._next_touch = 0.0
        self._next_trim = time.monotonic() + settings.trim_interval_s
        self.batches = 0

    @property
    def consumer_name(self) -> str:
        return self.consumer.consumer

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await super().start()
        await self.redis.ping()
        self.readiness.set("connected")
        await self.consumer.ensure_groups(self.start_id)
        self.log.debug("consumer_started", streams=self.streams)

    async def close(self) -> None:
        self.readiness.reset()
        if self._owns_redis:
            await self.redis.aclose()

    async def run(self) -> None:
        retry = Backoff(OUTAGE)
        while not self.stopping:
            try:
                drained = await self.step()
                retry.reset()
                self.readiness.set("connected")
            except _OUTAGES as e:
                self.readiness.set("connected", False)
                self.readiness.set("consuming", False)
                delay = retry.next()
                self.metrics.errors.labels(self.group, "redis").inc()
                self.log.warning("redis_unavailable", error=repr(e), retry_in_s=round(delay, 3))
                await self.wait_stopping(delay)
                continue
            except ResponseError as e:
                if "NOGROUP" not in str(e):
                    raise
                # The stream or group vanished (deleted, or a Redis restarted without
                # persistence): recreate it and go on from what the stream holds now.
                self.metrics.errors.labels(self.group, "nogroup").inc()
                self.log.warning("group_missing_recreating", error=str(e))
                self._groups_missing = True
                continue
            if drained and self.burst:
                self.log.info("burst_drained", batches=self.batches)
                return

    async def step(self) -> bool:
        """One turn of the loop; True when there was nothing to do and nothing is pending."""
        if self._groups_missing:
            await self.consumer.ensure_groups(self.start_id)
            self._groups_missing = False
        self.readiness.set("consuming")
        entries: list[Entry] = []
        now = time.monotonic()
        if self._deferred and now >= self._next_touch:
            self._next_touch = now + self.claim_interval
            await self.consumer.touch(self._deferred.values())
        if self.claim_enabled and now >= self._next_claim:
            self._next_claim = now + self.claim_interval
            entries = [e for e in await self.consumer.claim() if e.key not in self._deferred]
        if not entries and not self.stopping:
            block = min(self.settings.block_ms, 50) if self.burst else self.settings.block_ms
            entries = await self.consumer.read(block_ms=block)
            entries += await self._linger(len(entries))
        if entries:
            await self.process(entries)
        if self.trim_enabled and time.monotonic() >= self._next_trim:
            self._next_trim = time.monotonic() + self.settings.trim_interval_s
            await self.trim()
        if entries or not self.burst:
            return False
        pending = await self.consumer.pending_count()
        if pending > len(self._deferred):
            # Failed entries wait to become claimable; sleep a little instead of spinning.
            await self.wait_stopping(min(self.claim_interval, 0.05))
            self._next_claim = 0.0
            return False
        return True

    async def _linger(self, got: int) -> list[Entry]:
        """After a read of ``got`` entries, less than a full page: wait ``linger_ms`` and read
        what arrived meanwhile, up to the page, without blocking (nothing in burst mode, when
        stopping, or when the read came back empty or full)."""
        page = self.consumer.count
        if not self.linger_ms or self.burst or not 0 < got < page:
            return []
        if await self.wait_stopping(self.linger_ms / 1000):
            return []
        return await self.consumer.read(count=page - got, block_ms=0)

    # --- one batch ------------------------------------------------------------------------
    async def handle(self, batch: list[Entry]) -> BatchResult | None:
        """Process ``batch``; override, or pass ``handler=`` to the constructor."""
        if self._handler is None:
            raise NotImplementedError("StreamWorker needs a handler or an overridden handle()")
        return await self._handler(batch)

    async def process(self, entries: list[Entry]) -> None:
        """Dead-letter over-delivered entries, hand the rest over, ack what is done."""
        limit = self.consumer.max_deliveries
        live: list[Entry] = []
        for e in entries:
            if e.deliveries > limit:
                await self._dead(
                    e, f"delivered {e.deliveries} times, never acked", "max_deliveries"
                )
            else:
                live.append(e)
        if not live:
            return
        self.batches += 1
        self._batch_size.observe(len(live))
        started = time.perf_counter()
        try:
            result = await self.handle(live) or BatchResult()
        except Exception as exc:
            self._batch_seconds.observe(time.perf_counter() - started)
            if len(live) == 1:
                await self._settle(live, BatchResult(failed=[(live[0], exc)]))
            else:
                self.log.warning("batch_failed_isolating", entries=len(live), error=repr(exc))
                for e in live:
                    await self._handle_one(e)
            return
        self._batch_seconds.observe(time.perf_counter() - started)
        await self._settle(live, result)

    async def _handle_one(self, entry: Entry) -> None:
        try:
            result = await self.handle([entry]) or BatchResult()
        except Exception as exc:
            result = BatchResult(failed=[(entry, exc)])
        await self._settle([entry], result)

    async def _settle(self, batch: list[Entry], result: BatchResult) -> None:
        if result.deferred or result.failed:
            held = {e.key for e in result.deferred} | {e.key for e, _ in result.failed}
            done = [e for e in batch if e.key not in held]
        else:
            done = batch
        await self.consumer.ack_entries(done)
        self._count(done, "acked")
        for e in result.deferred:
            self._deferred[e.key] = e
        self._count(result.deferred, "deferred")
        for e, error in result.failed:
            await self._failed(e, error)

    def _count(self, entries: list[Entry], outcome: str) -> None:
        """Count ``entries`` under ``outcome``: one counter update per stream, not per entry."""
        if not entries:
            return
        first = entries[0].stream
        if all(e.stream == first for e in entries):
            self.metrics.entries.labels(first, self.group, outcome).inc(len(entries))
            return
        for stream, n in Counter(e.stream for e in entries).items():
            self.metrics.entries.labels(stream, self.group, outcome).inc(n)

    async def _failed(self, entry: Entry, error: BaseException) -> None:
        if isinstance(error, BadInput):
            self.metrics.entries.labels(entry.stream, self.group, "bad_input").inc()
            self.log.warning(
                "bad_input", stream=entry.stream, id=entry.id, reason=error.reason, error=str(error)
            )
            await self._dead(entry, error, error_reason(error))
            return
        self.metrics.errors.labels(self.group, "handler").inc()
        last = entry.deliveries >= self.consumer.max_deliveries
        self.log.error(
            "entry_failed_dead_lettered" if last else "entry_failed_will_retry",
            stream=entry.stream,
            id=entry.id,
            deliveries=entry.deliveries,
            exc_info=error,
        )
        if last:
            await self._dead(entry, error, "max_deliveries")
        else:
            self.metrics.entries.labels(entry.stream, self.group, "retry").inc()

    async def _dead(self, entry: Entry, error: BaseException | str, reason: str) -> None:
        await self.consumer.dead_letter(entry, error, reason)
        self._deferred.pop(entry.key, None)
        self.metrics.entries.labels(entry.stream, self.group, "dead").inc()

    # --- deferred acks and trimming -----------------------------------------------------
    async def ack(self, entries: Iterable[Entry]) -> int:
        """Ack entries the handler deferred (e.g. once a checkpoint covers them)."""
        batch = list(entries)
        for e in batch:
            self._deferred.pop(e.key, None)
        n = await self.consumer.ack_entries(batch)
        return n

    async def ack_ids(self, stream: str, ids: Sequence[str]) -> int:
        """Ack deferred entries of ``stream`` by id (when the stage kept only the ids).

        Use this or ``ack`` rather than the consumer's own ``ack``, so the worker stops
        keeping those entries alive."""
        for i in ids:
            self._deferred.pop((stream, i), None)
        return await self.consumer.ack(stream, ids)

    @property
    def deferred(self) -> list[Entry]:
        """Entries handled but not yet acked by the stage, oldest first."""
        return list(self._deferred.values())

    async def trim(self, *, now_ms: int | None = None) -> list[TrimResult]:
        """Trim every stream of ``trim_policies`` as its policy allows (and apply the hard
        cap); refresh this group's pending and lag gauges of every input stream; forget
        consumers of the group idle past ``DELETE_IDLE_CONSUMERS_MS`` that hold nothing (names
        are unique per process, so every restart leaves one behind)."""
        results = [
            await self.consumer.trim(stream, policy, now_ms=now_ms)
            for stream, policy in self.trim_policies.items()
        ]
        for stream in self.streams:
            if stream not in self.trim_policies:  # read, not trimmed: its gauges all the same
                await self.consumer.report_position(stream)
        if self.settings.delete_idle_consumers_ms:
            gone = await self.consumer.delete_idle_consumers(self.settings.delete_idle_consumers_ms)
            if gone:
                self.log.info("idle_consumers_deleted", consumers=gone)
        for r in results:
            if r.hard_capped:
                self.log.warning(
                    "hard_cap_trimmed",
                    stream=r.stream,
                    entries=r.hard_capped,
                    cap=self.consumer.hard_maxlen,
                )
        return results
