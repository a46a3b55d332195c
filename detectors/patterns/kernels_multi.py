"""Three- to five-candle TA-Lib patterns (bars i-4 .. i).

Each kernel mirrors its ``ta_CDLxxx.c`` condition term by term, with the same
comparison operators and the same floating-point expression order. Penetration
parameters are TA-Lib's defaults (the ``talib`` wrapper's defaults too).
"""

from __future__ import annotations

from detectors.patterns.candles import I32, Bool, Candles
from detectors.patterns.define import (
    Registry,
    advancing_three,
    fire,
    period,
    three_with_short_shadow,
)

REGISTRY = Registry()
pattern = REGISTRY.pattern


@pattern("CDL2CROWS", period("BodyLong") + 2)
def two_crows(x: Candles) -> I32:
    cond = (
        x.white(2)
        & (x.body(2) > x.avg("BodyLong", 2))
        & x.black(1)
        & x.body_gap_up(1, 2)
        & x.black(0)
        & (x.o(0) < x.o(1))
        & (x.o(0) > x.c(1))
        & (x.c(0) > x.o(2))
        & (x.c(0) < x.c(2))
    )
    return fire(cond, -100)


@pattern("CDL3BLACKCROWS", period("ShadowVeryShort") + 3)
def three_black_crows(x: Candles) -> I32:
    cond = (
        x.white(3)
        & three_with_short_shadow(x, white=False, upper=False)
        & (x.o(1) < x.o(2))
        & (x.o(1) > x.c(2))
        & (x.o(0) < x.o(1))
        & (x.o(0) > x.c(1))
        & (x.h(3) > x.c(2))
        & (x.c(2) > x.c(1))
        & (x.c(1) > x.c(0))
    )
    return fire(cond, -100)


@pattern("CDL3INSIDE", period("BodyShort", "BodyLong") + 2)
def three_inside(x: Candles) -> I32:
    cond = (
        (x.body(2) > x.avg("BodyLong", 2))
        & (x.body(1) <= x.avg("BodyShort", 1))
        & (x.top(1) < x.top(2))
        & (x.bottom(1) > x.bottom(2))
        & (
            (x.white(2) & x.black(0) & (x.c(0) < x.o(2)))
            | (x.black(2) & x.white(0) & (x.c(0) > x.o(2)))
        )
    )
    return fire(cond, -x.color(2) * 100)


@pattern("CDL3LINESTRIKE", period("Near") + 3)
def three_line_strike(x: Candles) -> I32:
    near3, near2 = x.avg("Near", 3), x.avg("Near", 2)
    cond = (
        (x.color(3) == x.color(2))
        & (x.color(2) == x.color(1))
        & (x.color(0) == -x.color(1))
        & (x.o(2) >= x.bottom(3) - near3)
        & (x.o(2) <= x.top(3) + near3)
        & (x.o(1) >= x.bottom(2) - near2)
        & (x.o(1) <= x.top(2) + near2)
        & (
            (
                x.white(1)
                & (x.c(1) > x.c(2))
                & (x.c(2) > x.c(3))
                & (x.o(0) > x.c(1))
                & (x.c(0) < x.o(3))
            )
            | (
                x.black(1)
                & (x.c(1) < x.c(2))
                & (x.c(2) < x.c(3))
                & (x.o(0) < x.c(1))
                & (x.c(0) > x.o(3))
            )
        )
    )
    return fire(cond, x.color(1) * 100)


@pattern("CDL3OUTSIDE", 3)
def three_outside(x: Candles) -> I32:
    bull = x.white(1) & x.black(2) & (x.c(1) > x.o(2)) & (x.o(1) < x.c(2)) & (x.c(0) > x.c(1))
    bear = x.black(1) & x.white(2) & (x.o(1) > x.c(2)) & (x.c(1) < x.o(2)) & (x.c(0) < x.c(1))
    return fire(bull, 100) + fire(bear, -100)


@pattern("CDL3STARSINSOUTH", period("ShadowVeryShort", "ShadowLong", "BodyLong", "BodyShort") + 2)
def three_stars_in_south(x: Candles) -> I32:
    cond = (
        x.black(2)
        & x.black(1)
        & x.black(0)
        & (x.body(2) > x.avg("BodyLong", 2))
        & (x.lower(2) > x.avg("ShadowLong", 2))
        & (x.body(1) < x.body(2))
        & (x.o(1) > x.c(2))
        & (x.o(1) <= x.h(2))
        & (x.l(1) < x.c(2))
        & (x.l(1) >= x.l(2))
        & (x.lower(1) > x.avg("ShadowVeryShort", 1))
        & (x.body(0) < x.avg("BodyShort", 0))
        & (x.lower(0) < x.avg("ShadowVeryShort", 0))
        & (x.upper(0) < x.avg("ShadowVeryShort", 0))
        & (x.l(0) > x.l(1))
        & (x.h(0) < x.h(1))
    )
    return fire(cond, 100)


@pattern("CDL3WHITESOLDIERS", period("ShadowVeryShort", "BodyShort", "Far", "Near") + 2)
def three_white_soldiers(x: Candles) -> I32:
    cond = (
        three_with_short_shadow(x, white=True, upper=True)
        & advancing_three(x)
        & (x.body(1) > x.body(2) - x.avg("Far", 2))
        & (x.body(0) > x.body(1) - x.avg("Far", 1))
        & (x.body(0) > x.avg("BodyShort", 0))
    )
    return fire(cond, 100)


