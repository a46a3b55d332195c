"""Every TA-Lib candlestick function, incrementally and vectorized, against TA-Lib itself.

Series are fed bar by bar through ``PatternDetector`` (all series stacked per call, as the
detector does) and each bar's value must equal ``talib.CDLxxx`` on the whole series:
real Binance trades bucketed into bars, integer-tick random walks (dojis, one-trade bars,
ties, gaps), templates of the rare patterns, and price levels that make TA-Lib's running
sums drift from fresh window sums.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import talib
from talib import abstract

from detectors.patterns import PATTERN_NAMES, PatternDetector
from detectors.patterns.candles import HIGHLOW, SETTINGS
from tests.patterns_support import (
    F64,
    drifting_bars,
    engine_outputs,
    generated_bars,
    recorded_bars,
    recorded_series,
    talib_outputs,
    templated_bars,
)

ALL = PatternDetector()


def assert_exact(o: F64, h: F64, lo: F64, c: F64) -> None:
    """Zero mismatches on every (series, bar, pattern); record what fired."""
    got = engine_outputs(ALL, o, h, lo, c)
    want = talib_outputs(ALL.names, o, h, lo, c)
    bad = {n: int(v) for n, v in zip(ALL.names, (got != want).sum(axis=(0, 1)), strict=True) if v}
    assert bad == {}, f"mismatching cells per pattern: {bad}"


def test_engine_covers_every_talib_candlestick_function() -> None:
    assert set(PATTERN_NAMES) == set(talib.get_function_groups()["Pattern Recognition"])
    assert len(PATTERN_NAMES) == 61


@pytest.mark.parametrize("name", PATTERN_NAMES)
def test_lookback_is_talibs(name: str) -> None:
    engine = PatternDetector([name])
    assert int(engine.lookbacks[0]) == abstract.Function(name).lookback


def test_recorded_binance_bars_match_talib() -> None:
    """Chunks of 200 bars (many series per call) from the recorded BTC/ETH trades."""
    o, h, lo, c = recorded_bars(200)
    assert o.shape[0] >= 30
    assert_exact(o, h, lo, c)


@pytest.mark.parametrize(("label", "bars"), recorded_series())
def test_whole_recorded_series_match_talib(label: str, bars: tuple[F64, F64, F64, F64]) -> None:
    """Each bucket kind's whole BTC and ETH series, from their first bar."""
    assert bars[0].shape[0] == 2, label
    assert_exact(*bars)


@pytest.mark.parametrize("seed", [7, 8])
def test_generated_random_walks_match_talib(seed: int) -> None:
    assert_exact(*generated_bars(np.random.default_rng(seed), 64, 600))


@pytest.mark.parametrize("seed", [1, 2])
def test_rare_pattern_templates_match_talib(seed: int) -> None:
    assert_exact(*templated_bars(np.random.default_rng(seed), 64, 600))


def test_drifting_running_sums_match_talib() -> None:
    o, h, lo, c = drifting_bars(np.random.default_rng(1), 64, 600)
    # The data is sensitive: a doji judged with a fresh 10-bar sum disagrees with TA-Lib.
    flips = 0
    for s in range(o.shape[0]):
        hl, body = h[s] - lo[s], np.abs(c[s] - o[s])
        fresh = np.array([sum(hl[i - 10 : i].tolist(), 0.0) for i in range(10, o.shape[1])])
        naive = np.where(body[10:] <= 0.1 * (fresh / 10), 100, 0)
        flips += int((naive != talib.CDLDOJI(o[s], h[s], lo[s], c[s])[10:]).sum())
    assert flips > 0
    assert_exact(o, h, lo, c)


def test_every_pattern_fires_in_the_data_above() -> None:
    """The data sets compared above exercise each pattern, with each of its values."""
    datasets = [
        recorded_bars(200),
        *(generated_bars(np.random.default_rng(seed), 64, 600) for seed in (7, 8)),
        *(templated_bars(np.random.default_rng(seed), 64, 600) for seed in (1, 2)),
        drifting_bars(np.random.default_rng(1), 64, 600),
    ]
    fired: Counter[str] = Counter()
    values: dict[str, set[int]] = {n: set() for n in PATTERN_NAMES}
    for bars in datasets:
        want = talib_outputs(ALL.names, *bars)
        for p, name in enumerate(ALL.names):
            fired[name] += int((want[:, :, p] != 0).sum())
            values[name].update(int(v) for v in np.unique(want[:, :, p]))
    quiet = {n: fired[n] for n in PATTERN_NAMES if fired[n] < 50}
    assert quiet == {}, f"patterns that fired fewer than 50 times: {quiet}"
    assert {-200, -100, 100, 200} <= values["CDLHIKKAKE"]
    assert {-200, -100, 100, 200} <= values["CDLHIKKAKEMOD"]
    for name in ("CDLENGULFING", "CDLHARAMI", "CDLHARAMICROSS"):
        assert {-100, -80, 80, 100} <= values[name], name


def test_the_wheel_runs_tas_default_candle_settings() -> None:
    """Our settings table, pushed into TA-Lib explicitly, changes nothing (so the wheel
    runs these values), while a different value visibly changes TA-Lib's answers."""
    from talib import _ta_lib as ta  # noqa: PLC0415 - private API of the wheel, test only

    o, h, lo, c = generated_bars(np.random.default_rng(3), 8, 300)
    baseline = talib_outputs(ALL.names, o, h, lo, c)
    kinds = ta.CandleSettingType
    try:
        for name, s in SETTINGS.items():
            ta._ta_set_candle_settings(getattr(kinds, name), s.range_type, s.avg_period, s.factor)
        assert (talib_outputs(ALL.names, o, h, lo, c) == baseline).all()
        ta._ta_set_candle_settings(kinds.BodyDoji, HIGHLOW, 10, 0.2)
        assert (talib_outputs(ALL.names, o, h, lo, c) != baseline).any()
    finally:
        ta._ta_restore_candle_default_settings(kinds.AllCandleSettings)
    assert (talib_outputs(ALL.names, o, h, lo, c) == baseline).all()
