"""Outcome tracking's share of detector CPU at the e2e bench load (issue 12, figure: <= 5 %).

The e2e bench load is 1,000 symbols trading 50,000 ticks/s of event time over 16 partitions
with timeframes 1s,5s,1m (``tests/bench/e2e_support.py``); one partition is 62 symbols at
3,125 ticks/s. The same pre-encoded ``ticks:{p}`` entries of one such partition go through the
detector's CPU work — decode, :class:`~detectors.partition.PartitionEngine` (bars, indicators,
61 patterns and, when on, the pending outcome queues) and the encoding of every output entry
(bars, pattern events and, when on, the ``outcomes`` entries) — once with outcome tracking
(``OUTCOME_HORIZONS`` default 1,5,10,20) and once without (``off``), alternately, several
times. Redis round trips are left out, which makes the share larger than in a live detector,
not smaller. ``BENCH_QUICK=1`` shortens the run.

The figure is the share measured inside the run with outcome tracking: the process-CPU time
spent in the outcome code (the tracker's ``advance`` and ``track``, emitting the columns,
encoding the ``outcomes`` entries) over the whole run's. On a shared machine that ratio is
stable where the difference of two whole runs is not (each run's time moves by more than
the few per cent at stake); the same-run baseline, the whole run without outcome tracking,
is printed beside it (median over the repeats, as ticks/s, each side).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from common.columns import encode_outcome_parts
from common.contracts import TickBatch
from detectors.outcomes import OutcomeConfig
from detectors.partition import EngineConfig, PartitionEngine
from detectors.timeframes import parse_timeframes
from ingest.offline.ticks import synthetic_ticks

QUICK = os.environ.get("BENCH_QUICK") == "1"
SYMBOLS = 62  # one of 16 partitions of 1,000 symbols
RATE = 50_000 / 16  # ticks/s of event time in that partition
TIMEFRAMES = "1s,5s,1m"
BATCH = 200  # ticks per stream entry


def _entries(count: int) -> list[dict[bytes, bytes]]:
    ticks = list(synthetic_ticks("binance", SYMBOLS, RATE, seed=7, count=count))
    return [TickBatch.from_ticks(ticks[i : i + BATCH]).encode() for i in range(0, count, BATCH)]


class Clock:
    """Process-CPU seconds spent inside the wrapped calls."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - start

        return timed


def _run(entries: list[dict[bytes, bytes]], config: EngineConfig) -> tuple[float, float, int, int]:
    """Process-CPU seconds of the detector's work over ``entries``, of which in the outcome
    code; pattern events and bar outcomes."""
    engine = PartitionEngine(config)
    clock = Clock()
    tracker = engine.space.outcomes
    tracker.advance = clock.wrap(tracker.advance)  # type: ignore[method-assign]
    tracker.track = clock.wrap(tracker.track)  # type: ignore[method-assign]
    engine._emit_outcomes = clock.wrap(engine._emit_outcomes)  # type: ignore[method-assign]
    encode = clock.wrap(encode_outcome_parts)
    events = outcomes = 0
    start = time.process_time()
    for fields in entries:
        out = engine.apply(TickBatch.decode(fields))
        for event in out.events:
            event.encode()
        for bar in out.bars:
            bar.encode()
        if out.outcome_parts:
            encode(out.outcome_parts)
        events += len(out.events)
        outcomes += sum(len(p) for p in out.outcome_parts)
    return time.process_time() - start, clock.seconds, events, outcomes


def bench_outcome_share() -> None:
    count = 150_000 if QUICK else 600_000
    repeats = 4 if QUICK else 6
    entries = _entries(count)
    base = EngineConfig(timeframes=parse_timeframes(TIMEFRAMES), allowed_lateness_ms=0)
    on = EngineConfig(timeframes=base.timeframes, allowed_lateness_ms=0, outcomes=OutcomeConfig())
    off = EngineConfig(
        timeframes=base.timeframes, allowed_lateness_ms=0, outcomes=OutcomeConfig(())
    )
    with_s, without_s, shares = [], [], []
    events = outcomes = 0
    for _ in range(repeats):
        total, inside, events, outcomes = _run(entries, on)
        with_s.append(total)
        shares.append(inside / total)
        without_s.append(_run(entries, off)[0])
    w, wo = statistics.median(with_s), statistics.median(without_s)
    print(
        f"outcome tracking at the e2e load ({SYMBOLS} symbols = one of 16 partitions of 1,000 "
        f"symbols at 50,000 ticks/s, {TIMEFRAMES}, 61 patterns, horizons 1,5,10,20; decode + "
        f"engine + output encoding, {count:,} ticks, {events:,} pattern events, "
        f"{outcomes:,} bar outcomes): **{statistics.median(shares) * 100:.2f} % of detector "
        f"CPU** (repeats {min(shares) * 100:.2f}-{max(shares) * 100:.2f} %), "
        f"{count / w:,.0f} ticks/s | baseline same run without outcome tracking: "
        f"{count / wo:,.0f} ticks/s"
    )


def main() -> None:
    bench_outcome_share()


if __name__ == "__main__":
    main()
