"""Every TA-Lib candlestick function, incrementally and vectorized, against TA-Lib itself.

Series are fed bar by bar through ``PatternEngine`` (all series stacked per call, as the
detector does) and each bar's value must equal ``talib.CDLxxx`` on the whole series.
"""

from __future__ import annotations

import numpy as np
import pytest
import talib

from detectors.patterns import PATTERN_NAMES, PatternEngine
from tests.unit.patterns_support import fired, generated_bars, mismatches, recorded_bars

ALL = PatternEngine()


def test_engine_covers_every_talib_candlestick_function() -> None:
    assert set(PATTERN_NAMES) == set(talib.get_function_groups()["Pattern Recognition"])
    assert len(PATTERN_NAMES) == 61


@pytest.mark.parametrize("name", PATTERN_NAMES)
def test_lookback_is_talibs(name: str) -> None:
    from talib import abstract  # noqa: PLC0415

    engine = PatternEngine([name])
    assert int(engine.lookbacks[0]) == abstract.Function(name).lookback


def test_recorded_binance_bars_match_talib() -> None:
    o, h, lo, c = recorded_bars(300)
    assert o.shape[0] >= 30
    assert mismatches(ALL, o, h, lo, c) == {}
    counts = fired(ALL, o, h, lo, c)
    assert sum(1 for v in counts.values() if v) >= 45, counts


def test_generated_series_match_talib() -> None:
    o, h, lo, c = generated_bars(np.random.default_rng(7), 64, 600)
    assert mismatches(ALL, o, h, lo, c) == {}
    counts = fired(ALL, o, h, lo, c)
    assert sum(1 for v in counts.values() if v) >= 50, counts
