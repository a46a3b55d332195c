"""Multi-candle TA-Lib patterns with gaps, continuation ("methods") and three-river shapes.

Each kernel mirrors its ``ta_CDLxxx.c`` condition term by term, with the same
comparison operators and the same floating-point expression order.
"""

from __future__ import annotations

import numpy as np

from detectors.patterns.candles import I32, Candles
from detectors.patterns.define import Registry, fire, period, three_with_short_shadow, within

REGISTRY = Registry()
pattern = REGISTRY.pattern


@pattern("CDLGAPSIDESIDEWHITE", period("Near", "Equal") + 2)
def gap_side_side_white(x: Candles) -> I32:
    near = x.avg("Near", 1)
    up = x.body_gap_up(1, 2) & x.body_gap_up(0, 2)
    down = x.body_gap_down(1, 2) & x.body_gap_down(0, 2)
    cond = (
        (up | down)
        & x.white(1)
        & x.white(0)
        & (x.body(0) >= x.body(1) - near)
        & (x.body(0) <= x.body(1) + near)
        & within(x.o(0), x.o(1), x.avg("Equal", 1))
    )
    return fire(cond, np.where(x.body_gap_up(1, 2), 100, -100))


@pattern("CDLIDENTICAL3CROWS", period("ShadowVeryShort", "Equal") + 2)
def identical_three_crows(x: Candles) -> I32:
    cond = (
        three_with_short_shadow(x, white=False, upper=False)
        & (x.c(2) > x.c(1))
        & (x.c(1) > x.c(0))
        & within(x.o(1), x.c(2), x.avg("Equal", 2))
        & within(x.o(0), x.c(1), x.avg("Equal", 1))
    )
    return fire(cond, -100)


@pattern("CDLLADDERBOTTOM", period("ShadowVeryShort") + 4)
def ladder_bottom(x: Candles) -> I32:
    o, c = x.o, x.c
    cond = (
        x.black(4)
        & x.black(3)
        & x.black(2)
        & (o(4) > o(3))
        & (o(3) > o(2))
        & (c(4) > c(3))
        & (c(3) > c(2))
        & x.black(1)
        & (x.upper(1) > x.avg("ShadowVeryShort", 1))
        & x.white(0)
        & (o(0) > o(1))
        & (c(0) > x.h(1))
    )
    return fire(cond, 100)


@pattern("CDLMATHOLD", period("BodyShort", "BodyLong") + 4)
def mat_hold(x: Candles, penetration: float = 0.5) -> I32:
    floor = x.c(4) - x.body(4) * penetration
    cond = (
        (x.body(4) > x.avg("BodyLong", 4))
        & (x.body(3) < x.avg("BodyShort", 3))  # strict here, unlike most "short" tests
        & (x.body(2) < x.avg("BodyShort", 2))
        & (x.body(1) < x.avg("BodyShort", 1))
        & x.white(4)
        & x.black(3)
        & x.white(0)
        & x.body_gap_up(3, 4)
        & (x.bottom(2) < x.c(4))
        & (x.bottom(1) < x.c(4))
        & (x.bottom(2) > floor)
        & (x.bottom(1) > floor)
        & (x.top(2) < x.o(3))
        & (x.top(1) < x.top(2))
        & (x.o(0) > x.c(1))
        & (x.c(0) > np.maximum(np.maximum(x.h(3), x.h(2)), x.h(1)))
    )
    return fire(cond, 100)


@pattern("CDLRISEFALL3METHODS", period("BodyShort", "BodyLong") + 4)
def rise_fall_three_methods(x: Candles) -> I32:
    col4 = x.color(4)
    sign = col4.astype(np.float64)  # TA-Lib multiplies prices by the color (exact: +-1)
    inside = np.ones_like(x.white(0))
    for k in (3, 2, 1):
        inside &= (x.bottom(k) < x.h(4)) & (x.top(k) > x.l(4))
    cond = (
        (x.body(4) > x.avg("BodyLong", 4))
        & (x.body(3) < x.avg("BodyShort", 3))
        & (x.body(2) < x.avg("BodyShort", 2))
        & (x.body(1) < x.avg("BodyShort", 1))
        & (x.body(0) > x.avg("BodyLong", 0))
        & (col4 == -x.color(3))
        & (x.color(3) == x.color(2))
        & (x.color(2) == x.color(1))
        & (x.color(1) == -x.color(0))
        & inside
        & (x.c(2) * sign < x.c(3) * sign)
        & (x.c(1) * sign < x.c(2) * sign)
        & (x.o(0) * sign > x.c(1) * sign)
        & (x.c(0) * sign > x.c(4) * sign)
    )
    return fire(cond, col4 * 100)


