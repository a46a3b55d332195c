"""The pattern kernels compiled into a few dozen batched numpy steps.

``Program`` takes the traced kernel outputs (``trace.py`` says why), keeps only the
nodes an output needs, and evaluates nodes of one operation together: one numpy call
computes, say, every ready ``less`` comparison of all 61 kernels at once, reading its
operands from a ``(rows, N)`` float64 register file and writing a contiguous block of
result rows (``_schedule`` picks the steps). A few dozen steps replace the ~1,000 small
calls of running the kernels one by one.

Everything elementwise the detector does per bar is in the program: the candle ranges,
TA-Lib's candle averages and running-total updates (``Candles.avg`` / ``advanced``), the
kernels and the Hikkake memory. ``compile_patterns`` builds it.

Register layout (rows): the caller's inputs first (``input_row`` maps a leaf key to its
row, ``buffers.InputRows``), then the float constants, then every computed float node,
grouped by step. Boolean nodes live in a separate ``(rows, N)`` bool file: row 0 True,
row 1 False, then the computed ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
from numpy.typing import NDArray

from detectors.patterns.buffers import InputRows
from detectors.patterns.candles import DEPTH, F64, I32, Bool, Candles, RunningTotal
from detectors.patterns.trace import (
    ARITHMETIC,
    BOOL,
    COMPARISONS,
    FLOAT,
    LOGICAL,
    UNARY,
    Graph,
    Sym,
)

Rows = slice | NDArray[np.intp]
Step = Callable[[F64, Bool], object]  # results are written into the registers


@dataclass(frozen=True)
class PatternProgram:
    """The compiled evaluation of a list of kernels and what the detector needs around it.

    ``program`` outputs, in order: each kernel's value (the detector zeroes bars inside
    its lookback), each running total after this bar (``totals``' order), then, if
    ``memory``, the Hikkake memory after this bar (``(variant, field)`` order).
    """

    program: Program
    inputs: InputRows
    totals: tuple[RunningTotal, ...]
    #: bars of history (including the newest) each series must supply
    window: int
    memory: bool


def compile_patterns(kernels: Sequence[tuple[int, Callable[[Candles], I32]]]) -> PatternProgram:
    """Run each ``(lookback, kernel)`` once on traced candles and compile the result."""
    candles = Candles(Graph())
    outputs: list[Sym] = []
    for lookback, kernel in kernels:
        candles.start = lookback
        value = kernel(candles)
        if not isinstance(value, Sym) or value.kind != FLOAT:
            raise TypeError(f"kernel {kernel.__name__} did not give a traced numeric row")
        outputs.append(value)
    totals = tuple(sorted(set(candles.recorded.values())))
    window = max(DEPTH, max((t.shift + t.period for t in totals), default=0) + 1)
    outputs.extend(cast(Sym, candles.advanced(t)) for t in totals)
    memory = bool(candles.remembered)
    if memory:  # a variant no kernel updates passes through unchanged
        for v in range(2):
            outputs.extend(cast(Sym, m) for m in candles.remembered.get(v, candles.memory(v)))
    inputs = InputRows(window, totals)
    return PatternProgram(
        Program(outputs, inputs.row, inputs.count), inputs, totals, window, memory
    )


@dataclass(frozen=True)
class _Layout:
    """Row of every node in its register file (float or bool)."""

    rows: dict[Sym, int]
    n_float: int
    n_bool: int
    constants: F64  # values of the float constant rows, (C, 1)
    first_constant: int


class Program:
    """Batched evaluation of traced kernel outputs; see the module docstring."""

    def __init__(
        self, outputs: Sequence[Sym], input_row: Callable[[object], int], n_inputs: int
    ) -> None:
        nodes = _needed(outputs)
        groups = _schedule(nodes)
        layout = _layout(nodes, groups, input_row, n_inputs)
        self.n_registers = layout.n_float
        self.n_flags = layout.n_bool
        self._constants = layout.constants
        self._const_rows = slice(
            layout.first_constant, layout.first_constant + len(layout.constants)
        )
        self._steps = [_step(g, layout.rows) for g in groups]
        self._outputs = np.array([layout.rows[o] for o in outputs], dtype=np.intp)

    @property
    def steps(self) -> int:
        """Numpy steps per evaluation (the figure that sets the fixed cost per call)."""
        return len(self._steps)

    def run(self, registers: F64, flags: Bool) -> F64:
        """Evaluate into ``registers`` (``(n_registers, N)``, inputs already written) and
        ``flags`` (``(n_flags, N)``); return the outputs ``(len(outputs), N)``."""
        registers[self._const_rows] = self._constants
        flags[0] = True
        flags[1] = False
        for step in self._steps:
            step(registers, flags)
        out: F64 = registers[self._outputs]
        return out


def _needed(outputs: Sequence[Sym]) -> list[Sym]:
    """Every node the outputs depend on, operands before users (depth-first post-order)."""
    order: list[Sym] = []
    seen: set[Sym] = set()
    stack: list[tuple[Sym, bool]] = [(o, False) for o in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        stack.extend((a, False) for a in reversed(node.args) if a not in seen)
    return order


def _schedule(nodes: list[Sym]) -> list[list[Sym]]:
    """Computed nodes in steps of one operation each, operands in earlier steps.

    List scheduling: each step takes *every* ready node (operands computed) of one
    operation, choosing the operation of the ready node with the longest chain of users
    still ahead of it (the critical path), then the one with most such nodes, then most
    ready nodes. For the 61 patterns and their running totals that is 43 steps, against
    ~57 with one step per (depth, operation).
    """
    users: dict[Sym, dict[Sym, None]] = {n: {} for n in nodes}  # ordered: a stable layout
    waiting: dict[Sym, int] = {}
    for node in nodes:
        pending = {a for a in node.args if a.args}  # leaves and constants are inputs
        waiting[node] = len(pending)
        for a in pending:
            users[a][node] = None
    height: dict[Sym, int] = {}
    for node in reversed(nodes):  # users come after their operands in ``nodes``
        height[node] = 1 + max((height[u] for u in users[node]), default=0)
    ready: dict[str, list[Sym]] = {}
    for node in nodes:
        if node.args and not waiting[node]:
            ready.setdefault(node.op, []).append(node)
    steps: list[list[Sym]] = []
    while ready:
        op = max(ready, key=lambda o: (*_urgency(ready[o], height), o))
        step = ready.pop(op)
        steps.append(step)
        for node in step:
            for user in users[node]:
                waiting[user] -= 1
                if not waiting[user]:
                    ready.setdefault(user.op, []).append(user)
    return steps


def _urgency(ready: list[Sym], height: dict[Sym, int]) -> tuple[int, int, int]:
    """How pressing running these ready nodes is: the longest chain ahead of any, how many
    share it, how many nodes in all."""
    top = max(height[n] for n in ready)
    return top, sum(1 for n in ready if height[n] == top), len(ready)


def _layout(
    nodes: list[Sym],
    groups: list[list[Sym]],
    input_row: Callable[[object], int],
    n_inputs: int,
) -> _Layout:
    rows: dict[Sym, int] = {}
    constants: list[float] = []
    for node in nodes:
        if node.op == "leaf":
            rows[node] = input_row(node.key)
        elif node.op == "const" and node.kind == BOOL:
            rows[node] = 0 if node.key else 1
        elif node.op == "const":
            rows[node] = n_inputs + len(constants)
            constants.append(float(node.key))  # type: ignore[arg-type]
    next_row = {FLOAT: n_inputs + len(constants), BOOL: 2}
    for group in groups:
        for node in group:  # one step's results are contiguous rows
            rows[node] = next_row[node.kind]
            next_row[node.kind] += 1
    return _Layout(
        rows,
        next_row[FLOAT],
        next_row[BOOL],
        np.array(constants, dtype=np.float64)[:, None],
        n_inputs,
    )


def _rows(indices: Sequence[int]) -> Rows:
    """Operand rows of a step, without a copy where possible: a slice when the rows are
    consecutive, a one-row slice (broadcast) when they are all the same row (constants,
    ``fire``'s 0), else an index array (a gather)."""
    if len(set(indices)) == 1:
        return slice(indices[0], indices[0] + 1)
    if all(b - a == 1 for a, b in itertools.pairwise(indices)):
        return slice(indices[0], indices[-1] + 1)
    return np.array(indices, dtype=np.intp)


def _step(group: list[Sym], rows: dict[Sym, int]) -> Step:
    """One numpy call (plus operand gathers) computing every node of ``group``."""
    op = group[0].op
    out = slice(rows[group[0]], rows[group[-1]] + 1)
    if op in LOGICAL:  # n-ary: pad shorter nodes with the reduction's identity row
        ufunc, identity = LOGICAL[op]
        width = max(len(n.args) for n in group)
        pad = 0 if identity else 1  # the constant True / False row
        # (width, nodes): reducing over the outer axis runs whole rows at a time, and
        # np.take gathers a 2-d index several times faster than fancy indexing.
        table = np.full((width, len(group)), pad, dtype=np.intp)
        for i, n in enumerate(group):
            table[: len(n.args), i] = [rows[a] for a in n.args]
        return lambda r, f: ufunc.reduce(np.take(f, table, axis=0), axis=0, out=f[out])
    operand = [_rows([rows[n.args[i]] for n in group]) for i in range(len(group[0].args))]
    if op in ARITHMETIC:
        ufunc, a, b = ARITHMETIC[op], operand[0], operand[1]
        return lambda r, f: ufunc(r[a], r[b], out=r[out])
    if op in COMPARISONS:
        ufunc, a, b = COMPARISONS[op], operand[0], operand[1]
        return lambda r, f: ufunc(r[a], r[b], out=f[out])
    if op in UNARY:
        ufunc, a = UNARY[op], operand[0]
        return lambda r, f: ufunc(r[a], out=r[out])
    if op == "not":
        a = operand[0]
        return lambda r, f: np.logical_not(f[a], out=f[out])
    if op == "where":
        c, a, b = operand

        def where(r: F64, f: Bool) -> None:
            r[out] = np.where(f[c], r[a], r[b])

        return where
    raise TypeError(f"no batched step for {op}")
