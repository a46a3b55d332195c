"""Pure, deterministic scoring: one ``PatternEvent`` in, zero or one ``Signal`` per direction out.

Notation: for pattern *p* with TA-Lib value *v_p*, kind *k_p*, reliability *r_p*, weight *w_p*;
trend *T* and higher-timeframe trend *H* in {-1, 0, 1}; direction *d* in {+1 long, -1 short}.

1. Direction of a pattern: ``d_p = sign(v_p)`` for reversal and continuation patterns; for an
   indecision pattern ``d_p = -T`` (a pause hints at the end of the trend), none if ``T = 0``.
2. Contribution ``c_p = min(cap, w_p · r_p · K_p · A_p · B_p · C_p)`` with
   ``K_p`` = ``indecision_factor`` for indecision patterns else 1;
   trend context ``A_p`` = ``trend_with`` when a reversal goes against T or a continuation goes
   with T, ``trend_against`` in the opposite cases, 1 when T = 0 or the pattern is indecision;
   ``B_p`` = ``htf_with`` if ``d_p = H``, ``htf_against`` if ``d_p = -H``, else 1;
   ``C_p`` = ``confirmed_factor`` if ``|v_p| >= 200`` else 1.
3. Agreement (noisy-OR): ``E_d = 1 - Π_{p: d_p = d} (1 - c_p)`` — each agreeing pattern raises it.
4. ``score_d = clip01(E_d · (1 - conflict_penalty · E_{-d}) · V · R_d)``, rounded to 4 places,
   where volume ``V`` = ``volume_boost`` if volume_ratio >= ``volume_threshold``,
   ``volume_weak_factor`` if below ``volume_weak_threshold``, else 1; RSI ``R_d`` =
   ``rsi_with`` for long at RSI <= oversold / short at RSI >= overbought, ``rsi_against`` for
   the reverse, else 1. A missing (``None``) feature makes its factor 1.
5. Emit direction *d* iff ``score_d >= threshold``, it is not in cooldown and the event's
   features are not all warming up (every used feature ``None``; ``emit_warming`` lifts this).
6. Cooldown, non-recursive: *d* is suppressed if any event in ``event.recent`` with open time in
   ``[t - cooldown_bars · tf, t)`` has an *uncooled* score (steps 1-4 on that event's own
   patterns and features; a feature the ``recent`` entry does not carry counts as missing)
   ``>= threshold`` in direction *d*. Whether that earlier event was itself suppressed does
   not matter, so the rule needs nothing but this one event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.contracts import PatternEvent, bar_id
from common.errors import ConfigError, DecodeError
from detectors.timeframes import parse_timeframe
from signals.contract import Direction, FeatureValue, Signal
from signals.model import Model

FEATURES_USED: tuple[str, ...] = ("volume_ratio", "trend", "htf_trend", "rsi")
_DIRECTIONS: dict[int, Direction] = {1: "long", -1: "short"}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One pattern's vote: its direction (+1/-1) and contribution ``c_p``."""

    name: str
    direction: int
    contribution: float


@dataclass(frozen=True, slots=True)
class DirectionScore:
    """Uncooled score of one direction, the patterns that voted for it and their ``c_p``."""

    score: float
    supporting: tuple[str, ...]
    contributions: tuple[float, ...] = ()


def timeframe_ms(timeframe: str) -> int:
    """``"5m"`` -> 300000 (the detectors' parser). Raises ``DecodeError`` if unknown."""
    try:
        return parse_timeframe(timeframe, "timeframe").ms
    except ConfigError as e:
        raise DecodeError("timeframe", str(e)) from e


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
