"""The compiled, memoized scorer equals the plain per-event code bit for bit (issue 17).

``tests/signals_reference.py`` is the scoring code as it was before the vote tables and the
raw-score cache; every result here — signals, uncooled scores, evidence, errors — must be
identical to it on randomized events, with cooldowns, calibrated and overridden models,
whatever the cache holds.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import pytest

from common.contracts import PatternEvent
from common.errors import DecodeError
from signals.contract import Signal, iso_utc_ms
from signals.model import DEFAULT_PATTERNS, Calibration, Model, PatternSpec, ScoringParams
from signals.offline import score_events
from signals.scoring import (
    _PRIORS,
    PRIOR_CACHE_SIZE,
    RAW_CACHE_SIZE,
    ModelScorer,
    _cached_raw,
    pattern_evidence,
    raw_scores,
    score_event,
    scorer_of,
)
from signals.versions import ModelHistory, ModelVersion
from tests import signals_reference as reference
from tests.signals_factory import T0, make_event

NAMES = sorted(DEFAULT_PATTERNS)
TIMEFRAMES = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}


def random_patterns(rng: random.Random) -> dict[str, int]:
    names = rng.sample(NAMES, rng.randint(1, 4))
    if rng.random() < 0.1:
        names.append("CDLNOTAPATTERN")  # unknown: ignored
    return {n: rng.choice((-200, -100, -100, 0, 100, 100, 200)) for n in names}


def random_feature(rng: random.Random, values: tuple[Any, ...]) -> Any:
    return rng.choice((None, math.nan, *values))


def random_features(rng: random.Random) -> dict[str, Any]:
    features: dict[str, Any] = {
        "volume_ratio": random_feature(rng, (0.3, 0.7, 1.0, 1.5, 2.5, 1)),
        "trend": random_feature(rng, (-1, 0, 1, 0.5, -2.0)),
        "htf_trend": random_feature(rng, (-1, 0, 1)),
        "rsi": random_feature(rng, (10.0, 30, 50.0, 70.0, 85.5)),
        "ema": 100.0,
    }
    for key in list(features):
        if rng.random() < 0.05:
            del features[key]  # absent: counts as missing
    return features


def random_event(rng: random.Random) -> PatternEvent:
    timeframe = rng.choice(list(TIMEFRAMES))
    step = TIMEFRAMES[timeframe]
    open_time = T0 + rng.randint(10, 20) * step
    recent = []
    for _ in range(rng.choice((0, 0, 1, 2, 5))):
        prior: dict[str, Any] = {
            "open_time": open_time - rng.randint(-1, 5) * step,  # some outside the horizon
            "patterns": random_patterns(rng),
        }
        if rng.random() < 0.9:
            prior["features"] = random_features(rng)
        recent.append(prior)
    recent.sort(key=lambda p: p["open_time"])
    return PatternEvent(
        make_event({}, timeframe=timeframe, open_time=open_time).bar,
        random_patterns(rng),
        random_features(rng),
        recent,
    )


def random_model(rng: random.Random) -> Model:
    params = replace(
        ScoringParams(),
        threshold=rng.choice((0.0, 0.3, 0.5, 0.65)),
        cooldown_bars=rng.choice((0, 1, 3)),
        conflict_penalty=rng.choice((0.0, 0.8, 1.0)),
        max_contribution=rng.choice((0.5, 0.95)),
    )
    patterns = dict(DEFAULT_PATTERNS)
    for name in rng.sample(NAMES, 5):
        spec = patterns[name]
        patterns[name] = replace(spec, weight=rng.choice((0.5, 1.5, 3.0)))
    patterns["CDLNEWONE"] = PatternSpec("indecision", 0.4)
    calibration = rng.choice(
        (None, Calibration(5, (0.0, 0.41, 0.77, 1.0), (0.47, 0.49, 0.55, 0.58)))
    )
    return Model(patterns, params, calibration)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A generator of each test's own, seeded by its name: the draws do not depend on which
    tests ran before it (alone, with ``-k``, or on another xdist worker)."""
    return random.Random(f"17:{request.node.name}")


