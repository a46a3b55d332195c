"""Bar-close pattern detection: 1,000 symbols x 61 TA-Lib patterns in one ``evaluate``.

Baseline measured in the same run: calling ``talib.CDLxxx`` symbol by symbol on the same
windows (what a per-symbol detector would do at a bar close). ``BENCH_QUICK=1`` shortens it.

Second figure: one ``evaluate`` of a 63-series group, the e2e layout (1,000 symbols in 16
partitions, each evaluating the series that close on a boundary together), next to that
group's share of the 1,000-series call (63/1,000 of it: the cost if there were no fixed
cost per call) and a 1-series call (the fixed cost alone).
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import talib

from detectors.patterns import PatternDetector, PatternState
from tests.patterns_support import generated_bars

SYMBOLS = 1_000
GROUP = 63  # series per partition and boundary in the e2e layout (1,000 / 16)


def _engine_times(
    engine: PatternDetector, bars: tuple[np.ndarray, ...], repeats: int
) -> list[float]:
    state = engine.new_state(SYMBOLS)
    return _engine_times_for(engine, bars, state)[-repeats:]


def _engine_times_for(
    engine: PatternDetector, bars: tuple[np.ndarray, ...], state: PatternState
) -> list[float]:
    """Feed every bar of ``bars`` through the engine; the time of each evaluate."""
    w = engine.window
    length = bars[0].shape[1]
    n = bars[0].shape[0]
    times: list[float] = []
    for k in range(1, length + 1):  # warm the state up bar by bar, time the warmed-up calls
        lo_col = max(0, k - w)
        pad = w - (k - lo_col)
        window = [np.pad(a[:, lo_col:k], ((0, 0), (pad, 0)), constant_values=np.nan) for a in bars]
        seen = np.full(n, k, dtype=np.int64)
        start = time.perf_counter()
        engine.evaluate(window[0], window[1], window[2], window[3], seen, state=state)
        times.append(time.perf_counter() - start)
    return times


def _talib_time(engine: PatternDetector, bars: tuple[np.ndarray, ...]) -> float:
    o, h, lo, c = (np.ascontiguousarray(a[:, -engine.window :]) for a in bars)
    functions = [getattr(talib, n) for n in engine.names]
    start = time.perf_counter()
    for s in range(SYMBOLS):
        for fn in functions:
            fn(o[s], h[s], lo[s], c[s])
    return time.perf_counter() - start


def main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    repeats = 20 if quick else 100
    engine = PatternDetector()
    bars = generated_bars(np.random.default_rng(3), SYMBOLS, engine.window + repeats + 20)
    engine_ms = statistics.median(_engine_times(engine, bars, repeats)) * 1e3
    loops = [_talib_time(engine, bars) for _ in range(3 if quick else 7)]
    talib_ms = statistics.median(loops) * 1e3
    print(
        f"pattern detection, {SYMBOLS} symbols x {len(engine.names)} patterns, "
        f"window {engine.window} bars: engine {engine_ms:.2f} ms/bar-close (median of {repeats})"
    )
    print(f"  baseline talib per-symbol loop on the same windows: {talib_ms:.1f} ms")
    print(f"  speed-up: {talib_ms / engine_ms:.0f}x (aim >= 20x, <= 3 ms)")
    _group_figures(engine_ms, repeats)
    _state_figures(engine)


def _group_figures(engine_ms: float, repeats: int) -> None:
    """Per-call time of small groups, against the 1,000-series call's per-series cost."""
    times = {}
    for rows in (GROUP, 1):
        engine = PatternDetector()
        bars = generated_bars(np.random.default_rng(5), rows, engine.window + 5 * repeats)
        state = engine.new_state(rows)
        times[rows] = statistics.median(_engine_times_for(engine, bars, state)[-5 * repeats :])
    group_ms, one_ms = times[GROUP] * 1e3, times[1] * 1e3
    share_ms = engine_ms * GROUP / SYMBOLS
    print(
        f"pattern detection, one group of {GROUP} series (e2e partition size): "
        f"{group_ms:.3f} ms/evaluate (median of {5 * repeats}; aim <= 0.4 ms); "
        f"16 such groups {16 * group_ms:.2f} ms"
    )
    print(
        f"  baseline {GROUP}/{SYMBOLS} of the {SYMBOLS}-series call: {share_ms:.3f} ms "
        f"({group_ms / share_ms:.1f}x); 1 series: {one_ms:.3f} ms (the fixed cost per call)"
    )


def _state_figures(engine: PatternDetector) -> None:
    """Size and time of the pattern part of a checkpoint: 1,000 symbols x 6 timeframes."""
    rows = SYMBOLS * 6
    bars = generated_bars(np.random.default_rng(4), rows, engine.window + 5)
    state = engine.new_state(rows)
    _ = _engine_times_for(engine, bars, state)
    for compress in (False, True):
        start = time.perf_counter()
        blob = state.to_bytes(compress=compress)
        dump_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        PatternState.from_bytes(blob)
        load_ms = (time.perf_counter() - start) * 1e3
        kind = "zlib-1" if compress else "raw npz"
        print(
            f"pattern state, {rows} series ({kind}): {len(blob) / 1e6:.2f} MB, "
            f"to_bytes {dump_ms:.1f} ms, from_bytes {load_ms:.1f} ms"
        )


if __name__ == "__main__":
    main()
