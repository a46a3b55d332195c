"""Exact, incremental, vectorized TA-Lib candlestick pattern detection.

Usage (the detector worker)::

    detector = PatternDetector(names=None)        # all 61 CDL* functions, or a subset
    state = detector.new_state(n_series)          # one row ("slot") per (symbol, timeframe)
    values = detector.evaluate(o, h, l, c, bars_seen, state, slots)   # (N, P) int32
    ready = detector.ready(bars_seen)             # (N, P) bool: TA-Lib lookback met

``o, h, l, c`` are ``(N, W)`` float64 windows (``W >= detector.window``, newest column
last) of the N series that closed a bar now; every bar of a series must go through
``evaluate`` once, in order (the state holds TA-Lib's running sums). ``state.take(slots)``
/ ``state.put(slots, rows)`` move rows, ``state.to_bytes()`` / ``PatternState.from_bytes``
serialize them for checkpoints.
"""

from detectors.patterns.detector import PatternDetector, PatternState
from detectors.patterns.registry import PATTERN_NAMES

__all__ = ["PATTERN_NAMES", "PatternDetector", "PatternState"]
