"""Two-candle TA-Lib patterns (bar i-1 and the newly closed bar i).

Each kernel mirrors its ``ta_CDLxxx.c`` condition term by term, with the same
comparison operators and the same floating-point expression order.
"""

from __future__ import annotations

import numpy as np

from detectors.patterns.candles import I32, Bool, Candles
from detectors.patterns.define import Registry, fire, period, within

REGISTRY = Registry()
pattern = REGISTRY.pattern


@pattern("CDLCOUNTERATTACK", period("Equal", "BodyLong") + 1)
def counterattack(x: Candles) -> I32:
    cond = (
        (x.color(1) == -x.color(0))
        & (x.body(1) > x.avg("BodyLong", 1))
        & (x.body(0) > x.avg("BodyLong", 0))
        & within(x.c(0), x.c(1), x.avg("Equal", 1))
    )
    return fire(cond, x.color(0) * 100)


@pattern("CDLDARKCLOUDCOVER", period("BodyLong") + 1)
def dark_cloud_cover(x: Candles, penetration: float = 0.5) -> I32:
    cond = (
        x.white(1)
        & (x.body(1) > x.avg("BodyLong", 1))
        & x.black(0)
        & (x.o(0) > x.h(1))
        & (x.c(0) > x.o(1))
        & (x.c(0) < x.c(1) - x.body(1) * penetration)
    )
    return fire(cond, -100)


@pattern("CDLDOJISTAR", period("BodyDoji", "BodyLong") + 1)
def doji_star(x: Candles) -> I32:
    cond = (
        (x.body(1) > x.avg("BodyLong", 1))
        & (x.body(0) <= x.avg("BodyDoji", 0))
        & ((x.white(1) & x.body_gap_up(0, 1)) | (x.black(1) & x.body_gap_down(0, 1)))
    )
    return fire(cond, -x.color(1) * 100)


@pattern("CDLENGULFING", 2)
def engulfing(x: Candles) -> I32:
    o0, c0, o1, c1 = x.o(0), x.c(0), x.o(1), x.c(1)
    bull = x.white(0) & x.black(1) & (((c0 >= o1) & (o0 < c1)) | ((c0 > o1) & (o0 <= c1)))
    bear = x.black(0) & x.white(1) & (((o0 >= c1) & (c0 < o1)) | ((o0 > c1) & (c0 <= o1)))
    strict = (o0 != c1) & (c0 != o1)
    return fire(bull | bear, x.color(0) * np.where(strict, 100, 80))


def _harami(x: Candles, second: str) -> I32:
    cond = (x.body(1) > x.avg("BodyLong", 1)) & (x.body(0) <= x.avg(second, 0))
    top0, bot0, top1, bot1 = x.top(0), x.bottom(0), x.top(1), x.bottom(1)
    inside = (top0 < top1) & (bot0 > bot1)
    touching = (top0 <= top1) & (bot0 >= bot1)
    value = np.where(inside, 100, np.where(touching, 80, 0)) * -x.color(1)
    return fire(cond, value)


@pattern("CDLHARAMI", period("BodyShort", "BodyLong") + 1)
def harami(x: Candles) -> I32:
    return _harami(x, "BodyShort")


@pattern("CDLHARAMICROSS", period("BodyDoji", "BodyLong") + 1)
def harami_cross(x: Candles) -> I32:
    return _harami(x, "BodyDoji")


@pattern("CDLHOMINGPIGEON", period("BodyShort", "BodyLong") + 1)
def homing_pigeon(x: Candles) -> I32:
    cond = (
        x.black(1)
        & x.black(0)
        & (x.body(1) > x.avg("BodyLong", 1))
        & (x.body(0) <= x.avg("BodyShort", 0))
        & (x.o(0) < x.o(1))
        & (x.c(0) > x.c(1))
    )
    return fire(cond, 100)


def _white_opens_below_long_black(x: Candles) -> Bool:
    """Long black i-1, then a white i opening below its low: in/on-neck and thrusting."""
    cond: Bool = x.black(1) & (x.body(1) > x.avg("BodyLong", 1)) & x.white(0) & (x.o(0) < x.l(1))
    return cond


@pattern("CDLINNECK", period("Equal", "BodyLong") + 1)
def in_neck(x: Candles) -> I32:
    cond = (
        _white_opens_below_long_black(x)
        & (x.c(0) <= x.c(1) + x.avg("Equal", 1))
        & (x.c(0) >= x.c(1))
    )
    return fire(cond, -100)


def _kicking(x: Candles) -> Bool:
    svs1, svs0 = x.avg("ShadowVeryShort", 1), x.avg("ShadowVeryShort", 0)
    cond: Bool = (
        (x.color(1) == -x.color(0))
        & (x.body(1) > x.avg("BodyLong", 1))
        & (x.upper(1) < svs1)
        & (x.lower(1) < svs1)
        & (x.body(0) > x.avg("BodyLong", 0))
        & (x.upper(0) < svs0)
        & (x.lower(0) < svs0)
        & ((x.black(1) & x.gap_up(0, 1)) | (x.white(1) & x.gap_down(0, 1)))
    )
    return cond


@pattern("CDLKICKING", period("ShadowVeryShort", "BodyLong") + 1)
def kicking(x: Candles) -> I32:
    return fire(_kicking(x), x.color(0) * 100)


@pattern("CDLKICKINGBYLENGTH", period("ShadowVeryShort", "BodyLong") + 1)
def kicking_by_length(x: Candles) -> I32:
    longer = np.where(x.body(0) > x.body(1), x.color(0), x.color(1))
    return fire(_kicking(x), longer * 100)


@pattern("CDLMATCHINGLOW", period("Equal") + 1)
def matching_low(x: Candles) -> I32:
    cond = x.black(1) & x.black(0) & within(x.c(0), x.c(1), x.avg("Equal", 1))
    return fire(cond, 100)


@pattern("CDLONNECK", period("Equal", "BodyLong") + 1)
def on_neck(x: Candles) -> I32:
    cond = _white_opens_below_long_black(x) & within(x.c(0), x.l(1), x.avg("Equal", 1))
    return fire(cond, -100)


@pattern("CDLPIERCING", period("BodyLong") + 1)
def piercing(x: Candles) -> I32:
    cond = (
        x.black(1)
        & (x.body(1) > x.avg("BodyLong", 1))
        & x.white(0)
        & (x.body(0) > x.avg("BodyLong", 0))
        & (x.o(0) < x.l(1))
        & (x.c(0) < x.o(1))
        & (x.c(0) > x.c(1) + x.body(1) * 0.5)
    )
    return fire(cond, 100)


@pattern("CDLSEPARATINGLINES", period("ShadowVeryShort", "BodyLong", "Equal") + 1)
def separating_lines(x: Candles) -> I32:
    svs = x.avg("ShadowVeryShort", 0)
    cond = (
        (x.color(1) == -x.color(0))
        & within(x.o(0), x.o(1), x.avg("Equal", 1))
        & (x.body(0) > x.avg("BodyLong", 0))
        & ((x.white(0) & (x.lower(0) < svs)) | (x.black(0) & (x.upper(0) < svs)))
    )
    return fire(cond, x.color(0) * 100)


@pattern("CDLTHRUSTING", period("Equal", "BodyLong") + 1)
def thrusting(x: Candles) -> I32:
    cond = (
        _white_opens_below_long_black(x)
        & (x.c(0) > x.c(1) + x.avg("Equal", 1))
        & (x.c(0) <= x.c(1) + x.body(1) * 0.5)
    )
    return fire(cond, -100)