def test_scoring_equals_the_reference_on_random_events(rng: random.Random) -> None:
    models = [Model(), *(random_model(rng) for _ in range(6))]
    emitted = cooled = 0
    for model in models:
        for _ in range(1500):
            event = random_event(rng)
            warming = rng.random() < 0.2
            got = score_event(event, model, "v9:x", emit_warming=warming)
            assert got == reference.score_event(event, model, "v9:x", emit_warming=warming)
            emitted += len(got)
            uncooled = replace(event, recent=[])
            cooled += len(score_event(uncooled, model, "v9:x", emit_warming=warming)) > len(got)
            features = reference.clean_features(event.features)
            assert raw_scores(event.patterns, features, model) == reference.raw_scores(
                event.patterns, features, model
            )
            assert pattern_evidence(event.patterns, features, model) == reference.pattern_evidence(
                event.patterns, features, model
            )
    assert emitted > 1000 and cooled > 100  # the comparison covered signals and cooldowns


def test_scores_do_not_depend_on_what_the_cache_holds(rng: random.Random) -> None:
    model = random_model(rng)
    events = [random_event(rng) for _ in range(300)]
    warm = [s for e in events for s in score_event(e, model)]
    _cached_raw.cache_clear()
    cold = [s for e in reversed(events) for s in reversed(score_event(e, model))]
    assert list(reversed(cold)) == warm


def test_score_events_is_score_event_of_each_concatenated(rng: random.Random) -> None:
    model = random_model(rng)
    events = [random_event(rng) for _ in range(500)]
    want = [s for e in events for s in reference.score_event(e, model, f"v1:{model.fingerprint}")]
    assert score_events(events, model) == want  # signals.offline's, as replay scores
    assert score_events([], model) == []


def test_history_scores_a_batch_with_each_events_version(rng: random.Random) -> None:
    first, second = random_model(rng), random_model(rng)
    history = ModelHistory([ModelVersion(1, 0, first), ModelVersion(2, T0 + 15 * 60_000, second)])
    events = [random_event(rng) for _ in range(500)]
    want = [s for e in events for s in history.score(e, emit_warming=True)]
    assert score_events(events, history, emit_warming=True) == want
    assert {s.model for s in want} == {history.versions[0].name, history.versions[1].name}


def series(rng: random.Random, bars: int) -> list[PatternEvent]:
    """One symbol's pattern events as a detector writes them: each carries the earlier ones
    within 5 bars as ``recent`` (the very entries the next events carry again)."""
    out: list[PatternEvent] = []
    recent: list[dict[str, Any]] = []
    for bar in range(bars):
        if rng.random() < 0.3:
            continue  # no pattern on this bar
        open_time = T0 + bar * 60_000
        event = PatternEvent(
            make_event({}, open_time=open_time).bar,
            random_patterns(rng),
            random_features(rng),
            [r for r in recent if r["open_time"] >= open_time - 5 * 60_000],
        )
        out.append(event)
        recent = [*event.recent, {k: v for k, v in event.to_dict().items() if k != "recent"}]
        recent[-1]["open_time"] = open_time
    return out


