"""Symbolic rows: running the pattern kernels once to record what they compute.

Each kernel is a few dozen numpy operations on ``(N,)`` rows. At the e2e group size
(~63 series a call) numpy's fixed cost per call (about a microsecond) is most of the
time, and ~1,000 such calls per evaluate add up. So the detector runs every stateless
kernel once, at construction, on ``Sym`` rows instead of arrays: each operation records
a node (the same ufunc on the same operands), identical nodes are merged across kernels,
and ``program.Program`` then evaluates all nodes of one operation and depth in a single
numpy call on a ``(rows, N)`` register file. A node applies the same IEEE operation to
the same operand values as the kernel applied to its arrays, so results are bit-identical
to running the kernels directly (the TA-Lib comparison tests are the oracle).

Value kinds: ``"f"`` rows hold float64 (prices, ranges, averages, and the small integers
of colors and outputs, exact in float64); ``"b"`` rows hold booleans.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, cast

import numpy as np

FLOAT: Final = "f"
BOOL: Final = "b"

#: Binary float operations: the ufunc a node applies (operand order kept).
ARITHMETIC: Final[dict[str, np.ufunc]] = {
    "add": np.add,
    "subtract": np.subtract,
    "multiply": np.multiply,
    "divide": np.divide,
    "maximum": np.maximum,
    "minimum": np.minimum,
}
#: Float comparisons, giving booleans.
COMPARISONS: Final[dict[str, np.ufunc]] = {
    "less": np.less,
    "less_equal": np.less_equal,
    "equal": np.equal,
    "not_equal": np.not_equal,
}
_MIRRORED: Final = {"greater": "less", "greater_equal": "less_equal"}
#: One-operand float operations.
UNARY: Final[dict[str, np.ufunc]] = {"negative": np.negative, "absolute": np.absolute}
#: n-ary boolean reductions (``a & b & c`` is one node): op -> (ufunc, identity).
LOGICAL: Final[dict[str, tuple[np.ufunc, bool]]] = {
    "and": (np.logical_and, True),
    "or": (np.logical_or, False),
}
_UFUNC_OPS: Final = {
    **{u: n for n, u in ARITHMETIC.items()},
    **{u: n for n, u in COMPARISONS.items()},
    np.greater: "greater",
    np.greater_equal: "greater_equal",
    **{u: n for n, u in UNARY.items()},
    np.logical_and: "and",
    np.logical_or: "or",
    np.bitwise_and: "and",
    np.bitwise_or: "or",
    np.logical_not: "not",
    np.invert: "not",
}


class Graph:
    """The nodes recorded so far; ``node`` returns an existing identical node if any."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[object, ...], Sym] = {}

    def node(self, op: str, args: tuple[Sym, ...], kind: str, key: object = None) -> Sym:
        ident = (op, kind, tuple(id(a) for a in args), key)  # kind: True == 1.0 as keys
        hit = self._nodes.get(ident)
        if hit is None:
            hit = self._nodes[ident] = Sym(self, op, args, kind, key)
        return hit

    def leaf(self, key: object) -> Sym:
        """An input row (prices, ranges, averages), named by ``key``."""
        return self.node("leaf", (), FLOAT, key)

    def const(self, value: float | bool) -> Sym:
        if isinstance(value, bool | np.bool_):
            return self.node("const", (), BOOL, bool(value))
        return self.node("const", (), FLOAT, float(value))


