"""Reusable work buffers for ``PatternDetector.evaluate``.

One evaluate for 1,000 series needs a few megabytes of intermediate arrays (bars and
ranges of the window, running sums, averages, outputs), each above glibc's mmap
threshold: allocating them fresh on every call costs page faults that took longer than
the arithmetic itself. The buffers here grow to the largest N seen and are reused, and
every step writes into them with ``out=`` (same operations, same order: exactness is
unaffected).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detectors.patterns.candles import F64, HIGHLOW, REALBODY, SHADOWS


class WorkBuffers:
    """Buffers shaped ``(..., capacity)``; ``view(n)`` hands out ``(..., n)`` views."""

    def __init__(self, window: int, n_totals: int, n_averages: int, n_patterns: int) -> None:
        self._shapes = {
            "bars": (4, window),
            "ranges": (3, window),
            "work": (window,),
            "rows_totals": (n_totals,),  # (N, T) gathered state rows, transposed below
            "totals": (n_totals,),
            "means": (n_totals,),
            "now": (n_totals,),
            "trail": (n_totals,),
            "averages": (n_averages,),
        }
        self._patterns = n_patterns
        self._capacity = 0
        self._buffers: dict[str, F64] = {}
        self._out: NDArray[np.int32] = np.empty((n_patterns, 0), dtype=np.int32)

    def _grow(self, n: int) -> None:
        cap = max(n, 2 * self._capacity, 64)
        self._buffers = {
            k: np.empty((cap, *s) if k == "rows_totals" else (*s, cap))
            for k, s in self._shapes.items()
        }
        self._out = np.empty((self._patterns, cap), dtype=np.int32)
        self._capacity = cap

    def view(self, name: str, n: int) -> F64:
        """Buffer ``name`` cut to ``n`` series (contents undefined until written)."""
        if n > self._capacity or not self._buffers:
            self._grow(n)
        buf = self._buffers[name]
        cut: F64 = buf[:n] if name == "rows_totals" else buf[..., :n]
        return cut

    def out(self, n: int) -> NDArray[np.int32]:
        """``(P, n)`` int32 output rows."""
        if n > self._capacity or not self._buffers:
            self._grow(n)
        return self._out[:, :n]


def ranges_into(bars: F64, out: F64, work: F64) -> F64:
    """The three TA-Lib range types of ``bars`` (4, w, N) into ``out`` (3, w, N).

    Real body ``fabs(close - open)``, high-low ``high - low``, shadows
    ``(high - max(open, close)) + (min(open, close) - low)``: TA_CANDLERANGE's operations
    in its order. ``work``: a (w, N) buffer.
    """
    o, h, lo, c = bars
    np.subtract(c, o, out=out[REALBODY])
    np.abs(out[REALBODY], out=out[REALBODY])
    np.subtract(h, lo, out=out[HIGHLOW])
    upper = out[SHADOWS]
    np.maximum(o, c, out=upper)
    np.subtract(h, upper, out=upper)
    np.minimum(o, c, out=work)
    np.subtract(work, lo, out=work)
    np.add(upper, work, out=upper)
    return out
