"""The scoring code as it was before issue 17 (plain per-event Python), kept verbatim as the
reference the compiled and cached scorer in ``signals.scoring`` must equal bit for bit.

Only the tests import it (``tests/unit/test_signals_scoring_fast.py``); the rules it implements
are documented in ``signals/scoring.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from common.contracts import PatternEvent, bar_id
from common.errors import DecodeError
from signals.contract import Direction, FeatureValue, Signal
from signals.model import Model
from signals.scoring import FEATURES_USED, DirectionScore, Evidence, timeframe_ms

_DIRECTIONS: dict[int, Direction] = {1: "long", -1: "short"}


def clean_features(features: Mapping[str, Any]) -> dict[str, FeatureValue]:
    """The features scoring uses, as numbers or ``None`` (missing, NaN or warm-up)."""
    out: dict[str, FeatureValue] = {}
    for key in FEATURES_USED:
        value = features.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[key] = None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise DecodeError("feature", f"{key}={value!r} is not a number")
        else:
            out[key] = value
    return out


def _sign(value: FeatureValue) -> int:
    if value is None or value == 0:
        return 0
    return 1 if value > 0 else -1


def pattern_evidence(
    patterns: Mapping[str, int], features: Mapping[str, FeatureValue], model: Model
) -> list[Evidence]:
    """Steps 1-2: each known pattern's direction and capped contribution (unknown: ignored)."""
    p = model.params
    trend = _sign(features.get("trend"))
    htf = _sign(features.get("htf_trend"))
    out: list[Evidence] = []
    for name in sorted(patterns):
        value = patterns[name]
        spec = model.patterns.get(name)
        if spec is None or value == 0:
            continue
        c = spec.weight * spec.reliability
        if spec.kind == "indecision":
            if trend == 0:
                continue
            d = -trend
            c *= p.indecision_factor
        else:
            d = 1 if value > 0 else -1
            if trend != 0:
                goes_with_trend = d == trend
                wants_with = spec.kind == "continuation"
                c *= p.trend_with if goes_with_trend == wants_with else p.trend_against
        if htf != 0:
            c *= p.htf_with if d == htf else p.htf_against
        if abs(value) >= 200:
            c *= p.confirmed_factor
        out.append(Evidence(name, d, min(c, p.max_contribution)))
    return out


def _noisy_or(contributions: list[float]) -> float:
    miss = 1.0
    for c in contributions:
        miss *= 1.0 - c
    return 1.0 - miss


def _volume_factor(features: Mapping[str, FeatureValue], model: Model) -> float:
    ratio = features.get("volume_ratio")
    p = model.params
    if ratio is None:
        return 1.0
    if ratio >= p.volume_threshold:
        return p.volume_boost
    if ratio < p.volume_weak_threshold:
        return p.volume_weak_factor
    return 1.0


def _rsi_factor(direction: int, features: Mapping[str, FeatureValue], model: Model) -> float:
    rsi = features.get("rsi")
    p = model.params
    if rsi is None:
        return 1.0
    zone = -1 if rsi >= p.rsi_overbought else 1 if rsi <= p.rsi_oversold else 0
    if zone == 0:
        return 1.0
    return p.rsi_with if zone == direction else p.rsi_against


def raw_scores(
    patterns: Mapping[str, int], features: Mapping[str, FeatureValue], model: Model
) -> dict[int, DirectionScore]:
    """Steps 1-4 (no threshold, no cooldown) for each direction that has any evidence."""
    evidence = pattern_evidence(patterns, features, model)
    strength = {
        d: _noisy_or([e.contribution for e in evidence if e.direction == d]) for d in (1, -1)
    }
    volume = _volume_factor(features, model)
    out: dict[int, DirectionScore] = {}
    for d in (1, -1):
        voting = [e for e in evidence if e.direction == d]
        if not voting:
            continue
        s = strength[d] * (1.0 - model.params.conflict_penalty * strength[-d])
        s *= volume * _rsi_factor(d, features, model)
        s = min(1.0, max(0.0, s))
        if model.calibration is not None:  # a calibrated model: the score is a probability
            s = model.calibration(s)
        out[d] = DirectionScore(
            round(s, 4),
            tuple(e.name for e in voting),
            tuple(e.contribution for e in voting),
        )
    return out


def in_cooldown(event: PatternEvent, direction: int, model: Model) -> bool:
    """Step 6: an earlier event within the horizon already cleared the threshold this way."""
    horizon = model.params.cooldown_bars * timeframe_ms(event.bar.timeframe)
    t = event.bar.open_time
    for prior in event.recent:
        try:
            open_time = int(prior["open_time"])
            patterns = {str(k): int(v) for k, v in prior["patterns"].items()}
            features = clean_features(prior.get("features", {}))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DecodeError("recent_event", repr(e)) from e
        if not t - horizon <= open_time < t:
            continue
        prior_score = raw_scores(patterns, features, model).get(direction)
        if prior_score is not None and prior_score.score >= model.params.threshold:
            return True
    return False


def warming_up(features: Mapping[str, FeatureValue]) -> bool:
    """Every feature scoring uses is still missing: the indicators have not warmed up."""
    return all(features.get(key) is None for key in FEATURES_USED)


def score_event(
    event: PatternEvent, model: Model, name: str | None = None, *, emit_warming: bool = False
) -> list[Signal]:
    """All signals of one pattern event (long first), ``emitted_at`` unset.

    The same event, model and ``emit_warming`` always give the same list; this is the function
    both the live worker and the offline ``replay`` call (through
    ``signals.versions.ModelHistory``, which passes the configuration version's ``name`` for
    the ``model`` field; default: the model's fingerprint). An event whose features are all
    warming up gives no signal unless ``emit_warming`` (``SIGNALS_EMIT_WARMING``).
    """
    features = clean_features(event.features)
    if not emit_warming and warming_up(features):
        return []
    bar = event.bar
    out: list[Signal] = []
    for d, ds in sorted(raw_scores(event.patterns, features, model).items(), reverse=True):
        if ds.score < model.params.threshold or in_cooldown(event, d, model):
            continue
        direction = _DIRECTIONS[d]
        out.append(
            Signal(
                id=f"{bar_id(bar.exchange, bar.symbol, bar.timeframe, bar.open_time)}:{direction}",
                exchange=bar.exchange,
                symbol=bar.symbol,
                timeframe=bar.timeframe,
                open_time_ms=bar.open_time,
                direction=direction,
                score=ds.score,
                patterns={k: v for k, v in sorted(event.patterns.items()) if v != 0},
                supporting=ds.supporting,
                features=features,
                model=name or model.fingerprint,
                close=bar.close,
                contributions={
                    name: round(c, 4)
                    for name, c in zip(ds.supporting, ds.contributions, strict=True)
                },
            )
        )
    return out
