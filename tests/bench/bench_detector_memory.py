"""Detector memory over a long run: does one detector's state stop growing, and when?

One detector's share of the end-to-end bench's load, in process and faster than real time:
1,000 symbols over 16 partitions, the partitions ``assign`` gives the first of two
detectors, timeframes 1s,5s,1m, 10 trades/s per symbol in event time (one stream entry per
partition per event second). Each step's bars and pattern events are encoded as the worker
encodes them for XADD, then dropped. Every event minute it records:

* **state**: the bytes reachable from the partition engines (``sys.getsizeof`` over the
  object graph, numpy buffers included; the shared ``PatternDetector`` left out), which
  share one row space and are stepped as one each second, as a detector's are;
* **recent**: the pattern-event history entries the engines hold (``PartitionEngine.recent``);
* **RSS** of this process (``/proc/self/statm``; includes the generator and the allocator's
  free lists).

What grows, and its bound: every per-row array has a fixed size from the row's first bar
on; only ``recent`` grows, to at most ``cooldown_bars + 1`` entries per row (series x
timeframe). A row's entries reach their final size once its bars in the horizon were all
evaluated with every pattern ready and every indicator warmed up, i.e. after
``PLATEAU_BARS`` bars of its timeframe (26 with the defaults), so the longest timeframe sets
when the state stops growing: 26 min for 1m, 26 days for 1d. The baseline printed beside the
measured state is that bound: the engines' arrays and open bars plus rows x
(cooldown_bars + 1) x the mean size of a ``recent`` entry (rows whose last bars did not all
fire hold fewer). Slopes are least-squares
fits over the samples past the predicted plateau, per minute of event time.

``BENCH_QUICK=1``: 35 event minutes instead of 60.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from common.contracts import TICK_DTYPE, TickBatch
from common.names import partition_of
from detectors.ownership import assign
from detectors.partition import EngineConfig, PartitionEngine, row_space, step_engines
from detectors.patterns import PatternDetector
from detectors.timeframes import parse_timeframes

QUICK = os.environ.get("BENCH_QUICK") == "1"
EXCHANGE = "binance"
SYMBOLS = 1_000
PARTITIONS = 16
TIMEFRAMES = "1s,5s,1m"
TRADES_PER_SYMBOL_S = 10  # 10,000 trades/s over 1,000 symbols, as the e2e bench's soak
MINUTES = 35 if QUICK else 60
START_MS = 1_700_000_040_000  # a whole minute
I64 = npt.NDArray[np.int64]


def plateau_bars(config: EngineConfig, patterns: PatternDetector) -> int:
    """Bars of a timeframe after which its rows' state no longer grows (see the docstring)."""
    ind = config.indicators
    warm = max(
        int(patterns.lookbacks.max()) + 1,  # every pattern emits a value
        ind.ema_period + 1,  # ema_slope and trend need the EMA of the previous bar
        ind.rsi_period + 1,
        ind.atr_period + 1,
        ind.volume_period,
    )
    return warm + config.cooldown_bars


