"""The traced, batched program computes exactly what the same numpy code computes directly.

The TA-Lib tests (test_patterns_exact.py and friends) check the 61 kernels end to end; these
check the mechanism on its own, bit for bit, including values the kernels rarely meet
(NaN, infinities, signed zeros, ties), and that tracing refuses what it cannot batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from detectors.patterns import PatternDetector
from detectors.patterns.program import Program
from detectors.patterns.trace import Graph, Sym


def _expressions(a: Any, b: Any, c: Any) -> list[Any]:
    """Numpy code in the kernels' style; numeric results and where-encoded conditions."""
    w = c >= a
    color = np.where(w, 1, -1)
    near = (b - a) * 0.2 / 2.0
    within = (a <= b + near) & (a >= b - near)
    return [
        np.abs(a - b),
        np.maximum(np.maximum(a, b), c) - np.minimum(a, c),
        color * 100,
        -color * np.where(a > b, 100, 80),
        np.where(within | ~w, a, b),
        np.where((a < b) & (b != c) & (color == -np.where(b >= c, 1, -1)), 1.0, 0.0),
        np.where(np.ones_like(w) & (a == c), 2.0, -2.0),
        c * color.astype(np.float64) / b,
    ]


def _run_traced(fn: Callable[..., list[Any]], columns: list[np.ndarray]) -> list[np.ndarray]:
    graph = Graph()
    leaves = [graph.leaf(("in", i)) for i in range(len(columns))]
    outputs = fn(*leaves)
    assert all(isinstance(o, Sym) for o in outputs)
    program = Program(outputs, lambda key: key[1], len(columns))  # type: ignore[index]
    n = columns[0].shape[0]
    registers = np.full((program.n_registers, n), np.nan)
    flags = np.zeros((program.n_flags, n), dtype=np.bool_)
    registers[: len(columns)] = columns
    values = program.run(registers, flags)
    return [values[i] for i in range(len(outputs))]


def test_program_equals_direct_numpy_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 1.0, 2.5])
    columns = []
    for _ in range(3):
        col = np.round(rng.normal(size=400), 1)  # many ties between columns
        col[rng.integers(0, 400, 60)] = rng.choice(special, 60)
        columns.append(col)
    with np.errstate(all="ignore"):
        want = [np.asarray(v, dtype=np.float64) for v in _expressions(*columns)]
        got = _run_traced(_expressions, columns)
    for w, g in zip(want, got, strict=True):
        assert g.tobytes() == np.broadcast_to(w, g.shape).tobytes()


def test_identical_expressions_are_computed_once() -> None:
    graph = Graph()
    a, b = graph.leaf("a"), graph.leaf("b")
    assert (a - b) is (a - b)
    assert (a > b) is (b < a)  # mirrored into one kind of comparison
    assert ((a < b) & (b < a)) is ((b < a) & (a < b))  # & is order-free


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda a, b: np.sqrt(a), "sqrt"),
        (lambda a, b: (a < b) + 1.0, "add"),
        (lambda a, b: a & b, "and"),
        (lambda a, b: np.where(a, a, b), "where"),
        (lambda a, b: a.astype(np.int32), "astype"),
    ],
)
def test_tracing_refuses_what_it_cannot_batch(
    make: Callable[[Sym, Sym], Any], message: str
) -> None:
    graph = Graph()
    with pytest.raises(TypeError, match=message):
        make(graph.leaf("a"), graph.leaf("b"))


def test_all_patterns_run_as_a_few_dozen_steps() -> None:
    """The point of the program: the per-call cost is set by its steps, not by the ~1,000
    operations of the kernels (a regression here shows as a slower small-group evaluate)."""
    steps = PatternDetector()._program.steps
    assert 0 < steps <= 60
