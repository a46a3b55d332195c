"""Engines stepped together (one row space, ``step_engines``, the runners' ``StepGatherer``)
give each engine exactly what it gives alone: the same outputs in the same order, the same
checkpoints, whatever engines leave the space and come back."""

from __future__ import annotations

import asyncio
import random
from itertools import pairwise
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from common.contracts import Tick, TickBatch
from common.names import partition_of
from detectors import checkpoint
from detectors.gather import StepGatherer
from detectors.metrics import DetectorMetrics
from detectors.partition import EngineConfig, Output, PartitionEngine, row_space, step_engines
from detectors.patterns import PatternDetector
from detectors.timeframes import parse_timeframes
from ingest.offline.ticks import synthetic_ticks

CONFIG = EngineConfig(timeframes=parse_timeframes("1s,5s,1m"), allowed_lateness_ms=1500)
PARTITIONS = 4
PATTERNS = PatternDetector(CONFIG.patterns)


def partition_batches(seed: int = 3, count: int = 24_000) -> list[list[TickBatch]]:
    """Rounds of one batch of random size per partition (some empty), in stream order."""
    per: dict[int, list[Tick]] = {p: [] for p in range(PARTITIONS)}
    for t in synthetic_ticks("binance", 24, 40.0, seed=seed, count=count):
        per[partition_of(t.exchange, t.symbol, PARTITIONS)].append(t)
    rng = random.Random(seed)
    cuts = {
        p: sorted({0, len(ticks), *rng.sample(range(len(ticks)), 60)}) for p, ticks in per.items()
    }
    spans = {p: list(pairwise(c)) for p, c in cuts.items()}
    rounds = max(len(s) for s in spans.values())
    return [
        [
            TickBatch.from_ticks(per[p][slice(*spans[p][r])] if r < len(spans[p]) else [])
            for p in range(PARTITIONS)
        ]
        for r in range(rounds)
    ]


def shown(out: Output) -> tuple[list[Any], list[Any], list[Any]]:
    return (out.bars, [e.to_dict() for e in out.events], out.outcomes)


def test_engines_stepped_together_give_what_each_gives_alone() -> None:
    alone = [PartitionEngine(CONFIG, PATTERNS) for _ in range(PARTITIONS)]
    space = row_space(CONFIG, PATTERNS)
    together = [PartitionEngine(CONFIG, space=space) for _ in range(PARTITIONS)]
    produced = 0
    for r, batches in enumerate(partition_batches()):
        ids = [f"{r}-{p}" for p in range(PARTITIONS)]
        want = [e.apply(b, i) for e, b, i in zip(alone, batches, ids, strict=True)]
        got = step_engines(list(zip(together, batches, ids, strict=True)))
        assert [shown(o) for o in got] == [shown(o) for o in want]
        produced += sum(len(o.bar_parts) for o in got)
        if r == 20:  # partition 1 leaves the process and comes back from its checkpoint;
            blob = checkpoint.dumps(together[1])  # partition 2 moves to a space of its own
            together[1].release()
            together[1] = checkpoint.loads(blob, CONFIG, space=space)
            moved = checkpoint.dumps(together[2])
            together[2].release()
            together[2] = checkpoint.loads(moved, CONFIG, PATTERNS)
            together[2].release()  # back again: its slots were taken by no one meanwhile
            together[2] = checkpoint.loads(moved, CONFIG, space=space)
    assert produced > 100
    for a, b in zip(alone, together, strict=True):
        assert checkpoint.dumps(a) == checkpoint.dumps(b)
        assert shown(a.close_all()) == shown(b.close_all())


def test_a_space_reuses_the_slots_an_engine_hands_back_empty() -> None:
    space = row_space(CONFIG, PATTERNS)
    first = PartitionEngine(CONFIG, space=space)
    for batches in partition_batches(count=4_000)[:30]:
        first.apply(batches[0])
    used = space.used
    slots = set(first.slots.tolist())
    first.release()
    fresh = PartitionEngine(CONFIG, space=space)
    alone = PartitionEngine(CONFIG, PATTERNS)
    for batches in partition_batches(seed=5, count=4_000):
        assert shown(fresh.apply(batches[1])) == shown(alone.apply(batches[1]))
    assert set(fresh.slots.tolist()) & slots, "the slots handed back are used again"
    assert space.used <= max(used, len(fresh.slots))


def test_engines_of_other_spaces_or_twice_in_a_step_are_refused() -> None:
    a, b = PartitionEngine(CONFIG, PATTERNS), PartitionEngine(CONFIG, PATTERNS)
    empty = TickBatch.from_ticks([])
    with pytest.raises(ValueError, match="share one row space"):
        step_engines([(a, empty, None), (b, empty, None)])
    with pytest.raises(ValueError, match="at most once"):
        step_engines([(a, empty, None), (a, empty, None)])


async def test_the_steps_asked_for_in_one_turn_run_as_one() -> None:
    metrics = DetectorMetrics(CollectorRegistry())
    gatherer = StepGatherer(metrics)
    space = row_space(CONFIG, PATTERNS)
    engines = [PartitionEngine(CONFIG, space=space) for _ in range(PARTITIONS)]
    alone = [PartitionEngine(CONFIG, PATTERNS) for _ in range(PARTITIONS)]
    rounds = partition_batches(count=6_000)[:10]
    for batches in rounds:
        got = await asyncio.gather(
            *(gatherer.apply(e, b, None) for e, b in zip(engines, batches, strict=True))
        )
        want = [e.apply(b) for e, b in zip(alone, batches, strict=True)]
        assert [shown(o) for o in got] == [shown(o) for o in want]
    assert metrics.joint_steps._value.get() == len(rounds)  # one run per turn
    # A step that fails fails every runner of its run, as its own step would have.
    broken = PartitionEngine(EngineConfig(timeframes=CONFIG.timeframes), PATTERNS)
    results = await asyncio.gather(
        gatherer.apply(engines[0], rounds[0][0], None),
        gatherer.apply(broken, rounds[0][1], None),
        return_exceptions=True,
    )
    assert all(isinstance(r, ValueError) for r in results)
