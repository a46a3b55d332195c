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

How it runs (issue 17: the stage's CPU per event): steps 1-2 depend on a pattern only through
its name, the sign of *v_p*, whether ``|v_p| >= 200``, and the signs of *T* and *H*, so each
model's ``ModelScorer`` tabulates every pattern's vote for the 4 x 9 combinations once. Steps
1-4 as a whole depend on the event only through its sorted patterns, the signs of *T* and *H*,
*V* and the RSI zone, so their result is memoized under exactly that key in one bounded LRU
cache (``RAW_CACHE_SIZE`` entries, shared by every model). Step 6 reads each ``recent`` entry
again in the next ``cooldown_bars`` events of its series, so an entry's decoded open time and
scores are memoized by its content too (``PRIOR_CACHE_SIZE``; ``ModelScorer.prior`` says why a
hit can skip nothing a miss would raise): by its JSON document where it comes as one (a
``patterns`` v3 entry; each scored event is remembered under the document the detectors will
write for it, so the document is never parsed), else by its decoded values. The arithmetic is
the same operations in the same order as the rules above, so the scores are bit for bit those
of the plain per-event code (``tests/signals_reference.py``), whatever the caches hold. Both
full take ~14 MiB (measured with random 1-4 pattern entries).
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from common.contracts import RECENT_FEATURES, PatternEvent, bar_id
from common.errors import ConfigError, DecodeError
from detectors.timeframes import parse_timeframe
from signals.contract import SIGNALS_VERSION, Direction, FeatureValue, Signal
from signals.model import Model, PatternSpec, ScoringParams

# What scoring reads of an event's features, in the order a signal lists them: exactly what
# the detectors put in each ``recent`` entry (``common.contracts.RECENT_FEATURES``).
FEATURES_USED: tuple[str, ...] = RECENT_FEATURES
RAW_CACHE_SIZE = 8_192  # memoized steps 1-4 results, all models together (~1.2 kB each)
PRIOR_CACHE_SIZE = 8_192  # memoized ``recent`` entries, all models together (~0.6 kB each)
_NO_FEATURES: Mapping[str, Any] = {}
_CONTEXT_FEATURES = ("volume_ratio", "trend", "htf_trend", "rsi")  # ``contexts``' columns
_SIGNS = (-1, 0, 1)
# The representative TA-Lib value of each value class, in class order (see ``_value_class``).
_CLASS_VALUES = (-100, 100, -200, 200)

Vote = tuple[int, float]  # (direction d_p, capped contribution c_p)
PatternItems = tuple[tuple[str, int], ...]  # an event's patterns, sorted by name


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


RawScores = tuple[DirectionScore | None, DirectionScore | None]  # (long, short)
Rounded = tuple[tuple[str, float], ...]  # (pattern, c_p rounded to 4 places), a signal's own


class Scored(NamedTuple):
    """Steps 1-4 of one (patterns, context), with what a signal copies from them, computed
    once per cache entry rather than once per signal."""

    long: DirectionScore | None
    short: DirectionScore | None
    fired: tuple[tuple[str, int], ...]  # the nonzero patterns, sorted: a signal's ``patterns``
    long_contributions: Rounded
    short_contributions: Rounded


# What steps 1-4 read of the features: sign of T, sign of H, V, RSI zone (see ``context``).
Context = tuple[int, int, float, int]


@functools.lru_cache(maxsize=256)
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
        if value is None:
            out[key] = None
        elif isinstance(value, float):
            out[key] = None if math.isnan(value) else value
        elif isinstance(value, int) and not isinstance(value, bool):
            out[key] = value
        else:
            raise DecodeError("feature", f"{key}={value!r} is not a number")
    return out


def feature_dict(features: dict[str, FeatureValue] | list[FeatureValue]) -> dict[str, FeatureValue]:
    """``clean_features`` as a dict, given as one or as its values in ``FEATURES_USED`` order."""
    if isinstance(features, dict):
        return features
    return dict(zip(FEATURES_USED, features, strict=True))


def warming_up(features: Mapping[str, FeatureValue]) -> bool:
    """Every feature scoring uses is still missing: the indicators have not warmed up."""
    return all(features.get(key) is None for key in FEATURES_USED)


def _signs(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """``_sign`` of each value (NaN: 0)."""
    signs = np.sign(values)
    signs[np.isnan(values)] = 0
    return signs.astype(np.int64)


def _sign(value: FeatureValue) -> int:
    if value is None or value == 0:
        return 0
    return 1 if value > 0 else -1


def _value_class(value: int) -> int:
    """0..3: bearish, bullish, confirmed bearish, confirmed bullish (``|v| >= 200``)."""
    return (value > 0) | ((abs(value) >= 200) << 1)


def pattern_vote(
    spec: PatternSpec, value: int, trend: int, htf: int, p: ScoringParams
) -> Vote | None:
    """Steps 1-2 for one pattern with a nonzero value: ``(d_p, c_p)``, or None (no vote)."""
    c = spec.weight * spec.reliability
    if spec.kind == "indecision":
        if trend == 0:
            return None
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
    return d, min(c, p.max_contribution)


def _noisy_or(contributions: list[float]) -> float:
    miss = 1.0
    for c in contributions:
        miss *= 1.0 - c
    return 1.0 - miss


class ModelScorer:
    """One model compiled for scoring: its vote tables and the rule knobs, read once.

    ``scorer_of(model)`` builds it on first use and keeps it on the (immutable) model.
    """

    def __init__(self, model: Model) -> None:
        p = model.params
        self.model = model
        self.params = p
        self.threshold = p.threshold
        # votes[(T, H)][name][value class]: steps 1-2 for every pattern in every context.
        self.votes: dict[tuple[int, int], dict[str, tuple[Vote | None, ...]]] = {
            (t, h): {
                name: tuple(pattern_vote(spec, v, t, h, p) for v in _CLASS_VALUES)
                for name, spec in model.patterns.items()
            }
            for t in _SIGNS
            for h in _SIGNS
        }

    def context(self, features: Mapping[str, FeatureValue]) -> Context:
        """What steps 1-4 read of the features: sign of T, sign of H, V and the RSI zone
        (-1 overbought, +1 oversold, 0 neither or missing)."""
        p = self.params
        ratio = features.get("volume_ratio")
        if ratio is None:
            volume = 1.0
        elif ratio >= p.volume_threshold:
            volume = p.volume_boost
        elif ratio < p.volume_weak_threshold:
            volume = p.volume_weak_factor
        else:
            volume = 1.0
        rsi = features.get("rsi")
        zone = (
            0
            if rsi is None
            else -1
            if rsi >= p.rsi_overbought
            else 1
            if rsi <= p.rsi_oversold
            else 0
        )
        return _sign(features.get("trend")), _sign(features.get("htf_trend")), volume, zone

    def contexts(self, used: npt.NDArray[np.float64]) -> list[Context]:
        """``context`` of many events at once, column-wise: ``used`` holds their
        ``FEATURES_USED`` values, one column each in that order (NaN: ``None``). The same
        comparisons on the same float64 values, so the same tuples."""
        p = self.params
        ratio, trend, htf, rsi = (used[:, FEATURES_USED.index(k)] for k in _CONTEXT_FEATURES)
        volume = np.where(
            ratio >= p.volume_threshold,
            p.volume_boost,
            np.where(ratio < p.volume_weak_threshold, p.volume_weak_factor, 1.0),
        )
        volume[np.isnan(ratio)] = 1.0
        zone = np.where(rsi >= p.rsi_overbought, -1, np.where(rsi <= p.rsi_oversold, 1, 0))
        zone[np.isnan(rsi)] = 0
        return list(
            zip(
                _signs(trend).tolist(),
                _signs(htf).tolist(),
                volume.astype(np.float64).tolist(),
                zone.astype(np.int64).tolist(),
                strict=True,
            )
        )

    def evidence(self, items: PatternItems, trend: int, htf: int) -> list[Evidence]:
        """Steps 1-2 over an event's sorted patterns (unknown or zero: ignored)."""
        votes = self.votes[(trend, htf)]
        out: list[Evidence] = []
        for name, value in items:
            options = votes.get(name)
            if options is None or value == 0:
                continue
            vote = options[_value_class(value)]
            if vote is not None:
                out.append(Evidence(name, vote[0], vote[1]))
        return out

    def raw(self, items: PatternItems, context: Context) -> Scored:
        """Steps 1-4, memoized: the (long, short) uncooled scores (None: no evidence)."""
        return _cached_raw(self, items, context)

    def compute_raw(self, items: PatternItems, context: Context) -> Scored:
        """Steps 1-4 computed (what ``raw`` memoizes)."""
        p = self.params
        trend, htf, volume, zone = context
        evidence = self.evidence(items, trend, htf)
        strength = {
            d: _noisy_or([e.contribution for e in evidence if e.direction == d]) for d in (1, -1)
        }
        out: list[DirectionScore | None] = []
        for d in (1, -1):
            voting = [e for e in evidence if e.direction == d]
            if not voting:
                out.append(None)
                continue
            rsi = 1.0 if zone == 0 else p.rsi_with if zone == d else p.rsi_against
            s = strength[d] * (1.0 - p.conflict_penalty * strength[-d])
            s *= volume * rsi
            s = min(1.0, max(0.0, s))
            if self.model.calibration is not None:  # a calibrated model: a probability
                s = self.model.calibration(s)
            out.append(
                DirectionScore(
                    round(s, 4),
                    tuple(e.name for e in voting),
                    tuple(e.contribution for e in voting),
                )
            )
        long, short = out
        return Scored(
            long,
            short,
            tuple((k, v) for k, v in items if v != 0),
            _rounded(long),
            _rounded(short),
        )

    def in_cooldown(
        self, timeframe: str, open_time: int, recent: Sequence[Any], direction: int
    ) -> bool:
        """Step 6: an earlier event of the bar's ``recent`` list within the horizon already
        cleared the threshold this way."""
        horizon = self.params.cooldown_bars * timeframe_ms(timeframe)
        t = open_time
        for prior in recent:
            open_time, scored = self.prior(prior)
            if not t - horizon <= open_time < t:
                continue
            prior_score = scored.long if direction == 1 else scored.short
            if prior_score is not None and prior_score.score >= self.threshold:
                return True
        return False

    def prior(self, prior: Mapping[str, Any] | bytes) -> tuple[int, Scored]:
        """A ``recent`` entry's open time and uncooled scores (``DecodeError`` if malformed):
        a decoded entry, or its JSON document (a ``patterns`` v3 entry's, parsed only here).

        Memoized by the entry's content (``PRIOR_CACHE_SIZE`` entries, oldest out first), since
        the same entry comes back in the next ``cooldown_bars`` events of its series. A
        document's key is its bytes. A decoded entry's is what ``decode_prior`` reads, as
        found, plus the types of the features (``True == 1``, but a bool feature must fail).
        Equal keys decode equally, so a hit skips nothing a miss would have raised. An entry
        that has no such key (malformed, unhashable) is decoded afresh and raises exactly what
        it always raised."""
        if isinstance(prior, bytes):
            found = _PRIORS.get((self, prior))
            if found is None:
                found = self.score_prior(parse_prior(prior))
                _memo_prior((self, prior), found)
            return found
        try:
            key = self._prior_key(
                prior["open_time"],
                tuple(prior["patterns"].items()),
                prior.get("features", _NO_FEATURES),
            )
            found = _PRIORS.get(key)
        except (KeyError, TypeError, AttributeError):
            return self.score_prior(prior)
        if found is None:
            found = self.score_prior(prior)
            _memo_prior(key, found)
        return found

    def remember(
        self,
        open_time: int,
        patterns: PatternItems,
        features: dict[str, FeatureValue] | list[FeatureValue],
        scored: Scored,
        *,
        documents: bool = False,
        document: bytes | None = None,
    ) -> None:
        """Memoize a scored event as ``prior`` would its ``recent`` entry: the detectors write
        that entry from the same bar, patterns (in the same order) and features, so the next
        events of the series find it without decoding it. ``documents``: the entry will come
        as its JSON document, ``document`` (``common.columns.recent_documents`` of the event:
        the key; None, as for an infinite feature, remembers nothing), else decoded. Only a
        key ``prior`` builds the same way can hit, and equal keys decode equally, so this
        changes no result."""
        if documents:
            if document is None:
                return
            key: tuple[Any, ...] = (self, document)
        else:
            key = self._prior_key(open_time, patterns, feature_dict(features))
        if key not in _PRIORS:
            _memo_prior(key, (open_time, scored))

    def _prior_key(
        self, open_time: Any, patterns: tuple[Any, ...], features: Mapping[str, Any]
    ) -> tuple[Any, ...]:
        """The memo key of a ``recent`` entry (``prior``) or of a scored event (``remember``),
        one function so both build it alike: what ``decode_prior`` reads, as found, and the
        types of the used features."""
        used = tuple(map(features.get, FEATURES_USED))
        return (self, open_time, patterns, used, tuple(map(type, used)))

    def score_prior(self, prior: Mapping[str, Any]) -> tuple[int, Scored]:
        """``prior`` computed (what it memoizes)."""
        open_time, items, features = decode_prior(prior)
        return open_time, self.raw(items, self.context(features))

    def score(
        self,
        event: PatternEvent,
        name: str | None = None,
        *,
        emit_warming: bool = False,
        emitted_at: str | None = None,
    ) -> list[Signal]:
        """``score_event`` with this model; the signals carry ``emitted_at`` (the live worker
        stamps them as they are built, instead of copying each one to stamp it)."""
        features = clean_features(event.features)
        if not emit_warming and warming_up(features):
            return []
        bar = event.bar
        return self.signals(
            (bar.exchange, bar.symbol, bar.timeframe),
            bar.open_time,
            bar.close,
            tuple(event.patterns.items()),
            features,
            recent=event.recent,
            name=name,
            emitted_at=emitted_at,
        )

    def signals(
        self,
        key: tuple[str, str, str],
        open_time: int,
        close: float,
        items: PatternItems,
        features: dict[str, FeatureValue] | list[FeatureValue],
        *,
        recent: Sequence[Any],
        name: str | None,
        emitted_at: str | None,
        context: Context | None = None,
        documents: bool = False,
        document: bytes | None = None,
    ) -> list[Signal]:
        """Steps 1-6 of one bar's event, given as what they read: the bar's (exchange, symbol,
        timeframe), open time and close, its patterns (in the event's order), its
        ``clean_features`` (or their values in ``FEATURES_USED`` order: the dict is built only
        for a signal) and its ``recent`` list (``score`` of a record and ``signals.columnar``
        of columns call it); ``context``: its ``context``, if known;
        ``documents``: the series' ``recent`` entries come as JSON documents (v3 entries),
        ``document`` this event's own (see ``remember``)."""
        if context is None:
            context = self.context(feature_dict(features))
        scored = self.raw(tuple(sorted(items)), context)
        self.remember(open_time, items, features, scored, documents=documents, document=document)
        out: list[Signal] = []
        for d, ds, contributions in (
            (1, scored.long, scored.long_contributions),
            (-1, scored.short, scored.short_contributions),
        ):
            if (
                ds is None
                or ds.score < self.threshold
                or self.in_cooldown(key[2], open_time, recent, d)
            ):
                continue
            direction: Direction = "long" if d == 1 else "short"
            features = feature_dict(features)  # one dict for both directions' signals
            # Positional, in field order (the reference tests check every field): a keyword
            # call of this 15-field frozen dataclass costs about twice as much.
            out.append(
                Signal(
                    f"{bar_id(*key, open_time)}:{direction}",
                    *key,
                    open_time,
                    direction,
                    ds.score,
                    dict(scored.fired),
                    ds.supporting,
                    features,
                    name or self.model.fingerprint,
                    emitted_at,
                    SIGNALS_VERSION,
                    close,
                    dict(contributions),
                )
            )
        return out


def _memo_prior(key: tuple[Any, ...], value: tuple[int, Scored]) -> None:
    if len(_PRIORS) >= PRIOR_CACHE_SIZE:  # bounded: the oldest goes first
        _PRIORS.popitem(last=False)
    _PRIORS[key] = value


def _rounded(ds: DirectionScore | None) -> Rounded:
    """A signal's ``contributions``: each supporting pattern's ``c_p``, rounded to 4 places."""
    if ds is None:
        return ()
    return tuple((k, round(c, 4)) for k, c in zip(ds.supporting, ds.contributions, strict=True))


def decode_prior(prior: Mapping[str, Any]) -> tuple[int, PatternItems, dict[str, FeatureValue]]:
    """A ``recent`` entry as numbers: open time, sorted patterns, features used."""
    try:
        open_time = int(prior["open_time"])
        patterns = {str(k): int(v) for k, v in prior["patterns"].items()}
        features = clean_features(prior.get("features", {}))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DecodeError("recent_event", repr(e)) from e
    return open_time, tuple(sorted(patterns.items())), features


def parse_prior(document: bytes) -> Any:
    """A ``recent`` entry's JSON document parsed (``DecodeError`` if it is not JSON)."""
    try:
        return orjson.loads(document)
    except orjson.JSONDecodeError as e:
        raise DecodeError("recent_event", repr(e)) from e


@functools.lru_cache(maxsize=RAW_CACHE_SIZE)
def _cached_raw(scorer: ModelScorer, items: PatternItems, context: Context) -> Scored:
    """One bounded LRU for every model: memory stays bounded however many versions score."""
    return scorer.compute_raw(items, context)


# ``ModelScorer.prior``'s memo, for every model: (scorer, the entry's open time, pattern items,
# used features' values and types, as found) -> (open time, scores). First in, first out: an
# entry is read again within a few bars of its first use. An OrderedDict: dropping the oldest
# is O(1) (``next(iter(d))`` on a plain dict walks the slots its earlier deletions left).
_PRIORS: OrderedDict[tuple[Any, ...], tuple[int, Scored]] = OrderedDict()
_SCORER_ATTR = "_scorer"


def scorer_of(model: Model) -> ModelScorer:
    """The model's ``ModelScorer``, built on first use and kept on the model instance (like
    ``Model.fingerprint``, a ``cached_property``): an immutable model never needs another."""
    found: ModelScorer | None = model.__dict__.get(_SCORER_ATTR)
    if found is None:
        found = model.__dict__[_SCORER_ATTR] = ModelScorer(model)
    return found


def pattern_evidence(
    patterns: Mapping[str, int], features: Mapping[str, FeatureValue], model: Model
) -> list[Evidence]:
    """Steps 1-2: each known pattern's direction and capped contribution (unknown: ignored)."""
    scorer = scorer_of(model)
    trend, htf, _, _ = scorer.context(features)
    return scorer.evidence(tuple(sorted(patterns.items())), trend, htf)


def raw_scores(
    patterns: Mapping[str, int], features: Mapping[str, FeatureValue], model: Model
) -> dict[int, DirectionScore]:
    """Steps 1-4 (no threshold, no cooldown) for each direction that has any evidence."""
    scorer = scorer_of(model)
    scored = scorer.raw(tuple(sorted(patterns.items())), scorer.context(features))
    return {d: ds for d, ds in ((1, scored.long), (-1, scored.short)) if ds is not None}


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
    return scorer_of(model).score(event, name, emit_warming=emit_warming)
