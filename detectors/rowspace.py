"""The per-row state of partition engines, in one set of arrays (pure).

A row is one series x timeframe. A :class:`detectors.partition.PartitionEngine` keeps its
bars' aggregation, its series' names and its recent pattern events itself, and the state of
its rows — OHLC windows, indicators, TA-Lib's running pattern sums, pending outcomes — in a
``RowSpace``: its own, or one that every engine of a detector process shares, so that one step
updates, evaluates and tracks the bars closing at a boundary in all of them at once
(:func:`detectors.partition.step_engines`: the numpy work of a step costs about as much for 60
bars as for 600).

An engine holds a slot per series; a slot is one row per timeframe, consecutive and shortest
first (``htf_trend`` reads the row after a bar's own). Slots are handed out as an engine meets
new series and handed back, reset to empty, when it leaves the process (:meth:`release`).
Which slots an engine has changes nothing in its results: every row is computed on its own.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors.indicators import IndicatorBank, IndicatorConfig
from detectors.outcomes import OutcomeConfig, OutcomeTracker
from detectors.patterns import PatternDetector, PatternState

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


class RowSpace:
    """Row state of any number of engines of one configuration (see the module docstring)."""

    def __init__(
        self,
        n_tf: int,
        indicators: IndicatorConfig,
        outcomes: OutcomeConfig,
        patterns: PatternDetector,
    ) -> None:
        self.n_tf = n_tf
        self.patterns = patterns
        self.ind = IndicatorBank(indicators)
        self.pstate: PatternState = patterns.new_state(0)
        self.outcomes = OutcomeTracker(outcomes)
        self.window: F64 = np.zeros((4, 0, patterns.window), np.float64)
        self.used = 0  # slots handed out so far, the free ones included
        self.free: list[int] = []  # slots handed back, lowest last

    @property
    def rows(self) -> int:
        return int(self.window.shape[1])

    def rows_of(self, slots: I64) -> I64:
        """The rows of ``slots``, each slot's timeframes in order."""
        rows: I64 = (slots[:, None] * self.n_tf + np.arange(self.n_tf)).ravel()
        return rows

    def allocate(self, n: int) -> I64:
        """``n`` empty slots (handed-back ones first, lowest first)."""
        reused = [self.free.pop() for _ in range(min(n, len(self.free)))]
        fresh = range(self.used, self.used + n - len(reused))
        self.used += len(fresh)
        self._grow(self.used * self.n_tf)
        return np.array([*reused, *fresh], np.int64)

    def release(self, slots: I64) -> None:
        """Take ``slots`` back, their rows reset to empty."""
        if not len(slots):
            return
        rows = self.rows_of(slots)
        self.window[:, rows] = 0.0
        self.ind.reset(rows)
        self.pstate.reset(rows)
        self.outcomes.reset(rows)
        self.free = sorted({*self.free, *slots.tolist()}, reverse=True)

    def _grow(self, rows: int) -> None:
        have = self.rows
        if rows <= have:
            return
        cap = max(rows, 2 * have, 16 * self.n_tf)
        self.ind.grow(cap)
        self.pstate.grow(cap)
        self.outcomes.grow(cap)
        bigger = np.zeros((4, cap, self.patterns.window), np.float64)
        bigger[:, :have] = self.window
        self.window = bigger
