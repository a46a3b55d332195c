"""CDLHIKKAKE and CDLHIKKAKEMOD: the two TA-Lib functions with memory across bars.

Both remember the index and direction of the last hikkake (``patternIdx``,
``patternResult``) and emit a +-200 confirmation when, within 3 bars, the close breaks
the high/low of the pattern's second candle. TA-Lib starts that memory 3 bars before
its first output (``startIdx - 3``); the memory here follows the same transitions from
the same bar, using absolute bar indices like the C code. It is traced like every other
row (``Candles.memory`` / ``remember``): the detector feeds each series' state rows in
and writes the remembered rows back.
"""

from __future__ import annotations

import numpy as np

from detectors.patterns.candles import I32, Bool, Candles
from detectors.patterns.define import Registry, period

REGISTRY = Registry()
pattern = REGISTRY.pattern
HIGH, LOW, CLOSE = 1, 2, 3


def _step(x: Candles, variant: int, found: Bool, bullish: Bool, first: int) -> I32:
    """Apply one bar of TA-Lib's hikkake loop to memory ``variant``; return the output."""
    idx, result = x.memory(variant)
    j = x.j
    age = j - idx
    # inHigh/inLow[patternIdx - 1]: bar i - (age + 1); only read when age <= 3.
    second_high = x.back(HIGH, age + 1)
    second_low = x.back(LOW, age + 1)
    confirm = (
        ~found
        & (j <= idx + 3)
        & (((result > 0) & (x.c(0) > second_high)) | ((result < 0) & (x.c(0) < second_low)))
    )
    new_result = np.where(bullish, 100, -100)
    out = np.where(found, new_result, 0)
    out = np.where(confirm, result + 100 * np.where(result > 0, 1, -1), out)
    live = j >= first  # TA-Lib runs the loop from startIdx - 3
    x.remember(
        variant,
        np.where(live & found, j, np.where(live & confirm, 0, idx)),
        np.where(live & found, new_result, result),
    )
    return out


@pattern("CDLHIKKAKE", 5)
def hikkake(x: Candles) -> I32:
    h, lo = x.h, x.l
    inside = (h(1) < h(2)) & (lo(1) > lo(2))
    bull = (h(0) < h(1)) & (lo(0) < lo(1))
    bear = (h(0) > h(1)) & (lo(0) > lo(1))
    return _step(x, 0, inside & (bull | bear), h(0) < h(1), x.start - 3)


@pattern("CDLHIKKAKEMOD", max(1, period("Near")) + 5)
def hikkake_modified(x: Candles) -> I32:
    h, lo = x.h, x.l
    near = x.avg("Near", 2, start=x.start - 3)
    inside = (h(2) < h(3)) & (lo(2) > lo(3)) & (h(1) < h(2)) & (lo(1) > lo(2))
    bull = (h(0) < h(1)) & (lo(0) < lo(1)) & (x.c(2) <= lo(2) + near)
    bear = (h(0) > h(1)) & (lo(0) > lo(1)) & (x.c(2) >= h(2) - near)
    return _step(x, 1, inside & (bull | bear), h(0) < h(1), x.start - 3)
