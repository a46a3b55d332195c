"""The register files ``PatternDetector.evaluate`` works in, reused between calls.

One evaluate for 1,000 series needs a few megabytes of rows (the program's registers,
``program.py``), above glibc's mmap threshold: allocating them fresh on every call costs
page faults that took longer than the arithmetic itself. The buffers here grow to the
largest N seen and are reused; every program step writes into them with ``out=``.

The program's inputs are the first rows of its float register file (``InputRows``): the
detector writes the window's bars, the running totals, the bar index and the Hikkake
memory there, and the program reads them in place.
"""

from __future__ import annotations

import numpy as np

from detectors.patterns.candles import F64, Bool, RunningTotal

MEMORY_FIELDS = 4  # (pattern index, pattern result) of the two Hikkake variants


class InputRows:
    """Where the program's inputs sit in the float register file: the window's bars
    ``(4, w)`` (open, high, low, close; newest bar last), one row per running total, the
    bar index, then the Hikkake memory ``(variant, field)`` as in ``PatternState.hikkake``."""

    def __init__(self, window: int, totals: tuple[RunningTotal, ...]) -> None:
        self.window = window
        self.totals = totals
        self._total_row: dict[object, int] = {t: 4 * window + r for r, t in enumerate(totals)}
        self._index_row = 4 * window + len(totals)
        self.count = self._index_row + 1 + MEMORY_FIELDS
        #: (name, shape) of each block, in row order from row 0
        self.sections = (
            ("bars", (4, window)),
            ("totals", (len(totals),)),
            ("index", (1,)),
            ("memory", (2, 2)),
        )

    def row(self, key: object) -> int:
        """Row of a traced leaf (``Candles``' keys)."""
        w = self.window
        match key:
            case ("price", int(field), int(k)) if 0 <= field < 4 and 0 <= k < w:
                return field * w + w - 1 - k
            case ("total", total) if total in self._total_row:
                return self._total_row[total]
            case ("index",):
                return self._index_row
            case ("memory", int(variant), int(field)) if 0 <= variant < 2 and 0 <= field < 2:
                return self._index_row + 1 + 2 * variant + field
        raise KeyError(f"no input row for {key!r}")


class WorkBuffers:
    """Register files shaped ``(rows, capacity)``; views are cut to ``n`` series."""

    def __init__(self, inputs: InputRows, n_registers: int, n_flags: int) -> None:
        if n_registers < inputs.count:
            raise ValueError(f"{n_registers} registers cannot hold {inputs.count} input rows")
        self._inputs = inputs
        self._n_registers = n_registers
        self._n_flags = n_flags
        self._capacity = 0
        self._sections: dict[str, F64] = {}
        self._registers: F64 = np.empty((n_registers, 0))
        self._flags: Bool = np.empty((n_flags, 0), dtype=np.bool_)

    def _ensure(self, n: int) -> None:
        if n <= self._capacity and self._sections:
            return
        cap = max(n, 2 * self._capacity, 64)
        self._registers = np.empty((self._n_registers, cap))
        self._flags = np.empty((self._n_flags, cap), dtype=np.bool_)
        row = 0
        for name, shape in self._inputs.sections:  # C-contiguous row blocks: views
            size = int(np.prod(shape))
            self._sections[name] = self._registers[row : row + size].reshape(*shape, cap)
            row += size
        self._capacity = cap

    def view(self, name: str, n: int) -> F64:
        """Input block ``name`` (``InputRows.sections``) cut to ``n`` series."""
        self._ensure(n)
        cut: F64 = self._sections[name][..., :n]
        return cut

    def registers(self, n: int) -> tuple[F64, Bool]:
        """The program's float and bool register files, ``(rows, n)`` each."""
        self._ensure(n)
        return self._registers[:, :n], self._flags[:, :n]