class Sym:
    """One traced row: an operation of other rows (or a leaf / constant)."""

    __hash__ = object.__hash__  # identity: ``==`` builds a node, it does not compare

    def __init__(self, graph: Graph, op: str, args: tuple[Sym, ...], kind: str, key: object):
        self.graph = graph
        self.op = op
        self.args = args
        self.kind = kind
        self.key = key

    def __repr__(self) -> str:
        return f"Sym({self.op}, {self.key!r})" if not self.args else f"Sym({self.op}/{self.kind})"

    # -- construction helpers -------------------------------------------------------------
    def _lift(self, value: object) -> Sym:
        if isinstance(value, Sym):
            return value
        if isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating):
            return self.graph.const(value.item() if isinstance(value, np.generic) else value)
        raise TypeError(f"cannot trace operand {value!r}")

    def _float_op(self, op: str, a: object, b: object) -> Sym:
        x, y = self._lift(a), self._lift(b)
        _expect(op, FLOAT, x, y)
        folded = _fold(op, x, y)
        return folded if folded is not None else self.graph.node(op, (x, y), FLOAT)

    def _compare(self, op: str, other: object) -> Sym:
        y = self._lift(other)
        _expect(op, FLOAT, self, y)
        if op in _MIRRORED:  # a > b is b < a, exactly (NaN too): fewer kinds of step
            return self.graph.node(_MIRRORED[op], (y, self), BOOL)
        return self.graph.node(op, (self, y), BOOL)

    def _logical(self, op: str, other: object) -> Sym:
        ufunc_identity = LOGICAL[op][1]
        terms: set[Sym] = set()
        for t in (self, self._lift(other)):
            _expect(op, BOOL, t)
            if t.op == "const":
                if t.key == ufunc_identity:
                    continue  # x & True == x, x | False == x
                return t  # x & False == False, x | True == True
            terms.update(t.args if t.op == op else (t,))  # flatten: one n-ary node
        if not terms:
            return self.graph.const(ufunc_identity)
        if len(terms) == 1:
            return terms.pop()
        ordered = tuple(sorted(terms, key=id))  # & and | are exact in any order
        return self.graph.node(op, ordered, BOOL)

    # -- numpy-like interface used by the kernels ---------------------------------------
    def __add__(self, o: object) -> Sym:
        return self._float_op("add", self, o)

    def __radd__(self, o: object) -> Sym:
        return self._float_op("add", o, self)

    def __sub__(self, o: object) -> Sym:
        return self._float_op("subtract", self, o)

    def __rsub__(self, o: object) -> Sym:
        return self._float_op("subtract", o, self)

    def __mul__(self, o: object) -> Sym:
        return self._float_op("multiply", self, o)

    def __rmul__(self, o: object) -> Sym:
        return self._float_op("multiply", o, self)

    def __truediv__(self, o: object) -> Sym:
        return self._float_op("divide", self, o)

    def __neg__(self) -> Sym:
        _expect("negative", FLOAT, self)
        folded = _fold("negative", self)
        return folded if folded is not None else self.graph.node("negative", (self,), FLOAT)

    def __abs__(self) -> Sym:
        _expect("absolute", FLOAT, self)
        return self.graph.node("absolute", (self,), FLOAT)

    def __lt__(self, o: object) -> Sym:
        return self._compare("less", o)

    def __le__(self, o: object) -> Sym:
        return self._compare("less_equal", o)

    def __gt__(self, o: object) -> Sym:
        return self._compare("greater", o)

    def __ge__(self, o: object) -> Sym:
        return self._compare("greater_equal", o)

    def __eq__(self, o: object) -> Sym:  # type: ignore[override]
        return self._compare("equal", o)

    def __ne__(self, o: object) -> Sym:  # type: ignore[override]
        return self._compare("not_equal", o)

    def __and__(self, o: object) -> Sym:
        return self._logical("and", o)

    __rand__ = __and__

    def __or__(self, o: object) -> Sym:
        return self._logical("or", o)

    __ror__ = __or__

    def __invert__(self) -> Sym:
        _expect("not", BOOL, self)
        if self.op == "const":
            return self.graph.const(not self.key)
        return self.graph.node("not", (self,), BOOL)

    def astype(self, dtype: object) -> Sym:
        """Colors are kept as float64 already (``+-1.0``): a cast to float64 is a no-op."""
        if np.dtype(dtype) != np.float64 or self.kind != FLOAT:  # type: ignore[call-overload]
            raise TypeError(f"cannot trace astype({dtype}) of a {self.kind} row")
        return self

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Sym:
        op = _UFUNC_OPS.get(ufunc)
        if method != "__call__" or kwargs or op is None:
            raise TypeError(f"cannot trace {ufunc.__name__}.{method}")
        args = [self._lift(i) for i in inputs]
        if op in LOGICAL:
            return args[0]._logical(op, args[1])
        if op == "not":
            return ~args[0]
        if op in UNARY:
            return -args[0] if op == "negative" else abs(args[0])
        if op in COMPARISONS or op in _MIRRORED:
            return args[0]._compare(op, args[1])
        return self._float_op(op, args[0], args[1])

    def __array_function__(
        self, func: Callable[..., Any], types: object, args: Any, kwargs: Any
    ) -> Sym:
        if func is np.where and len(args) == 3 and not kwargs:
            cond, a, b = (self._lift(v) for v in args)
            _expect("where", BOOL, cond)
            _expect("where", FLOAT, a, b)
            if cond.op == "const":
                return a if cond.key else b
            return self.graph.node("where", (cond, a, b), FLOAT)
        if func is np.ones_like and len(args) == 1 and not kwargs:
            return self.graph.const(True if self.kind == BOOL else 1.0)
        raise TypeError(f"cannot trace numpy.{getattr(func, '__name__', func)}")


def _fold(op: str, *args: Sym) -> Sym | None:
    """``op`` of constants, and of ``where(c, K1, K2)`` with constants (``color * 100``
    becomes ``where(white, 100.0, -100.0)``): the value each row would get, computed by
    the same ufunc on the same float64 operands, so folding is exact. None: no fold."""
    ufunc = ARITHMETIC.get(op) or UNARY[op]
    choice = next((a for a in args if a.op == "where"), None)
    if choice is None:
        if all(a.op == "const" for a in args):
            return args[0].graph.const(float(ufunc(*(_value(a) for a in args))))
        return None
    cond, *branches = choice.args
    if any(b.op != "const" for b in branches) or any(
        a is not choice and a.op != "const" for a in args
    ):
        return None
    picked = []
    for branch in branches:
        operands = [_value(branch if a is choice else a) for a in args]
        picked.append(choice.graph.const(float(ufunc(*operands))))
    return choice.graph.node("where", (cond, *picked), FLOAT)


def _value(constant: Sym) -> np.float64:
    return np.float64(cast(float, constant.key))


def _expect(op: str, kind: str, *rows: Sym) -> None:
    bad = [r for r in rows if r.kind != kind]
    if bad:
        raise TypeError(f"cannot trace {op} of {bad[0]!r}: expected a {kind} row")
