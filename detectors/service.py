"""``python -m detectors``: the async shell around the pure partition engine.

One ``DetectorService`` per process. Every ``HEARTBEAT_MS`` it heartbeats its membership,
computes the partition table (:func:`detectors.ownership.assign`), renews the leases it
holds, asks the runners of partitions the table gives to others to hand over, and tries to
acquire the free partitions the table gives to it. Each owned partition has a
:class:`detectors.runner.PartitionRunner` task (reading, applying, writing, checkpointing:
see that module). Runners work in slices and park between them while a rebalance round is
due (:meth:`DetectorService.yield_to_renewal`), so an overloaded detector keeps its leases
(``docs/reliability.md``, "Overload").
"""

from __future__ import annotations

import asyncio
import math
import time

from redis.exceptions import RedisError

from common.lifecycle import Service
from common.logging import get_logger
from common.metrics import Readiness
from common.redis import AnyRedis, redis_from_settings
from detectors.gather import StepGatherer
from detectors.metrics import DETECTOR_METRICS, DetectorMetrics
from detectors.ownership import Ownership, assign
from detectors.partition import row_space
from detectors.patterns import PatternDetector
from detectors.runner import PartitionRunner
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
        # Every partition's rows in one space, so that the steps the runners ask for in one
        # event-loop turn (a bar boundary's) run as one (detectors.gather).
        self.rows = row_space(settings.engine, self.patterns)
        self.steps = StepGatherer(metrics)
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

    def released(self, runner: PartitionRunner) -> None:
        """``runner`` checkpointed and released its partition (handed over or stopping)."""
        self._moves["released"] += 1
        self.log.debug("partition_released", partition=runner.p, epoch=runner.epoch)

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
