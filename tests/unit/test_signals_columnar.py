"""Scoring a ``patterns`` entry from its columns (``signals.columnar``) gives, event by event,
exactly what scoring its decoded records gives (``ModelHistory.score``): the same signals, or
the same error for an event that cannot be scored."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import orjson
import pytest

from common.columns import (
    EventColumns,
    decode_events,
    encode_events,
    event_columns,
    recent_documents,
)
from common.errors import BadInput
from signals.columnar import score_entry, used_columns
from signals.model import Model, ScoringParams
from signals.scoring import (
    _PRIORS,
    FEATURES_USED,
    ModelScorer,
    clean_features,
    decode_prior,
)
from signals.versions import ModelHistory, ModelVersion
from tests.signals_factory import (
    MINUTE,
    T0,
    detector_entries,
    event_mix,
    make_event,
    strong_event,
)
from tests.unit.test_signals_scoring_fast import random_event, random_model


def by_records(
    history: ModelHistory, fields: dict[bytes, bytes], emit_warming: bool
) -> list[list[Any] | tuple[str, str]]:
    out: list[list[Any] | tuple[str, str]] = []
    for event in decode_events(fields):
        try:
            out.append(history.score(event, emit_warming=emit_warming, emitted_at="t"))
        except BadInput as err:
            out.append((type(err).__name__, str(err)))
    return out


def by_columns(
    history: ModelHistory, fields: dict[bytes, bytes], emit_warming: bool
) -> list[list[Any] | tuple[str, str]]:
    scored = score_entry(history, fields, emit_warming=emit_warming, emitted_at="t")
    assert len(scored.open_times) == len(scored.results)
    return [(type(r).__name__, str(r)) if isinstance(r, BadInput) else r for r in scored.results]


def assert_same(history: ModelHistory, entries: list[dict[bytes, bytes]]) -> int:
    """Every entry scores the same both ways, with and without warming events; the signals."""
    signals = 0
    for emit_warming in (False, True):
        _PRIORS.clear()  # each path from a cold memo: a hit must never change a result
        want = [by_records(history, f, emit_warming) for f in entries]
        _PRIORS.clear()
        got = [by_columns(history, f, emit_warming) for f in entries]
        assert got == want
        signals += sum(len(r) for e in got for r in e if isinstance(r, list))
    return signals


def test_detector_entries_score_the_same_from_columns() -> None:
    entries = detector_entries(symbols=24, seconds=150, seed=3)
    assert len(entries) > 100
    assert assert_same(ModelHistory.seed(Model()), entries) > 100
    # A history whose versions change mid-run: each event scored by the version covering it.
    starts = sorted(
        {int(t) for f in entries for t in EventColumns.decode(f).bars.records["open_time"]}
    )
    strict = Model(params=ScoringParams(threshold=0.3, cooldown_bars=2))
    history = ModelHistory(
        [
            ModelVersion(1, 0, Model()),
            ModelVersion(2, starts[len(starts) // 3], strict),
            ModelVersion(3, starts[2 * len(starts) // 3], Model()),
        ]
    )
    assert assert_same(history, entries) > 100


def test_hand_built_entries_score_the_same_from_columns() -> None:
    """Events as other producers write them: features missing, None, ints; recent entries
    of every shape; v1 entries (one event each) too."""
    events = event_mix(600, symbols=40)
    entries = encode_events(events) + [e.encode() for e in events[:50]]
    rng = random.Random(5)
    sparse = [
        replace(e, features={k: v for k, v in e.features.items() if rng.random() < 0.6})
        for e in events[:200]
    ]
    entries += encode_events(sparse)
    assert assert_same(ModelHistory.seed(Model()), entries) > 100


@pytest.mark.parametrize(
    "bad",
    [
        {"open_time": None, "patterns": {}, "features": {}},
        {"open_time": T0 - MINUTE, "patterns": {"CDLHAMMER": "x"}, "features": {}},
        {"open_time": T0 - MINUTE, "patterns": {"CDLHAMMER": 100}, "features": {"trend": True}},
        {"patterns": {}},
        "not an entry",
    ],
)
def test_an_event_that_cannot_be_scored_fails_alone_the_same_way(bad: Any) -> None:
    events = [strong_event(f"S{i}", T0, 1 if i % 2 else -1) for i in range(9)]
    events[4] = replace(events[4], recent=[bad])
    (fields,) = encode_events(events)
    history = ModelHistory.seed(Model())
    got = by_columns(history, fields, False)
    assert got == by_records(history, fields, False)
    assert [isinstance(r, tuple) for r in got] == [i == 4 for i in range(9)]
    scored = score_entry(history, fields, emit_warming=False, emitted_at="t")
    # What is dead-lettered alone: the event as an entry of its own.
    assert decode_events(scored.event(4)) == [decode_events(fields)[4]]


def test_a_recent_document_that_is_not_json_fails_only_the_events_that_read_it() -> None:
    """The records path refuses the whole entry (it parses every document); from the columns,
    an event whose cooldown reads the document fails alone, kept as it came, and the others
    are scored."""
    events = [strong_event(f"S{i}", T0, 1 if i % 2 else -1) for i in range(9)]
    columns = EventColumns.from_events(events)
    columns.recent = [[b"{not json"] if i == 4 else [] for i in range(9)]
    (fields,) = columns.encode()
    with pytest.raises(BadInput):
        decode_events(fields)
    history = ModelHistory.seed(Model())
    scored = score_entry(history, fields, emit_warming=False, emitted_at="t")
    got = by_columns(history, fields, False)
    assert got[4][0] == "DecodeError" and "recent_event" in got[4][1]
    assert all(isinstance(r, list) and r for i, r in enumerate(got) if i != 4)
    assert event_columns(scored.event(4)).recent == [[b"{not json"]]


def test_a_remembered_document_means_what_it_was_remembered_for() -> None:
    """The document an event is remembered under (``recent_documents`` of what scoring reads
    of it, ``used_columns``) is what the detectors write; parsing it back gives the values
    scoring used, or there is none (an infinite feature would come back as null)."""
    rng = random.Random(9)
    entries = encode_events([random_event(rng) for _ in range(300)])  # by feature names
    assert len(entries) > 1
    for fields in entries:
        events, columns = decode_events(fields), event_columns(fields)
        table, matrix = used_columns(columns)
        open_times = [e.bar.open_time for e in events]
        docs = recent_documents(open_times, columns.names, columns.fired, table, matrix)
        for event, doc in zip(events, docs, strict=True):
            assert doc is not None
            assert decode_prior(orjson.loads(doc)) == (
                event.bar.open_time,
                tuple(sorted(event.patterns.items())),
                clean_features(event.features),
            )
    matrix[0, FEATURES_USED.index("rsi")] = math.inf
    docs = recent_documents(open_times, columns.names, columns.fired, table, matrix)
    assert docs[0] is None and None not in docs[1:]


def test_an_unknown_timeframe_fails_the_same_way() -> None:
    event = make_event({"CDLHAMMER": 100}, trend=-1, timeframe="7q")
    (fields,) = encode_events([event])
    history = ModelHistory.seed(Model())
    assert by_columns(history, fields, False) == by_records(history, fields, False)


def test_an_events_own_scoring_serves_its_recent_entry_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The detectors write an event's ``recent`` entry from the same bar, patterns and
    features: once the event is scored, its entry in the next events is a memo hit."""
    entries = detector_entries(symbols=24, seconds=90, seed=4)
    history = ModelHistory.seed(Model())
    decoded: list[Any] = []
    score_prior = ModelScorer.score_prior
    monkeypatch.setattr(
        ModelScorer, "score_prior", lambda self, p: decoded.append(p) or score_prior(self, p)
    )
    _PRIORS.clear()
    for fields in entries:
        score_entry(history, fields, emit_warming=False, emitted_at="t")
    assert decoded, "no recent entry was read"
    # Only entries of events scored while warming up (not memoized) are decoded.
    assert all(p["features"]["rsi"] is None for p in decoded)


def test_random_events_and_models_score_the_same_from_columns() -> None:
    """Features at the thresholds, NaN, absent, mixed ints and floats; models with other
    thresholds, weights and a calibration: every event's context, taken column-wise
    (``ModelScorer.contexts``), is the one its record gets, and so are its signals."""
    rng = random.Random(23)
    signals = 0
    for _ in range(6):
        events = [random_event(rng) for _ in range(400)]
        history = ModelHistory.seed(random_model(rng))
        signals += assert_same(history, encode_events(events))
    assert signals > 1000  # (a calibrated model with a high threshold emits none: fine)