def state_bytes(roots: Iterable[object], skip: Iterable[object] = ()) -> int:
    """Bytes of every object reachable from ``roots`` (each counted once), minus ``skip``'s
    subgraphs; modules, classes and functions are not followed."""
    seen = {id(o) for o in skip}
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | type(sys) | type(plateau_bars)):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, np.ndarray):
            if obj.base is not None:
                stack.append(obj.base)
            continue
        stack.extend(gc.get_referents(obj))
        slots = getattr(type(obj), "__slots__", ())
        stack.extend(getattr(obj, s) for s in slots if hasattr(obj, s))
    return total


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Feed:
    """Seeded random-walk trades of the detector's symbols, one batch per partition a second."""

    def __init__(self, partitions: list[int], seed: int = 7) -> None:
        names = [f"S{i:04d}-USDT" for i in range(SYMBOLS)]
        part = np.array([partition_of(EXCHANGE, s, PARTITIONS) for s in names], np.int64)
        self.rng = np.random.default_rng(seed)
        self.ours = np.flatnonzero(np.isin(part, partitions))
        self.part = part
        self.keys = [(EXCHANGE, s, s.replace("-", "")) for s in names]
        self.level = 100.0 * np.exp(self.rng.normal(0.0, 1.0, SYMBOLS))
        self.next_id = np.ones(SYMBOLS, np.int64)

    def second(self, t_ms: int) -> list[tuple[int, TickBatch]]:
        rng = self.rng
        n = int(rng.poisson(TRADES_PER_SYMBOL_S * len(self.ours)))
        idx = self.ours[rng.integers(0, len(self.ours), n)]
        ts = (t_ms + np.sort(rng.integers(0, 1000, n))) * 1_000_000
        price = np.round(self.level[idx] * np.exp(rng.normal(0.0, 0.002, n)), 6)
        self.level *= np.exp(rng.normal(0.0, 0.001, SYMBOLS))
        qty = np.round(rng.exponential(0.5, n) + 0.001, 6)
        ids = np.empty(n, np.int64)
        order = np.argsort(idx, kind="stable")
        s = idx[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        ids[order] = self.next_id[s] + np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        self.next_id += np.bincount(idx, minlength=SYMBOLS)
        out = []
        for p in np.unique(self.part[idx]).tolist():
            m = self.part[idx] == p
            uniq, inv = np.unique(idx[m], return_inverse=True)
            rec = np.zeros(int(m.sum()), TICK_DTYPE)
            rec["sym"], rec["ts"], rec["recv"] = inv, ts[m], ts[m]
            rec["price"], rec["qty"] = price[m], qty[m]
            rec["side"] = rng.random(len(rec)) < 0.5
            symbols = [self.keys[i] for i in uniq.tolist()]
            out.append((p, TickBatch(symbols, rec, list(map(str, ids[m].tolist())))))
        return out


def _slope_per_min(minutes: list[float], values: list[float]) -> float:
    if len(minutes) < 2:
        return float("nan")
    return float(np.polyfit(minutes, values, 1)[0])


def _entry_mean(engines: list[PartitionEngine]) -> tuple[int, float]:
    entries = [
        e
        for eng in engines
        for times, docs in eng.recent.values()
        for e in zip(times, docs, strict=True)
    ]
    if not entries:
        return 0, 0.0
    sample = entries[:: max(1, len(entries) // 2000)]
    return len(entries), sum(state_bytes([e]) for e in sample) / len(sample)


def run() -> None:
    config = EngineConfig(timeframes=parse_timeframes(TIMEFRAMES), allowed_lateness_ms=0)
    patterns = PatternDetector(config.patterns)
    mine = assign(["detectors1", "detectors2"], PARTITIONS)["detectors1"]
    space = row_space(config, patterns)  # as the detector holds them: one row space, and
    engines = {p: PartitionEngine(config, space=space) for p in mine}  # one step a second
    feed = Feed(mine)
    longest = config.timeframes[-1]
    plateau_min = plateau_bars(config, patterns) * longest.ms / 60_000
    skip = [patterns, config]
    print(
        f"one detector's share: {len(feed.ours)} of {SYMBOLS} symbols, partitions {mine}, "
        f"{TIMEFRAMES}, {TRADES_PER_SYMBOL_S} trades/s per symbol, {MINUTES} min of event time; "
        f"predicted plateau: {plateau_bars(config, patterns)} bars of {longest.name} "
        f"= {plateau_min:g} min"
    )
    print("| event min | wall s | state MiB | recent entries | RSS MiB |")
    print("|---|---|---|---|---|")
    samples: list[tuple[float, int, int, int]] = []
    wall0 = time.perf_counter()
    gc.collect()
    rss0 = rss_bytes()
    encoded = 0
    for sec in range(MINUTES * 60):
        t_ms = START_MS + sec * 1000
        second = feed.second(t_ms)
        steps = [(engines[p], batch, f"{t_ms}-{p}") for p, batch in second]
        for out in step_engines(steps):
            # What the worker does with a step's output before it drops it.
            fields: list[Any] = out.event_columns().encode()
            fields += out.bar_columns().encode()
            encoded += len(fields)
        if (sec + 1) % 60 == 0:
            gc.collect()
            minute = (sec + 1) / 60
            state = state_bytes(engines.values(), skip)
            count = sum(len(lst) for e in engines.values() for lst in e.recent.values())
            rss = rss_bytes()
            samples.append((minute, state, count, rss))
            if minute % 5 == 0 or minute == MINUTES:
                wall = time.perf_counter() - wall0
                print(
                    f"| {minute:g} | {wall:.0f} | {state / 2**20:.2f} | {count} | "
                    f"{rss / 2**20:.1f} |",
                    flush=True,
                )
    _summary(list(engines.values()), samples, plateau_min, skip, rss0)


def _summary(
    engines: list[PartitionEngine],
    samples: list[tuple[float, int, int, int]],
    plateau_min: float,
    skip: list[object],
    rss0: int,
) -> None:
    config = engines[0].config
    rows = sum(len(e.agg.series) * e.n_tf for e in engines)
    entries, entry_bytes = _entry_mean(engines)
    recent_bytes = state_bytes([e.recent for e in engines])
    fixed = state_bytes(engines, [*skip, *(e.recent for e in engines)])
    bound = fixed + rows * (config.cooldown_bars + 1) * entry_bytes
    after = [s for s in samples if s[0] >= plateau_min + 4]
    minutes = [s[0] for s in after]
    state_slope = _slope_per_min(minutes, [s[1] / 2**20 for s in after])
    rss_slope = _slope_per_min(minutes, [s[3] / 2**20 for s in after])
    count_slope = _slope_per_min(minutes, [float(s[2]) for s in after])
    final = samples[-1]
    print(
        f"state at the end: {final[1] / 2**20:.2f} MiB = arrays and open bars "
        f"{fixed / 2**20:.2f} + recent {recent_bytes / 2**20:.2f} ({entries} entries, "
        f"mean {entry_bytes:.0f} B, {rows} rows: {entries / rows:.2f} a row, "
        f"at most {config.cooldown_bars + 1}) | baseline: the bound, arrays + rows x "
        f"{config.cooldown_bars + 1} entries: {bound / 2**20:.2f} MiB (measured/bound "
        f"{final[1] / bound:.2f})"
    )
    print(
        f"slope past the plateau (+4 min, {len(after)} samples): state {state_slope:+.3f} "
        f"MiB/min, recent {count_slope:+.1f} entries/min, RSS {rss_slope:+.3f} MiB/min "
        f"(RSS {rss0 / 2**20:.1f} MiB before the first tick)"
    )


def main() -> None:
    run()


if __name__ == "__main__":
    main()
