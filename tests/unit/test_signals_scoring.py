"""One test per scoring rule (see the formula in signals/scoring.py), plus the pattern table."""

from __future__ import annotations

from dataclasses import replace

import pytest
import talib

from common.errors import DecodeError
from signals.model import DEFAULT_PATTERNS, Model, ScoringParams
from signals.scoring import pattern_evidence, raw_scores, score_event, timeframe_ms
from tests.signals_factory import MINUTE, T0, make_event

MODEL = Model()
# A model that emits everything, so a rule's effect is visible on the score itself.
OPEN = Model(params=replace(ScoringParams(), threshold=0.0, cooldown_bars=0))


def score(patterns: dict[str, int], direction: str = "long", **features: float | None) -> float:
    signals = {s.direction: s for s in score_event(make_event(patterns, **features), OPEN)}
    return signals[direction].score


def test_table_covers_exactly_the_talib_patterns() -> None:
    assert set(DEFAULT_PATTERNS) == set(talib.get_function_groups()["Pattern Recognition"])
    assert len(DEFAULT_PATTERNS) == 61
    assert all(0 < s.reliability < 1 for s in DEFAULT_PATTERNS.values())


def test_rule_direction_is_the_talib_sign() -> None:
    assert [s.direction for s in score_event(make_event({"CDLENGULFING": 100}), OPEN)] == ["long"]
    assert [s.direction for s in score_event(make_event({"CDLENGULFING": -100}), OPEN)] == ["short"]


def test_rule_reliability_prior_times_weight_is_the_base_contribution() -> None:
    assert score({"CDL3BLACKCROWS": -100}, "short") == 0.78
    assert score({"CDLBELTHOLD": -100}, "short") == 0.5
    heavy = Model(
        {**DEFAULT_PATTERNS, "CDLBELTHOLD": replace(DEFAULT_PATTERNS["CDLBELTHOLD"], weight=1.5)},
        OPEN.params,
    )
    assert score_event(make_event({"CDLBELTHOLD": -100}), heavy)[0].score == 0.75


def test_rule_indecision_points_against_the_trend_and_is_ignored_when_flat() -> None:
    # CDLGRAVESTONEDOJI is always +100 in TA-Lib; after an uptrend it hints at a top.
    up = score_event(make_event({"CDLGRAVESTONEDOJI": 100}, trend=1), OPEN)
    assert [(s.direction, s.score) for s in up] == [("short", round(0.45 * 0.5, 4))]
    assert score_event(make_event({"CDLGRAVESTONEDOJI": 100}, trend=0), OPEN) == []


def test_rule_trend_context_reversal_against_and_continuation_with() -> None:
    flat = score({"CDLHAMMER": 100})
    assert score({"CDLHAMMER": 100}, trend=-1) == round(flat * 1.25, 4)  # reversal at a bottom
    assert score({"CDLHAMMER": 100}, trend=1) == round(flat * 0.75, 4)
    cont = score({"CDLRISEFALL3METHODS": 100})
    assert score({"CDLRISEFALL3METHODS": 100}, trend=1) == round(cont * 1.25, 4)
    assert score({"CDLRISEFALL3METHODS": 100}, trend=-1) == round(cont * 0.75, 4)


def test_rule_higher_timeframe_trend_counts() -> None:
    flat = score({"CDLHAMMER": 100})
    assert score({"CDLHAMMER": 100}, htf_trend=1) == round(flat * 1.15, 4)
    assert score({"CDLHAMMER": 100}, htf_trend=-1) == round(flat * 0.85, 4)


def test_rule_confirmed_value_200_counts_more() -> None:
    assert score({"CDLHIKKAKE": 200}) == round(score({"CDLHIKKAKE": 100}) * 1.2, 4)


def test_rule_agreement_combines_as_noisy_or() -> None:
    both = score({"CDLHAMMER": 100, "CDLENGULFING": 100})
    assert both == round(1 - (1 - 0.60) * (1 - 0.63), 4)
    assert both > max(score({"CDLHAMMER": 100}), score({"CDLENGULFING": 100}))


def test_rule_conflict_reduces_both_directions() -> None:
    event = make_event({"CDLHAMMER": 100, "CDLSHOOTINGSTAR": -100})
    by_dir = {s.direction: s.score for s in score_event(event, OPEN)}
    assert by_dir["long"] == round(0.60 * (1 - 0.8 * 0.58), 4)
    assert by_dir["short"] == round(0.58 * (1 - 0.8 * 0.60), 4)


