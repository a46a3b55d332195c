"""Candle features and TA-Lib's candle averages, for the newly closed bar of many series.

TA-Lib's ``CDL*`` functions compare a candle's body, shadows and gaps with *candle
averages*: ``factor * (total / avgPeriod) / (2.0 if range type is Shadows else 1.0)``,
where ``total`` is a running sum of a per-bar range (real body, high-low or upper+lower
shadow) that each function keeps itself:

* it is started at ``lookback - avgPeriod`` (the function's own lookback, i.e. its first
  output index) by a plain ascending sum from 0.0, and
* after each output bar ``i`` it is updated as ``total += range(i-k) - range(i-k-avgPeriod)``.

The value of that double at bar ``i`` therefore depends on the whole history, not only on
the last ``avgPeriod`` bars: a fresh sum can differ in the last bits and flip a comparison.
So the engine keeps exactly those running sums per series (``RunningTotal``), started at
the same index and updated in the same order with the same double arithmetic, and this
module reproduces the macro arithmetic in TA-Lib's order (``ta_utility.h``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from detectors.patterns.trace import Graph

F64 = NDArray[np.float64]
I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
Bool = NDArray[np.bool_]

# Range types, as in ta_defs.h (TA_RangeType).
REALBODY: Final = 0
HIGHLOW: Final = 1
SHADOWS: Final = 2


@dataclass(frozen=True)
class CandleSetting:
    """One entry of TA-Lib's candle settings table."""

    range_type: int
    avg_period: int
    factor: float


#: TA_CandleDefaultSettings (ta_global.c); the installed wheel runs with these (tested).
SETTINGS: Final[dict[str, CandleSetting]] = {
    "BodyLong": CandleSetting(REALBODY, 10, 1.0),
    "BodyVeryLong": CandleSetting(REALBODY, 10, 3.0),
    "BodyShort": CandleSetting(REALBODY, 10, 1.0),
    "BodyDoji": CandleSetting(HIGHLOW, 10, 0.1),
    "ShadowLong": CandleSetting(REALBODY, 0, 1.0),
    "ShadowVeryLong": CandleSetting(REALBODY, 0, 2.0),
    "ShadowShort": CandleSetting(SHADOWS, 10, 1.0),
    "ShadowVeryShort": CandleSetting(HIGHLOW, 10, 0.1),
    "Near": CandleSetting(HIGHLOW, 5, 0.2),
    "Far": CandleSetting(HIGHLOW, 5, 0.6),
    "Equal": CandleSetting(HIGHLOW, 5, 0.05),
}

#: How many of the newest bars the pattern kernels look at (i, i-1, ..., i-4).
DEPTH: Final = 5


@dataclass(frozen=True, order=True)
class RunningTotal:
    """Identity of one TA-Lib running sum: sums of ``range_type`` at bar ``i - shift``.

    Two functions' sums are bit-identical exactly when all four fields agree, so the
    engine keeps one per distinct key (``start`` is the function's lookback).
    """

    range_type: int
    period: int
    shift: int
    start: int


#: (setting name, shift k, first bar index using the total) of one candle average.
AverageKey = tuple[str, int, int]


