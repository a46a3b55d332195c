"""Reusable work buffers for ``PatternDetector.evaluate``.

One evaluate for 1,000 series needs a few megabytes of intermediate arrays (bars and
ranges of the window, running sums, averages, the program's registers, outputs), each
above glibc's mmap threshold: allocating them fresh on every call costs page faults that
took longer than the arithmetic itself. The buffers here grow to the largest N seen and
are reused, and every step writes into them with ``out=`` (same operations, same order:
exactness is unaffected).

The bars, ranges and candle averages are the first rows of the program's float register
file (``program.py``): written there, they are the compiled kernels' inputs without a copy.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detectors.patterns.candles import DEPTH, F64, HIGHLOW, REALBODY, SHADOWS, AverageKey, Bool


class InputRows:
    """Where the program's inputs sit in the register file: the window's bars ``(4, w)``,
    its ranges ``(3, w)`` (newest bar last in each block), one row per candle average, the
    bar index, then the Hikkake memory ``(variant, field)`` as in ``PatternState.hikkake``."""

    def __init__(self, window: int, averages: tuple[AverageKey, ...]) -> None:
        self.window = window
        self.averages = averages
        first = 7 * window
        self._average_row: dict[object, int] = {k: first + r for r, k in enumerate(averages)}
        self._index_row = first + len(averages)
        self.count = self._index_row + 1 + 4

    def row(self, key: object) -> int:
        """Row of a traced leaf (``TracedCandles``' keys)."""
        w = self.window
        match key:
            case ("price", int(field), int(k)) if 0 <= k < DEPTH:
                return field * w + w - 1 - k
            case ("range", int(kind), int(k)) if 0 <= k < DEPTH:
                return 4 * w + kind * w + w - 1 - k
            case ("avg", average):
                return self._average_row[average]
            case ("index",):
                return self._index_row
            case ("memory", int(variant), int(field)) if 0 <= variant < 2 and 0 <= field < 2:
                return self._index_row + 1 + 2 * variant + field
        raise KeyError(f"no input row for {key!r}")


class WorkBuffers:
    """Buffers shaped ``(..., capacity)``; ``view(n)`` hands out ``(..., n)`` views."""

    def __init__(
        self,
        inputs: InputRows,
        n_totals: int,
        n_patterns: int,
        n_registers: int,
        n_flags: int,
    ) -> None:
        window = inputs.window
        self._shapes = {
            "work": (window,),
            "rows_totals": (n_totals,),  # (N, T) gathered state rows, transposed below
            "totals": (n_totals,),
            "means": (n_totals,),
            "now": (n_totals,),
            "trail": (n_totals,),
        }
        # Sections of the register file: (name, shape), in row order from row 0.
        self._sections = (
            ("bars", (4, window)),
            ("ranges", (3, window)),
            ("averages", (len(inputs.averages),)),
            ("index", (1,)),
            ("memory", (2, 2)),
        )
        if n_registers < inputs.count:
            raise ValueError(f"{n_registers} registers cannot hold {inputs.count} input rows")
        self._n_registers = n_registers
        self._n_flags = n_flags
        self._patterns = n_patterns
        self._capacity = 0
        self._buffers: dict[str, F64] = {}
        self._registers: F64 = np.empty((n_registers, 0))
        self._flags: Bool = np.empty((n_flags, 0), dtype=np.bool_)
        self._out: NDArray[np.int32] = np.empty((n_patterns, 0), dtype=np.int32)

    def _grow(self, n: int) -> None:
        cap = max(n, 2 * self._capacity, 64)
        self._buffers = {
            k: np.empty((cap, *s) if k == "rows_totals" else (*s, cap))
            for k, s in self._shapes.items()
        }
        self._registers = np.empty((self._n_registers, cap))
        row = 0
        for name, shape in self._sections:  # C-contiguous row blocks: reshaping is a view
            size = int(np.prod(shape))
            self._buffers[name] = self._registers[row : row + size].reshape(*shape, cap)
            row += size
        self._flags = np.empty((self._n_flags, cap), dtype=np.bool_)
        self._out = np.empty((self._patterns, cap), dtype=np.int32)
        self._capacity = cap

    def _ensure(self, n: int) -> None:
        if n > self._capacity or not self._buffers:
            self._grow(n)

    def view(self, name: str, n: int) -> F64:
        """Buffer ``name`` cut to ``n`` series (contents undefined until written)."""
        self._ensure(n)
        buf = self._buffers[name]
        cut: F64 = buf[:n] if name == "rows_totals" else buf[..., :n]
        return cut

    def registers(self, n: int) -> tuple[F64, Bool]:
        """The program's float and bool register files, ``(rows, n)`` each."""
        self._ensure(n)
        return self._registers[:, :n], self._flags[:, :n]

    def out(self, n: int) -> NDArray[np.int32]:
        """``(P, n)`` int32 output rows."""
        self._ensure(n)
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