def test_recent_entries_seen_again_score_as_the_reference(
    rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[object] = []  # the recent entries the memo did not have
    score_prior = ModelScorer.score_prior

    def counted(self: ModelScorer, prior: Any) -> Any:
        decoded.append(prior)
        return score_prior(self, prior)

    monkeypatch.setattr(ModelScorer, "score_prior", counted)
    # Models that read earlier entries: with no cooldown, or no signal to cool down, none is.
    drawn = [random_model(rng) for _ in range(2)]
    cooling = [replace(m, params=replace(m.params, cooldown_bars=3, threshold=0.3)) for m in drawn]
    for model in (Model(), *cooling):
        _PRIORS.clear()
        decoded.clear()
        events = series(rng, 600)
        for event in events:
            assert score_event(event, model) == reference.score_event(event, model)
        read = sum(len(e.recent) for e in events if score_event(replace(e, recent=[]), model))
        assert 0 < len(decoded) < read  # the memo was used (entries read more than once)


def test_a_memoized_recent_entry_still_fails_as_before() -> None:
    hammer = {"CDLHAMMER": 100}
    good = {"open_time": T0 - 60_000, "patterns": hammer, "features": {"trend": 1}}
    assert score_event(make_event(hammer, trend=-1, recent=[good]), Model())  # now memoized
    for bad in (
        {**good, "features": {"trend": True}},  # True == 1, but a bool is not a number
        {**good, "features": {"trend": "1"}},
        {**good, "patterns": {"CDLHAMMER": [100]}},  # unhashable: never memoized
        {**good, "features": None},
        {**good, "open_time": None},
    ):
        event = make_event(hammer, trend=-1, recent=[bad])
        assert_fails_as_the_reference(event)


def assert_fails_as_the_reference(event: PatternEvent) -> None:
    """Scoring ``event`` raises the ``DecodeError`` the pre-issue-17 code raises, word for word."""
    with pytest.raises(DecodeError) as got:
        score_event(event, Model())
    with pytest.raises(DecodeError) as want:
        reference.score_event(event, Model())
    assert (got.value.reason, str(got.value)) == (want.value.reason, str(want.value))


def test_the_caches_are_bounded(rng: random.Random) -> None:
    assert _cached_raw.cache_info().maxsize == RAW_CACHE_SIZE
    model = Model()
    for _ in range(RAW_CACHE_SIZE + 2000):
        features = random_features(rng)
        raw_scores(random_patterns(rng), reference.clean_features(features), model)
    info = _cached_raw.cache_info()
    assert info.currsize == RAW_CACHE_SIZE  # full, and no bigger
    scorer = scorer_of(model)
    for i in range(PRIOR_CACHE_SIZE + 2000):
        entry = {"open_time": T0 + i, "patterns": random_patterns(rng), "features": {"rsi": 50.0}}
        assert scorer.prior(entry) == scorer.score_prior(entry)
    assert len(_PRIORS) == PRIOR_CACHE_SIZE  # full, and no bigger


def test_a_model_is_compiled_once() -> None:
    model = Model()
    assert scorer_of(model) is scorer_of(model)
    assert isinstance(scorer_of(model), ModelScorer)
    assert scorer_of(Model()) is not scorer_of(model)  # per instance, like its fingerprint
    assert Model() == model  # the compiled tables are not part of the model's value


def test_bad_recent_entries_fail_exactly_as_before() -> None:
    hammer = {"CDLHAMMER": 100}
    for bad in ({"patterns": {}}, {"open_time": "x", "patterns": {}}, {"open_time": T0}):
        event = make_event(hammer, trend=-1, recent=[bad])
        assert_fails_as_the_reference(event)
        quiet = make_event(hammer, recent=[bad])  # below threshold: recent is never read
        assert score_event(quiet, Model()) == reference.score_event(quiet, Model()) == []
    with pytest.raises(DecodeError):
        score_event(make_event(hammer, trend=True), Model())  # a bool is not a number


def test_stamped_equals_a_replace_of_emitted_at() -> None:
    (signal,) = score_event(make_event({"CDLHAMMER": 100}, trend=-1), Model())
    stamped = signal.stamped("2024-08-08T23:55:00.012Z")
    assert stamped == replace(signal, emitted_at="2024-08-08T23:55:00.012Z")
    assert isinstance(stamped, Signal) and stamped.emitted_at != signal.emitted_at


def test_iso_times_are_memoized_and_bounded() -> None:
    assert iso_utc_ms(T0) is iso_utc_ms(T0)
    assert iso_utc_ms.cache_info().maxsize is not None