@pattern("CDLABANDONEDBABY", period("BodyDoji", "BodyLong", "BodyShort") + 2)
def abandoned_baby(x: Candles, penetration: float = 0.3) -> I32:
    cond = (
        (x.body(2) > x.avg("BodyLong", 2))
        & (x.body(1) <= x.avg("BodyDoji", 1))
        & (x.body(0) > x.avg("BodyShort", 0))
        & (
            (
                x.white(2)
                & x.black(0)
                & (x.c(0) < x.c(2) - x.body(2) * penetration)
                & x.gap_up(1, 2)
                & x.gap_down(0, 1)
            )
            | (
                x.black(2)
                & x.white(0)
                & (x.c(0) > x.c(2) + x.body(2) * penetration)
                & x.gap_down(1, 2)
                & x.gap_up(0, 1)
            )
        )
    )
    return fire(cond, x.color(0) * 100)


@pattern("CDLADVANCEBLOCK", period("ShadowLong", "ShadowShort", "Far", "Near", "BodyLong") + 2)
def advance_block(x: Candles) -> I32:
    b0, b1, b2 = x.body(0), x.body(1), x.body(2)
    weakening = (
        ((b1 < b2 - x.avg("Far", 2)) & (b0 < b1 + x.avg("Near", 1)))
        | (b0 < b1 - x.avg("Far", 1))
        | (
            (b0 < b1)
            & (b1 < b2)
            & ((x.upper(0) > x.avg("ShadowShort", 0)) | (x.upper(1) > x.avg("ShadowShort", 1)))
        )
        | ((b0 < b1) & (x.upper(0) > x.avg("ShadowLong", 0)))
    )
    cond = (
        x.white(2)
        & x.white(1)
        & x.white(0)
        & advancing_three(x)
        & (b2 > x.avg("BodyLong", 2))
        & (x.upper(2) < x.avg("ShadowShort", 2))
        & weakening
    )
    return fire(cond, -100)


@pattern("CDLBREAKAWAY", period("BodyLong") + 4)
def breakaway(x: Candles) -> I32:
    h, lo = x.h, x.l
    cond = (
        (x.body(4) > x.avg("BodyLong", 4))
        & (x.color(4) == x.color(3))
        & (x.color(3) == x.color(1))
        & (x.color(1) == -x.color(0))
        & (
            (
                x.black(4)
                & x.body_gap_down(3, 4)
                & (h(2) < h(3))
                & (lo(2) < lo(3))
                & (h(1) < h(2))
                & (lo(1) < lo(2))
                & (x.c(0) > x.o(3))
                & (x.c(0) < x.c(4))
            )
            | (
                x.white(4)
                & x.body_gap_up(3, 4)
                & (h(2) > h(3))
                & (lo(2) > lo(3))
                & (h(1) > h(2))
                & (lo(1) > lo(2))
                & (x.c(0) < x.o(3))
                & (x.c(0) > x.c(4))
            )
        )
    )
    return fire(cond, x.color(0) * 100)


@pattern("CDLCONCEALBABYSWALL", period("ShadowVeryShort") + 3)
def concealing_baby_swallow(x: Candles) -> I32:
    svs3, svs2 = x.avg("ShadowVeryShort", 3), x.avg("ShadowVeryShort", 2)
    cond = (
        x.black(3)
        & x.black(2)
        & x.black(1)
        & x.black(0)
        & (x.lower(3) < svs3)
        & (x.upper(3) < svs3)
        & (x.lower(2) < svs2)
        & (x.upper(2) < svs2)
        & x.body_gap_down(1, 2)
        & (x.upper(1) > x.avg("ShadowVeryShort", 1))
        & (x.h(1) > x.c(2))
        & (x.h(0) > x.h(1))
        & (x.l(0) < x.l(1))
    )
    return fire(cond, 100)


def _star(x: Candles, middle: str, sign: int, penetration: float) -> Bool:
    """Evening (sign -1) / morning (sign +1) star, star body judged by ``middle``."""
    first = x.white(2) if sign < 0 else x.black(2)
    gap = x.body_gap_up(1, 2) if sign < 0 else x.body_gap_down(1, 2)
    last = x.black(0) if sign < 0 else x.white(0)
    if sign < 0:
        reach = x.c(0) < x.c(2) - x.body(2) * penetration
    else:
        reach = x.c(0) > x.c(2) + x.body(2) * penetration
    return (
        (x.body(2) > x.avg("BodyLong", 2))
        & first
        & (x.body(1) <= x.avg(middle, 1))
        & gap
        & (x.body(0) > x.avg("BodyShort", 0))
        & last
        & reach
    )


@pattern("CDLEVENINGDOJISTAR", period("BodyDoji", "BodyLong", "BodyShort") + 2)
def evening_doji_star(x: Candles, penetration: float = 0.3) -> I32:
    return fire(_star(x, "BodyDoji", -1, penetration), -100)


@pattern("CDLEVENINGSTAR", period("BodyShort", "BodyLong") + 2)
def evening_star(x: Candles, penetration: float = 0.3) -> I32:
    return fire(_star(x, "BodyShort", -1, penetration), -100)


@pattern("CDLMORNINGDOJISTAR", period("BodyDoji", "BodyLong", "BodyShort") + 2)
def morning_doji_star(x: Candles, penetration: float = 0.3) -> I32:
    return fire(_star(x, "BodyDoji", 1, penetration), 100)


@pattern("CDLMORNINGSTAR", period("BodyShort", "BodyLong") + 2)
def morning_star(x: Candles, penetration: float = 0.3) -> I32:
    return fire(_star(x, "BodyShort", 1, penetration), 100)
