"""Small helpers the pattern kernel modules share: registration, lookbacks, outputs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from detectors.patterns.candles import F64, I32, SETTINGS, Bool, Candles
from detectors.patterns.detector import Kernel, PatternDef


def period(*settings: str) -> int:
    """Largest ``avgPeriod`` among ``settings``: TA-Lib's lookbacks are built from it."""
    return max(SETTINGS[s].avg_period for s in settings)


def fire(cond: Bool, value: int | I32) -> I32:
    """``value`` where ``cond`` holds, else 0 (TA-Lib's outInteger; the engine stores int32)."""
    out: I32 = np.where(cond, value, 0)
    return out


def within(value: F64, ref: F64, tol: F64) -> Bool:
    """``value <= ref + tol && value >= ref - tol`` (TA-Lib's "equal" / "near" test)."""
    inside: Bool = (value <= ref + tol) & (value >= ref - tol)
    return inside


def three_with_short_shadow(x: Candles, white: bool, upper: bool) -> Bool:
    """Bars i-2, i-1, i all white (or all black), each with its upper (or lower) shadow
    shorter than ShadowVeryShort: the core of 3 white soldiers / (identical) 3 crows."""
    cond = np.ones_like(x.white(0))
    for k in (2, 1, 0):
        colored = x.white(k) if white else x.black(k)
        shadow = x.upper(k) if upper else x.lower(k)
        cond &= colored & (shadow < x.avg("ShadowVeryShort", k))
    return cond


def advancing_three(x: Candles) -> Bool:
    """Closes rising over bars i-2, i-1, i, and bars i-1 and i each opening above the previous
    open, within (or near) the previous real body: the advance shared by 3 white soldiers and
    advance block (TA-Lib writes the same six terms in both)."""
    rising: Bool = (
        (x.c(0) > x.c(1))
        & (x.c(1) > x.c(2))
        & (x.o(1) > x.o(2))
        & (x.o(1) <= x.c(2) + x.avg("Near", 2))
        & (x.o(0) > x.o(1))
        & (x.o(0) <= x.c(1) + x.avg("Near", 1))
    )
    return rising


class Registry:
    """Collects ``PatternDef``s from ``@registry.pattern(name, lookback)`` kernels."""

    def __init__(self) -> None:
        self.defs: list[PatternDef] = []

    def pattern(self, name: str, lookback: int) -> Callable[[Kernel], Kernel]:
        def register(kernel: Callable[[Candles], I32]) -> Kernel:
            self.defs.append(PatternDef(name, lookback, kernel))
            return kernel

        return register