def test_rule_volume_confirmation() -> None:
    base = score({"CDLHAMMER": 100})
    assert score({"CDLHAMMER": 100}, volume_ratio=1.5) == round(base * 1.2, 4)
    assert score({"CDLHAMMER": 100}, volume_ratio=0.5) == round(base * 0.85, 4)
    assert score({"CDLHAMMER": 100}, volume_ratio=None) == base


def test_rule_rsi_extremes() -> None:
    base = score({"CDLHAMMER": 100})
    assert score({"CDLHAMMER": 100}, rsi=25.0) == round(base * 1.2, 4)  # long when oversold
    assert score({"CDLHAMMER": 100}, rsi=75.0) == round(base * 0.8, 4)
    assert score({"CDLSHOOTINGSTAR": -100}, "short", rsi=75.0) == round(0.58 * 1.2, 4)
    assert score({"CDLHAMMER": 100}, rsi=None) == base


def test_rule_score_is_clipped_to_one() -> None:
    patterns = {"CDLENGULFING": 100, "CDLMORNINGSTAR": 100, "CDL3WHITESOLDIERS": 100}
    assert score(patterns, trend=-1, htf_trend=1, volume_ratio=3.0, rsi=10.0) == 1.0


def test_rule_threshold_drops_weak_signals() -> None:
    assert score_event(make_event({"CDLHAMMER": 100}), MODEL) == []  # 0.60 < 0.65
    assert len(score_event(make_event({"CDLHAMMER": 100}, trend=-1), MODEL)) == 1  # 0.75


def _prior(open_time: int, patterns: dict[str, int], **features: float) -> dict[str, object]:
    return {"open_time": open_time, "patterns": patterns, "features": {"trend": -1, **features}}


def test_rule_cooldown_suppresses_a_repeat_in_the_same_direction() -> None:
    hammer = {"CDLHAMMER": 100}
    fired = _prior(T0 - 2 * MINUTE, hammer)  # scored 0.75 >= threshold, 2 bars ago
    assert score_event(make_event(hammer, trend=-1, recent=[fired]), MODEL) == []
    too_old = _prior(T0 - 4 * MINUTE, hammer)  # outside cooldown_bars = 3
    assert len(score_event(make_event(hammer, trend=-1, recent=[too_old]), MODEL)) == 1
    weak = _prior(T0 - MINUTE, hammer, volume_ratio=0.5, rsi=80.0)  # scored below threshold
    assert len(score_event(make_event(hammer, trend=-1, recent=[weak]), MODEL)) == 1
    other_way = _prior(T0 - MINUTE, {"CDLSHOOTINGSTAR": -100}, trend=1)
    assert len(score_event(make_event(hammer, trend=-1, recent=[other_way]), MODEL)) == 1


def test_rule_cooldown_is_not_recursive() -> None:
    # Bar -1 would itself be cooled down by bar -2; it still suppresses bar 0.
    hammer = {"CDLHAMMER": 100}
    recent = [_prior(T0 - 2 * MINUTE, hammer), _prior(T0 - MINUTE, hammer)]
    assert score_event(make_event(hammer, trend=-1, recent=recent), MODEL) == []
    assert score_event(make_event(hammer, trend=-1, recent=recent[1:]), MODEL) == []


def test_at_most_one_signal_per_direction_with_deterministic_ids() -> None:
    event = make_event({"CDLHAMMER": 100, "CDLENGULFING": 100, "CDLSHOOTINGSTAR": -100})
    signals = score_event(event, OPEN)
    assert [s.id for s in signals] == [
        "binance:BTCUSDT:1m:1723161240000:long",
        "binance:BTCUSDT:1m:1723161240000:short",
    ]
    assert signals == score_event(event, OPEN)


def test_unknown_patterns_and_zero_values_are_ignored() -> None:
    assert pattern_evidence({"CDLNOTAPATTERN": 100, "CDLHAMMER": 0}, {}, MODEL) == []
    assert raw_scores({"CDLNOTAPATTERN": 100}, {}, MODEL) == {}


def test_bad_inputs_raise_decode_error() -> None:
    with pytest.raises(DecodeError):
        score_event(make_event({"CDLHAMMER": 100}, timeframe="1x", trend=-1), MODEL)
    with pytest.raises(DecodeError):
        score_event(make_event({"CDLHAMMER": 100}, trend=-1, recent=[{"patterns": {}}]), MODEL)
    assert timeframe_ms("4h") == 4 * 3_600_000
