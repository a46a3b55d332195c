"""``python -m detectors``: the async shell around the pure partition engine.

One ``DetectorService`` per process. Every ``HEARTBEAT_MS`` it heartbeats its membership,
computes the partition table (:func:`detectors.ownership.assign`), renews the leases it
holds, asks the runners of partitions the table gives to others to hand over, and tries to
acquire the free partitions the table gives to it. Each owned partition has a
``PartitionRunner`` task:

1. restore the checkpoint (or start empty): the state and the last applied entry id;
2. read the partition's entries in id order through consumer group ``detectors`` under one
   consumer name *per partition* (``p<n>``): first the group's pending entries above the last
   applied id (what a previous owner read but never checkpointed — "claiming" them needs no
   XCLAIM because every owner of the partition is the same consumer), then new ones
   (``XREADGROUP >``), which are read back the same way so they are applied strictly in id
   order even if a stale owner grabbed some;
3. apply each entry (an entry that does not decode is dead-lettered and counted as applied;
   a tick the engine rejects as implausible — :mod:`detectors.plausibility` — is
   dead-lettered alone, as a one-tick entry of its own, with the reason);
4. XADD the closed bars to ``bars``, the pattern events to ``patterns`` and the completed
   outcome horizons to ``outcomes`` (deterministic ids in the fields; a crash before the
   checkpoint replays them with the same ids);
5. every ``CHECKPOINT_INTERVAL`` ms, and before handing over, write the checkpoint and XACK
   the covered entries in one fenced Lua call; a failed fence means the lease was lost, and
   the runner stops without acking.

Steps 3-5 run in work slices of about ``WORK_SLICE_MS``, yielding to the event loop (and to
a due heartbeat/renewal round) in between, so an overloaded detector keeps its leases
(``docs/reliability.md``, "Overload").
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from typing import Any

from redis.exceptions import RedisError

from common.contracts import TickBatch, encode_outcomes
from common.errors import DecodeError
from common.lifecycle import Service
from common.logging import get_logger
from common.metrics import Readiness
from common.names import GROUP_DETECTORS
from common.redis import AnyRedis, redis_from_settings
from common.stream_consumer import Entry, StreamConsumer, dead_letter_fields, write_dead_letters
from detectors import checkpoint
from detectors.metrics import DETECTOR_METRICS, DetectorMetrics
from detectors.ownership import Ownership, assign
from detectors.partition import Output, PartitionEngine
from detectors.patterns import PatternDetector
from detectors.settings import DetectorSettings

#: Seconds between acquisition attempts while a partition we are given is still held.
ACQUIRE_RETRY_S = 0.05


class DetectorService(Service):
    name = "detectors"

    def __init__(
        self,
        settings: DetectorSettings,
        *,
        redis: AnyRedis | None = None,
        metrics: DetectorMetrics = DETECTOR_METRICS,
    ) -> None:
        # Ready once it has joined and rebalanced: the default conditions (connected,
        # consuming) are the stream runtime's, which this service never sets.
        super().__init__(readiness=Readiness("membership"))
        self.settings = settings
        self.keys = settings.common.keys()
        self.redis: AnyRedis | None = redis
        self.metrics = metrics
        self.patterns = PatternDetector(settings.engine.patterns)
        self.runners: dict[int, PartitionRunner] = {}
        self._moves = {"acquired": 0, "handed_over": 0, "released": 0}  # since last logged
        self._own_redis = redis is None
        self._ownership: Ownership | None = None
        self._renewed_at: float | None = None  # monotonic start of the last renewal round
        self._round_due = math.inf  # monotonic time the next rebalance round is due
        self._round_done = asyncio.Event()  # set when the round in progress or due has run
        # Made here, not at import: structlog binds a logger to the configuration current
        # at bind time, and run_service configures logging before building the service.
        self.log = get_logger("detectors", member=settings.detector_id)

    @property
    def ownership(self) -> Ownership:
        assert self._ownership is not None, "start() first"
        return self._ownership

    async def start(self) -> None:
        await super().start()
        if self.redis is None:
            self.redis = redis_from_settings(self.settings.common)
        self._ownership = Ownership(
            self.redis, self.keys, self.settings.detector_id, self.settings.lease_ttl_ms
        )
        self.log.debug("detector_started")

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            while not self.stopping:
                settled = True
                try:
                    settled = await self._rebalance(tg)
                except (RedisError, OSError) as e:
                    self.log.warning("rebalance_failed", error=repr(e))
                heartbeat = self.settings.heartbeat_ms / 1000
                self._end_round(heartbeat)
                self.readiness.set("membership", True)
                # A partition the table gives us is still held by its previous owner, which
                # hands it over as soon as it notices: try again shortly, not a heartbeat
                # later, so a moved partition stalls for its handover only.
                await self.wait_stopping(heartbeat if settled else min(heartbeat, ACQUIRE_RETRY_S))
            self._end_round(math.inf)  # no more rounds: never keep a runner waiting for one
            # Leave first, so the others' tables already give our partitions away and they
            # acquire each one as soon as its runner has checkpointed and released it.
            try:
                await self.ownership.heartbeat(alive=False)
            except (RedisError, OSError) as e:
                self.log.warning("leave_failed", error=repr(e))
            for runner in self.runners.values():
                runner.hand_over = True
        self._log_moves(settled=True)  # the partitions released while stopping

    async def _rebalance(self, tg: asyncio.TaskGroup) -> bool:
        """Heartbeat, renew, hand over and acquire; True if we now run every partition the
        table gives us (False: some are still held by their previous owner)."""
        held = [r for r in self.runners.values() if not (r.hand_over or r.lost)]
        self._observe_renewal()
        # One round trip for the heartbeat and every renewal, not one per lease: busy runners
        # park while a round is due (yield_to_renewal), so keep the round short.
        renewals = asyncio.gather(*(self.ownership.renew(r.p, r.epoch) for r in held))
        members, renewed = await asyncio.gather(self.ownership.heartbeat(), renewals)
        me = self.settings.detector_id
        if me not in members:
            members.append(me)
        wanted = set(assign(members, self.settings.common.partitions)[me])
        for runner, ok in zip(held, renewed, strict=True):
            if not ok:
                runner.lost = True
                self.metrics.leases_lost.inc()
                self.log.warning("lease_lost", partition=runner.p, epoch=runner.epoch)
            elif runner.p not in wanted and not runner.hand_over:
                runner.hand_over = True
                self._moves["handed_over"] += 1
                self.log.debug("partition_handover", partition=runner.p)
        for p in sorted(wanted - self.runners.keys()):
            epoch = await self.ownership.acquire(p)
            if epoch:
                runner = PartitionRunner(self, p, epoch)
                self.runners[p] = runner
                tg.create_task(runner.run(), name=f"partition-{p}")
                self._moves["acquired"] += 1
                self.log.debug("partition_acquired", partition=p, epoch=epoch)
        self.metrics.owned.set(len(self.runners))
        settled = wanted == self.runners.keys()  # nothing left to acquire or hand over
        self._log_moves(settled=settled)
        now = time.monotonic()
        # Only partitions holding unacked entries can be behind on checkpoints: an idle one
        # never writes one (nothing to cover) and must not look stale.
        ages = [now - r.checkpointed_at for r in self.runners.values() if r.unacked]
        self.metrics.checkpoint_age.set(max(ages, default=0.0))
        return wanted <= self.runners.keys()

    def _log_moves(self, *, settled: bool) -> None:
        """One INFO line per rebalance: once this member runs exactly the partitions the
        table gives it, the moves since the last line (the per-partition events are DEBUG:
        a rebalance of 16 partitions is one line, not 16 or 32 — nor one per round while
        the previous owners are still handing partitions over)."""
        if settled and any(self._moves.values()):
            self.log.info("partitions_moved", **self._moves, owned=sorted(self.runners))
            self._moves = dict.fromkeys(self._moves, 0)

    def _end_round(self, next_in: float) -> None:
        """A rebalance round is over; the next one is due ``next_in`` seconds from now."""
        self._round_due = time.monotonic() + next_in
        done, self._round_done = self._round_done, asyncio.Event()
        done.set()

    async def yield_to_renewal(self) -> None:
        """Called by runners between work slices: once a rebalance round (heartbeat, lease
        renewal) is due, wait until it has run. Every busy runner parks at its next slice
        boundary, so the round gets the event loop to itself instead of waiting a work slice
        per busy partition at each of its awaits: renewal is at most about one slice late,
        however many partitions are flooded."""
        if time.monotonic() >= self._round_due:
            await self._round_done.wait()

    def _observe_renewal(self) -> None:
        """Record how much later than ``HEARTBEAT_MS`` after the previous round this renewal
        round starts (a lease is lost once that exceeds ``LEASE_TTL_MS - HEARTBEAT_MS``)."""
        now = time.monotonic()
        if self._renewed_at is not None:
            late = now - self._renewed_at - self.settings.heartbeat_ms / 1000
            self.metrics.renewal_lateness.observe(max(0.0, late))
        self._renewed_at = now

    async def close(self) -> None:
        if self._own_redis and self.redis is not None:
            await self.redis.aclose()


class PartitionRunner:
    """Owns one partition for one lease epoch (see the module docstring)."""

    def __init__(self, service: DetectorService, partition: int, epoch: int) -> None:
        self.service = service
        self.p = partition
        self.epoch = epoch
        self.stream = service.keys.ticks(partition)
        self.consumer = f"p{partition}"
        self.hand_over = False
        self.log = service.log
        self.lost = False
        self.checkpointed_at = time.monotonic()
        self.unacked: list[str] = []
        self.engine: PartitionEngine | None = None
        self.last_applied = "0-0"
        # Whether entries above ``last_applied`` may still be pending (after a restore, or
        # when the last pending read came back full): read those before blocking for more.
        self.maybe_pending = True
        self.max_ts_seen = 0
        self.progress_wall_ms = time.time() * 1000
        self.trimmed_at = time.monotonic()
        self.consumer_api = StreamConsumer.from_settings(
            self.redis,
            service.settings.common,
            group=GROUP_DETECTORS,
            streams=[self.stream],
            consumer=self.consumer,
        )

    @property
    def redis(self) -> AnyRedis:
        assert self.service.redis is not None
        return self.service.redis

    async def run(self) -> None:
        try:
            await self._restore()
            await self._loop()
            if not self.lost:
                await self._checkpoint()
                if not self.lost:
                    await self.service.ownership.release(self.p, self.epoch)
                    self.service._moves["released"] += 1
                    self.log.debug("partition_released", partition=self.p, epoch=self.epoch)
        except (RedisError, OSError) as e:
            # Keep the lease un-renewed: it expires, and the partition is restored from its
            # checkpoint by whoever acquires it next (maybe this process again).
            self.log.error("partition_failed", partition=self.p, error=repr(e))
        finally:
            self.service.runners.pop(self.p, None)

    async def _restore(self) -> None:
        settings = self.service.settings
        try:
            await self.redis.xgroup_create(self.stream, GROUP_DETECTORS, id="0", mkstream=True)
        except RedisError as e:
            if "BUSYGROUP" not in str(e):
                raise
        data = await self.service.ownership.load_checkpoint(self.p)
        if data is None:
            self.engine = PartitionEngine(settings.engine, self.service.patterns)
        else:
            self.engine = checkpoint.loads(data, settings.engine, self.service.patterns)
        self.last_applied = self.engine.last_id or "0-0"
        self.log.debug("partition_restored", partition=self.p, last_id=self.last_applied)

    async def _read_pending(self, count: int) -> list[Entry]:
        reply: Any = await self.redis.xreadgroup(
            GROUP_DETECTORS, self.consumer, {self.stream: self.last_applied}, count=count
        )
        return _entries(self.stream, reply)

    async def _read(self) -> list[Entry]:
        common = self.service.settings.common
        if self.maybe_pending:
            entries = await self._read_pending(common.batch_count)
            self.maybe_pending = len(entries) == common.batch_count
            if entries:
                return entries
        pipe = self.redis.pipeline(transaction=False)
        pipe.xreadgroup(
            GROUP_DETECTORS,
            self.consumer,
            {self.stream: ">"},
            count=common.batch_count,
            block=common.block_ms,
        )
        pipe.xreadgroup(
            GROUP_DETECTORS,
            self.consumer,
            {self.stream: self.last_applied},
            count=common.batch_count,
        )
        _, pending = await pipe.execute()
        entries = _entries(self.stream, pending)
        # A full page may have left more pending behind it (e.g. a stale owner's reads).
        self.maybe_pending = len(entries) == common.batch_count
        return entries

    @property
    def leaving(self) -> bool:
        """Whether this runner must stop taking work (handing over, lease lost, stopping)."""
        return self.hand_over or self.lost or self.service.stopping

    async def _loop(self) -> None:
        settings = self.service.settings
        while not self.leaving:
            entries = await self._read()
            if entries:
                await self._apply_in_slices(entries)
                continue
            out = self._idle_close() if settings.idle_close_ms else Output()
            await self._write(out, entries)
            await self._maybe_checkpoint()

    async def _apply_in_slices(self, entries: list[Entry]) -> None:
        """Apply a read batch in work slices of about ``WORK_SLICE_MS`` each.

        After each slice its outputs are written, a checkpoint is taken when due and the event
        loop gets a turn, so however long the batch takes, the service's heartbeat and lease
        renewal (and this process's other partitions) wait at most about a slice, and the
        partition's progress is checkpointed as it goes: a flooded partition keeps its lease
        and moves forward. Once the runner is leaving, the rest of the batch stays pending
        (above the last applied id) for the next read or the next owner.
        """
        budget = self.service.settings.work_slice_ms / 1000
        done = 0
        while done < len(entries) and not self.leaving:
            start = done
            out = Output()
            deadline = time.monotonic() + budget
            while done < len(entries):
                out.extend(await self._apply(entries[done]))
                done += 1
                if time.monotonic() >= deadline:
                    break
            await self._write(out, entries[start:done])
            await self._maybe_checkpoint()
            await asyncio.sleep(0)
            await self.service.yield_to_renewal()
        if done < len(entries):
            self.maybe_pending = True

    async def _maybe_checkpoint(self) -> None:
        interval = self.service.settings.checkpoint_interval_ms / 1000
        if self.unacked and time.monotonic() - self.checkpointed_at >= interval:
            await self._checkpoint()
            await self._maybe_trim()

    async def _maybe_trim(self) -> None:
        """Trim ``ticks:{p}`` below what every group acked (``TRIM_INTERVAL_S``; 0 = never)."""
        every = self.service.settings.common.trim_interval_s
        if every and not self.lost and time.monotonic() - self.trimmed_at >= every:
            self.trimmed_at = time.monotonic()
            await self.consumer_api.trim(self.stream)

    async def _apply(self, entry: Entry) -> Output:
        engine = self.engine
        assert engine is not None
        self.last_applied = entry.id
        self.unacked.append(entry.id)
        metrics = self.service.metrics
        try:
            if not entry.fields:
                raise DecodeError("missing_entry", "entry deleted before it was applied")
            batch = TickBatch.decode(entry.fields)
        except DecodeError as e:
            metrics.bad_entries.labels(e.reason).inc()
            await self._dead_letters([(entry, e, e.reason)])
            engine.last_id = entry.id
            return Output()
        before = engine.agg.counters
        late, dups = before.late, before.duplicates
        out = engine.apply(batch, entry.id)
        if out.rejected:  # not applied: each goes to the DLQ on its own, as a one-tick entry
            letters: list[tuple[Entry, BaseException | str, str]] = []
            for tick, reason in out.rejected:
                metrics.implausible.labels(reason).inc()
                one = Entry(entry.stream, entry.id, TickBatch.from_ticks([tick]).encode())
                detail = f"{tick.exchange}:{tick.symbol} id {tick.trade_id} price {tick.price} "
                detail += f"qty {tick.qty} time {tick.ts} ns received {tick.recv_ts} ns"
                letters.append((one, detail, reason))
            await self._dead_letters(letters)
            out.rejected = []
        metrics.ticks.inc(len(batch))
        metrics.late.inc(engine.agg.counters.late - late)
        metrics.duplicates.inc(engine.agg.counters.duplicates - dups)
        if engine.agg.max_ts > self.max_ts_seen:
            self.max_ts_seen = engine.agg.max_ts
            self.progress_wall_ms = time.time() * 1000
        return out

    async def _dead_letters(self, letters: list[tuple[Entry, BaseException | str, str]]) -> None:
        """XADD ``(entry, error, reason)`` dead letters to ``dlq:ticks:{p}`` in one pipeline."""
        key = self.service.keys.dlq(self.stream)
        fields = (
            dead_letter_fields(e, error, reason=why, group=GROUP_DETECTORS, consumer=self.consumer)
            for e, error, why in letters
        )
        await write_dead_letters(self.redis, [(key, f) for f in fields])

    def _idle_close(self) -> Output:
        """Close bars by extrapolated event time when the partition has gone quiet."""
        engine = self.engine
        assert engine is not None
        idle = time.time() * 1000 - self.progress_wall_ms
        if engine.agg.max_ts <= 0 or idle < self.service.settings.idle_close_ms:
            return Output()
        return engine.advance_to(engine.agg.max_ts + int(idle))

    async def _write(self, out: Output, entries: list[Entry]) -> None:
        metrics = self.service.metrics
        if out.bars:
            pipe = self.redis.pipeline(transaction=False)
            keys = self.service.keys
            # Events first: they are what the signals stage waits for (bars only feed the sink),
            # and Redis wakes a blocked reader as soon as the command that fed it has run.
            for event in out.events:
                pipe.xadd(keys.patterns, dict(event.encode().items()))
            for bar in out.bars:
                pipe.xadd(keys.bars, dict(bar.encode().items()))
            if out.outcomes:  # one entry per write: the records carry their own ids
                pipe.xadd(keys.outcomes, dict(encode_outcomes(out.outcomes).items()))
            await pipe.execute()
            # One inc per label, not per bar: a boundary closes a bar for every series at once.
            for timeframe, n in Counter(bar.timeframe for bar in out.bars).items():
                metrics.bars.labels(timeframe).inc(n)
            fired = Counter(name for event in out.events for name in event.patterns)
            for name, n in fired.items():
                metrics.patterns.labels(name).inc(n)
        now_ms = time.time() * 1000
        for entry in entries:
            metrics.latency.observe(max(0.0, now_ms - int(entry.id.split("-")[0])) / 1000)

    async def _checkpoint(self) -> None:
        engine = self.engine
        if engine is None:
            return
        state = checkpoint.dumps(engine)
        ok = await self.service.ownership.write_checkpoint(self.p, self.epoch, state, self.unacked)
        if not ok:
            self.lost = True
            self.service.metrics.leases_lost.inc()
            self.log.warning("checkpoint_fenced", partition=self.p, epoch=self.epoch)
            return
        self.unacked = []
        self.checkpointed_at = time.monotonic()
        self.service.metrics.checkpoint_bytes.labels(str(self.p)).set(len(state))


def _entries(stream: str, reply: Any) -> list[Entry]:
    """Entries of one stream from an XREADGROUP reply (list or dict shape)."""
    if not reply:
        return []
    items = reply.get(stream.encode(), reply.get(stream)) if isinstance(reply, dict) else None
    if items is None and isinstance(reply, list):
        items = reply[0][1]
    out = []
    for raw_id, fields in items or []:
        eid = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        out.append(Entry(stream, eid, dict(fields or {})))
    return out