@pattern("CDLSTALLEDPATTERN", period("BodyLong", "BodyShort", "ShadowVeryShort", "Near") + 2)
def stalled_pattern(x: Candles) -> I32:
    cond = (
        x.white(2)
        & x.white(1)
        & x.white(0)
        & (x.c(0) > x.c(1))
        & (x.c(1) > x.c(2))
        & (x.body(2) > x.avg("BodyLong", 2))
        & (x.body(1) > x.avg("BodyLong", 1))
        & (x.upper(1) < x.avg("ShadowVeryShort", 1))
        & (x.o(1) > x.o(2))
        & (x.o(1) <= x.c(2) + x.avg("Near", 2))
        & (x.body(0) < x.avg("BodyShort", 0))
        & (x.o(0) >= x.c(1) - x.body(0) - x.avg("Near", 1))
    )
    return fire(cond, -100)


@pattern("CDLSTICKSANDWICH", period("Equal") + 2)
def stick_sandwich(x: Candles) -> I32:
    cond = (
        x.black(2)
        & x.white(1)
        & x.black(0)
        & (x.l(1) > x.c(2))
        & within(x.c(0), x.c(2), x.avg("Equal", 2))
    )
    return fire(cond, 100)


@pattern("CDLTASUKIGAP", period("Near") + 2)
def tasuki_gap(x: Candles) -> I32:
    near = x.avg("Near", 1)
    similar = np.abs(x.body(1) - x.body(0)) < near
    up = (
        x.body_gap_up(1, 2)
        & x.white(1)
        & x.black(0)
        & (x.o(0) < x.c(1))
        & (x.o(0) > x.o(1))
        & (x.c(0) < x.o(1))
        & (x.c(0) > x.top(2))
        & similar
    )
    down = (
        x.body_gap_down(1, 2)
        & x.black(1)
        & x.white(0)
        & (x.o(0) < x.o(1))
        & (x.o(0) > x.c(1))
        & (x.c(0) > x.o(1))
        & (x.c(0) < x.bottom(2))
        & similar
    )
    return fire(up | down, x.color(1) * 100)


@pattern("CDLTRISTAR", period("BodyDoji") + 2)
def tri_star(x: Candles) -> I32:
    doji = x.avg("BodyDoji", 2)  # TA-Lib judges all three bodies by the i-2 average
    three = (x.body(2) <= doji) & (x.body(1) <= doji) & (x.body(0) <= doji)
    bear = x.body_gap_up(1, 2) & (x.top(0) < x.top(1))
    bull = x.body_gap_down(1, 2) & (x.bottom(0) > x.bottom(1))
    return fire(three & bull, 100) + fire(three & bear & ~bull, -100)  # later test wins


@pattern("CDLUNIQUE3RIVER", period("BodyShort", "BodyLong") + 2)
def unique_three_river(x: Candles) -> I32:
    cond = (
        (x.body(2) > x.avg("BodyLong", 2))
        & x.black(2)
        & x.black(1)
        & (x.c(1) > x.c(2))
        & (x.o(1) <= x.o(2))
        & (x.l(1) < x.l(2))
        & (x.body(0) < x.avg("BodyShort", 0))
        & x.white(0)
        & (x.o(0) > x.l(1))
    )
    return fire(cond, 100)


@pattern("CDLUPSIDEGAP2CROWS", period("BodyShort", "BodyLong") + 2)
def upside_gap_two_crows(x: Candles) -> I32:
    cond = (
        x.white(2)
        & (x.body(2) > x.avg("BodyLong", 2))
        & x.black(1)
        & (x.body(1) <= x.avg("BodyShort", 1))
        & x.body_gap_up(1, 2)
        & x.black(0)
        & (x.o(0) > x.o(1))
        & (x.c(0) < x.c(1))
        & (x.c(0) > x.c(2))
    )
    return fire(cond, -100)


@pattern("CDLXSIDEGAP3METHODS", 2)
def x_side_gap_three_methods(x: Candles) -> I32:
    cond = (
        (x.color(2) == x.color(1))
        & (x.color(1) == -x.color(0))
        & (x.o(0) < x.top(1))
        & (x.o(0) > x.bottom(1))
        & (x.c(0) < x.top(2))
        & (x.c(0) > x.bottom(2))
        & ((x.white(2) & x.body_gap_up(1, 2)) | (x.black(2) & x.body_gap_down(1, 2)))
    )
    return fire(cond, x.color(2) * 100)