class Candles:
    """Features of the newest ``DEPTH`` bars of N series, handed to each pattern kernel.

    Index ``k`` means bar ``i - k`` (0 = the newly closed bar). ``avg(setting, k)`` is
    ``TA_CANDLEAVERAGE(setting, total, i - k)`` of the current pattern, evaluated in
    TA-Lib's operation order.

    The rows are traced (``trace.Sym``, standing in for ``(N,)`` arrays): the detector runs
    every kernel once on this object, at construction, and compiles what they computed
    into batched numpy steps (``program.py``). Running the kernels also records which
    running totals they average (``recorded``) and how the stateful ones update their
    memory (``remembered``); ``advanced`` gives each total's update. ``k`` may reach back
    over the whole window (the totals' trailing bars); the kernels use ``k < DEPTH``.
    """

    def __init__(self, graph: Graph) -> None:
        self._graph = graph
        #: lookback of the pattern being traced (set by the detector before each kernel)
        self.start = 0
        #: every candle average with a running total a kernel asked for
        self.recorded: dict[AverageKey, RunningTotal] = {}
        #: Hikkake memory variant -> its (pattern index, pattern result) after this bar
        self.remembered: dict[int, tuple[I64, I64]] = {}

    def _leaf(self, *key: object) -> F64:
        return self._graph.leaf(key)  # type: ignore[return-value]  # a Sym stands for a row

    def o(self, k: int) -> F64:
        return self._leaf("price", 0, k)

    def h(self, k: int) -> F64:
        return self._leaf("price", 1, k)

    def l(self, k: int) -> F64:  # noqa: E743 - mirrors TA-Lib's inLow
        return self._leaf("price", 2, k)

    def c(self, k: int) -> F64:
        return self._leaf("price", 3, k)

    def body(self, k: int) -> F64:
        """TA_REALBODY: ``fabs(close - open)``."""
        body: F64 = np.abs(self.c(k) - self.o(k))
        return body

    def hl(self, k: int) -> F64:
        """TA_HIGHLOWRANGE: ``high - low``."""
        return self.h(k) - self.l(k)

    def range_of(self, range_type: int, k: int) -> F64:
        """TA_CANDLERANGE: real body, high-low, or upper + lower shadow (``(high -
        max(open, close)) + (min(open, close) - low)``, the macros' order)."""
        if range_type == REALBODY:
            return self.body(k)
        if range_type == HIGHLOW:
            return self.hl(k)
        return self.upper(k) + self.lower(k)

    def top(self, k: int) -> F64:
        """max(open, close)."""
        top: F64 = np.maximum(self.o(k), self.c(k))
        return top

    def bottom(self, k: int) -> F64:
        """min(open, close)."""
        bottom: F64 = np.minimum(self.o(k), self.c(k))
        return bottom

    def upper(self, k: int) -> F64:
        """TA_UPPERSHADOW: ``high - (close >= open ? close : open)``."""
        return self.h(k) - self.top(k)

    def lower(self, k: int) -> F64:
        """TA_LOWERSHADOW: ``(close >= open ? open : close) - low``."""
        return self.bottom(k) - self.l(k)

    def white(self, k: int) -> Bool:
        """TA_CANDLECOLOR == 1 (close >= open)."""
        white: Bool = self.c(k) >= self.o(k)
        return white

    def black(self, k: int) -> Bool:
        """TA_CANDLECOLOR == -1 (close < open)."""
        return ~self.white(k)

    def color(self, k: int) -> I32:
        """TA_CANDLECOLOR as +1 / -1."""
        color: I32 = np.where(self.white(k), 1, -1)
        return color

    def body_gap_up(self, k2: int, k1: int) -> Bool:
        """TA_REALBODYGAPUP(i-k2, i-k1): min(o,c)[k2] > max(o,c)[k1]."""
        up: Bool = self.bottom(k2) > self.top(k1)
        return up

    def body_gap_down(self, k2: int, k1: int) -> Bool:
        """TA_REALBODYGAPDOWN(i-k2, i-k1): max(o,c)[k2] < min(o,c)[k1]."""
        down: Bool = self.top(k2) < self.bottom(k1)
        return down

    def gap_up(self, k2: int, k1: int) -> Bool:
        """TA_CANDLEGAPUP(i-k2, i-k1): low[k2] > high[k1]."""
        up: Bool = self.l(k2) > self.h(k1)
        return up

    def gap_down(self, k2: int, k1: int) -> Bool:
        """TA_CANDLEGAPDOWN(i-k2, i-k1): high[k2] < low[k1]."""
        down: Bool = self.h(k2) < self.l(k1)
        return down

    def avg(self, setting: str, k: int, start: int | None = None) -> F64:
        """``TA_CANDLEAVERAGE(setting, <its running total at shift k>, i - k)``.

        ``start``: bar index where the function first uses that total (default: its
        lookback; CDLHIKKAKEMOD starts its sum 3 bars earlier).
        """
        s = SETTINGS[setting]
        if s.avg_period == 0:
            return average(s, self.range_of(s.range_type, k))
        key = (setting, k, self.start if start is None else start)
        total = self.recorded[key] = RunningTotal(s.range_type, s.avg_period, k, key[2])
        return average(s, self._leaf("total", total) / float(s.avg_period))

    def advanced(self, total: RunningTotal) -> F64:
        """The running sum ``total`` after this bar: TA-Lib's init step (a plain sum from
        0.0, bars ``start - period`` .. ``start - 1``) or its update ``total +=
        range(i - shift) - range(i - shift - period)`` from bar ``start`` on."""
        j = self.j
        before = self._leaf("total", total)
        now = self.range_of(total.range_type, total.shift)
        trail = self.range_of(total.range_type, total.shift + total.period)
        init = (j >= total.start - total.period) & (j < total.start)
        run = j >= total.start
        after: F64 = np.where(run, before + (now - trail), np.where(init, before + now, before))
        return after

    # -- what the stateful (Hikkake) kernels need ---------------------------------------
    @property
    def j(self) -> I64:
        """Index of the newly closed bar in its series (exact in float64)."""
        return self._leaf("index")  # type: ignore[return-value]

    def back(self, field: int, k: I64) -> F64:
        """Per-row bar ``i - k[r]`` of ``field`` (0 open, 1 high, 2 low, 3 close), ``k``
        clipped to ``[0, DEPTH - 1]``: a choice among the ``DEPTH`` newest bars, as a
        balanced tree of selections (a shorter chain of program steps than a ladder)."""

        def pick(lo: int, hi: int) -> F64:  # bars lo..hi, k known to be in that range
            if lo == hi:
                return self._leaf("price", field, lo)
            mid = (lo + hi) // 2
            chosen: F64 = np.where(k <= mid, pick(lo, mid), pick(mid + 1, hi))
            return chosen

        return pick(0, DEPTH - 1)

    def memory(self, variant: int) -> tuple[I64, I64]:
        """(pattern index, pattern result) Hikkake memory ``variant`` before this bar."""
        idx, result = self._leaf("memory", variant, 0), self._leaf("memory", variant, 1)
        return idx, result  # type: ignore[return-value]

    def remember(self, variant: int, idx: I64, result: I64) -> None:
        """The memory ``variant`` after this bar (the detector writes it to the state)."""
        self.remembered[variant] = (idx, result)


def average(setting: CandleSetting, mean: F64) -> F64:
    """TA_CANDLEAVERAGE from ``mean`` (``SUM / avgPeriod``, or the bar's own range when
    avgPeriod is 0): ``factor * mean / (2.0 if Shadows else 1.0)``, in this order."""
    value: F64 = setting.factor * mean
    if setting.range_type == SHADOWS:
        value = value / 2.0
    return value
