"""One-candle TA-Lib patterns (some also compare with the previous bar).

Each kernel mirrors its ``ta_CDLxxx.c`` condition term by term, with the same
comparison operators and the same floating-point expression order.
"""

from __future__ import annotations

from detectors.patterns.candles import I32, Bool, Candles
from detectors.patterns.define import Registry, fire, period

REGISTRY = Registry()
pattern = REGISTRY.pattern


@pattern("CDLBELTHOLD", period("BodyLong", "ShadowVeryShort"))
def belt_hold(x: Candles) -> I32:
    svs = x.avg("ShadowVeryShort", 0)
    cond = (x.body(0) > x.avg("BodyLong", 0)) & (
        (x.white(0) & (x.lower(0) < svs)) | (x.black(0) & (x.upper(0) < svs))
    )
    return fire(cond, x.color(0) * 100)


@pattern("CDLCLOSINGMARUBOZU", period("BodyLong", "ShadowVeryShort"))
def closing_marubozu(x: Candles) -> I32:
    svs = x.avg("ShadowVeryShort", 0)
    cond = (x.body(0) > x.avg("BodyLong", 0)) & (
        (x.white(0) & (x.upper(0) < svs)) | (x.black(0) & (x.lower(0) < svs))
    )
    return fire(cond, x.color(0) * 100)


@pattern("CDLDOJI", period("BodyDoji"))
def doji(x: Candles) -> I32:
    return fire(x.body(0) <= x.avg("BodyDoji", 0), 100)


@pattern("CDLDRAGONFLYDOJI", period("BodyDoji", "ShadowVeryShort"))
def dragonfly_doji(x: Candles) -> I32:
    svs = x.avg("ShadowVeryShort", 0)
    cond = (x.body(0) <= x.avg("BodyDoji", 0)) & (x.upper(0) < svs) & (x.lower(0) > svs)
    return fire(cond, 100)


@pattern("CDLGRAVESTONEDOJI", period("BodyDoji", "ShadowVeryShort"))
def gravestone_doji(x: Candles) -> I32:
    svs = x.avg("ShadowVeryShort", 0)
    cond = (x.body(0) <= x.avg("BodyDoji", 0)) & (x.lower(0) < svs) & (x.upper(0) > svs)
    return fire(cond, 100)


def _small_body_long_lower(x: Candles) -> Bool:
    """Hammer / hanging man shape: small body, long lower, very short upper shadow."""
    return (
        (x.body(0) < x.avg("BodyShort", 0))
        & (x.lower(0) > x.avg("ShadowLong", 0))
        & (x.upper(0) < x.avg("ShadowVeryShort", 0))
    )


@pattern("CDLHAMMER", period("BodyShort", "ShadowLong", "ShadowVeryShort", "Near") + 1)
def hammer(x: Candles) -> I32:
    cond = _small_body_long_lower(x) & (x.bottom(0) <= x.l(1) + x.avg("Near", 1))
    return fire(cond, 100)


@pattern("CDLHANGINGMAN", period("BodyShort", "ShadowLong", "ShadowVeryShort", "Near") + 1)
def hanging_man(x: Candles) -> I32:
    cond = _small_body_long_lower(x) & (x.bottom(0) >= x.h(1) - x.avg("Near", 1))
    return fire(cond, -100)


@pattern("CDLHIGHWAVE", period("BodyShort", "ShadowVeryLong"))
def high_wave(x: Candles) -> I32:
    svl = x.avg("ShadowVeryLong", 0)
    cond = (x.body(0) < x.avg("BodyShort", 0)) & (x.upper(0) > svl) & (x.lower(0) > svl)
    return fire(cond, x.color(0) * 100)


def _small_body_long_upper(x: Candles) -> Bool:
    """Inverted hammer / shooting star shape, gapping away from the previous body."""
    return (
        (x.body(0) < x.avg("BodyShort", 0))
        & (x.upper(0) > x.avg("ShadowLong", 0))
        & (x.lower(0) < x.avg("ShadowVeryShort", 0))
    )


@pattern("CDLINVERTEDHAMMER", period("BodyShort", "ShadowLong", "ShadowVeryShort") + 1)
def inverted_hammer(x: Candles) -> I32:
    return fire(_small_body_long_upper(x) & x.body_gap_down(0, 1), 100)


@pattern("CDLSHOOTINGSTAR", period("BodyShort", "ShadowLong", "ShadowVeryShort") + 1)
def shooting_star(x: Candles) -> I32:
    return fire(_small_body_long_upper(x) & x.body_gap_up(0, 1), -100)


@pattern("CDLLONGLEGGEDDOJI", period("BodyDoji", "ShadowLong"))
def long_legged_doji(x: Candles) -> I32:
    sl = x.avg("ShadowLong", 0)
    cond = (x.body(0) <= x.avg("BodyDoji", 0)) & ((x.lower(0) > sl) | (x.upper(0) > sl))
    return fire(cond, 100)


@pattern("CDLLONGLINE", period("BodyLong", "ShadowShort"))
def long_line(x: Candles) -> I32:
    ss = x.avg("ShadowShort", 0)
    cond = (x.body(0) > x.avg("BodyLong", 0)) & (x.upper(0) < ss) & (x.lower(0) < ss)
    return fire(cond, x.color(0) * 100)


@pattern("CDLMARUBOZU", period("BodyLong", "ShadowVeryShort"))
def marubozu(x: Candles) -> I32:
    svs = x.avg("ShadowVeryShort", 0)
    cond = (x.body(0) > x.avg("BodyLong", 0)) & (x.upper(0) < svs) & (x.lower(0) < svs)
    return fire(cond, x.color(0) * 100)


@pattern("CDLRICKSHAWMAN", period("BodyDoji", "ShadowLong", "Near"))
def rickshaw_man(x: Candles) -> I32:
    sl = x.avg("ShadowLong", 0)
    near = x.avg("Near", 0)
    mid = x.l(0) + x.hl(0) / 2  # inLow[i] + TA_HIGHLOWRANGE(i) / 2, then +/- near
    cond = (
        (x.body(0) <= x.avg("BodyDoji", 0))
        & (x.lower(0) > sl)
        & (x.upper(0) > sl)
        & (x.bottom(0) <= mid + near)
        & (x.top(0) >= mid - near)
    )
    return fire(cond, 100)


@pattern("CDLSHORTLINE", period("BodyShort", "ShadowShort"))
def short_line(x: Candles) -> I32:
    ss = x.avg("ShadowShort", 0)
    cond = (x.body(0) < x.avg("BodyShort", 0)) & (x.upper(0) < ss) & (x.lower(0) < ss)
    return fire(cond, x.color(0) * 100)


@pattern("CDLSPINNINGTOP", period("BodyShort"))
def spinning_top(x: Candles) -> I32:
    b = x.body(0)
    cond = (b < x.avg("BodyShort", 0)) & (x.upper(0) > b) & (x.lower(0) > b)
    return fire(cond, x.color(0) * 100)


@pattern("CDLTAKURI", period("BodyDoji", "ShadowVeryShort", "ShadowVeryLong"))
def takuri(x: Candles) -> I32:
    cond = (
        (x.body(0) <= x.avg("BodyDoji", 0))
        & (x.upper(0) < x.avg("ShadowVeryShort", 0))
        & (x.lower(0) > x.avg("ShadowVeryLong", 0))
    )
    return fire(cond, 100)
