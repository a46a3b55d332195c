"""The engine steps a detector process's runners ask for in one event-loop turn, run as one.

A :class:`detectors.runner.PartitionRunner` awaits :meth:`StepGatherer.apply` for each engine
step. The first request of a turn schedules the run for the next turn, so every runner whose
read came back in the same turn joins it, and :func:`detectors.partition.step_engines` pays
the numpy work's fixed cost per step once for all of them instead of once per partition. At a
bar boundary ingest writes every partition's closing entry at once, so most of a process's
partitions step together (in the paced e2e run, 5–8 of a detector's 8 for ~80 % of the
boundary's steps). Every engine's output is what it would have been alone
(``step_engines``), so nothing downstream can tell; an engine is in a run at most once (a
runner awaits its step before asking for the next).
"""

from __future__ import annotations

import asyncio

from common.contracts import TickBatch
from detectors.metrics import DetectorMetrics
from detectors.partition import Output, PartitionEngine, Step, step_engines


class StepGatherer:
    """Runs the engine steps requested in one event-loop turn as one (see the module)."""

    def __init__(self, metrics: DetectorMetrics) -> None:
        self.metrics = metrics
        self._pending: list[tuple[Step, asyncio.Future[Output]]] = []

    async def apply(
        self, engine: PartitionEngine, batch: TickBatch, entry_id: str | None
    ) -> Output:
        """``engine.apply(batch, entry_id)``, stepped with the others asked for this turn."""
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._run)
        done: asyncio.Future[Output] = loop.create_future()
        self._pending.append(((engine, batch, entry_id), done))
        return await done

    def _run(self) -> None:
        pending, self._pending = self._pending, []
        try:
            outs = step_engines([step for step, _ in pending])
        except Exception as e:  # each runner fails as its own step would have
            for _, done in pending:
                if not done.done():
                    done.set_exception(e)
            return
        self.metrics.joint_steps.inc()
        for (_, done), out in zip(pending, outs, strict=True):
            if not done.done():  # a cancelled runner's step ran: its state is not checkpointed
                done.set_result(out)
