"""Bar-close pattern detection: 1,000 symbols x 61 TA-Lib patterns in one ``evaluate``.

Baseline measured in the same run: calling ``talib.CDLxxx`` symbol by symbol on the same
windows (what a per-symbol detector would do at a bar close). ``BENCH_QUICK=1`` shortens it.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import talib

from detectors.patterns import PatternEngine
from tests.unit.patterns_support import generated_bars

SYMBOLS = 1_000


def _engine_times(engine: PatternEngine, bars: tuple[np.ndarray, ...], repeats: int) -> list[float]:
    w = engine.window
    length = bars[0].shape[1]
    state = engine.new_state(SYMBOLS)
    times: list[float] = []
    for k in range(1, length + 1):  # warm the state up bar by bar, time the warmed-up calls
        lo_col = max(0, k - w)
        pad = w - (k - lo_col)
        window = [np.pad(a[:, lo_col:k], ((0, 0), (pad, 0)), constant_values=np.nan) for a in bars]
        seen = np.full(SYMBOLS, k, dtype=np.int64)
        start = time.perf_counter()
        engine.evaluate(window[0], window[1], window[2], window[3], seen, state=state)
        if k > length - repeats:
            times.append(time.perf_counter() - start)
    return times


def _talib_time(engine: PatternEngine, bars: tuple[np.ndarray, ...]) -> float:
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
    engine = PatternEngine()
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


if __name__ == "__main__":
    main()
