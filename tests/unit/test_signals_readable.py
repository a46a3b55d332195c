"""Signals a trader can read (issue 12 §6): the bar's close and each supporting pattern's
contribution in every signal, no signals from features still warming up (unless configured),
a ``tail`` table whose columns say what they show; within v1's compatibility rule."""

from __future__ import annotations

import json

import jsonschema
import pytest

from common.errors import ConfigError
from signals.contract import Signal, load_schema, signal_from_json, signal_to_json
from signals.model import Model
from signals.offline import score_events
from signals.scoring import clean_features, pattern_evidence, score_event
from signals.settings import SignalsSettings
from signals.tail import table_header, table_row
from tests.signals_factory import make_event

VALIDATOR = jsonschema.Draft202012Validator(load_schema())
WARMING = {"trend": None, "htf_trend": None, "volume_ratio": None, "rsi": None}


def test_a_signal_carries_its_bar_close_and_each_supporting_contribution() -> None:
    event = make_event({"CDLHAMMER": 100, "CDLDOJI": 100}, trend=-1, volume_ratio=2.0)
    model = Model()
    signals = score_event(event, model)
    assert signals
    evidence = pattern_evidence(event.patterns, clean_features(event.features), model)
    for s in signals:
        d = 1 if s.direction == "long" else -1
        want = {e.name: round(e.contribution, 4) for e in evidence if e.direction == d}
        assert s.close == event.bar.close == 100.5
        assert s.contributions == want
        assert list(want) == list(s.supporting)
        doc = json.loads(signal_to_json(s))
        VALIDATOR.validate(doc)
        assert doc["close"] == 100.5 and doc["contributions"] == want
        assert signal_from_json(signal_to_json(s)) == s


def test_old_documents_still_validate_and_parse() -> None:
    (s,) = score_event(make_event({"CDLHAMMER": 100}, trend=-1), Model())
    old = s.to_dict()
    del old["close"], old["contributions"]
    VALIDATOR.validate(old)
    parsed = Signal.from_dict(old)
    assert parsed.close is None and parsed.contributions is None
    assert "close" not in parsed.to_dict()  # re-encoded as it came
    assert "close" not in load_schema()["required"]


def test_signals_of_events_still_warming_up_are_not_emitted_unless_configured() -> None:
    warming = make_event({"CDLHAMMER": 100, "CDLENGULFING": 100}, **WARMING)
    assert score_event(warming, Model()) == []
    assert score_events([warming], Model()) == []
    assert [s.direction for s in score_event(warming, Model(), emit_warming=True)] == ["long"]
    one_warm = make_event({"CDLHAMMER": 100, "CDLENGULFING": 100}, **(WARMING | {"rsi": 25.0}))
    assert [s.direction for s in score_event(one_warm, Model())] == ["long"]
    assert SignalsSettings.from_env({}).emit_warming is False
    assert SignalsSettings.from_env({"SIGNALS_EMIT_WARMING": "1"}).emit_warming is True
    with pytest.raises(ConfigError) as e:
        SignalsSettings.from_env({"SIGNALS_EMIT_WARMING": "maybe"})
    assert e.value.variable == "SIGNALS_EMIT_WARMING"


def test_tail_columns_say_what_they_show() -> None:
    (s,) = score_event(make_event({"CDLHAMMER": 100, "CDLDOJI": 100}, trend=-1), Model())
    header, row = table_header(), table_row(s)
    assert "supporting (contribution)" in header and "close" in header
    assert " patterns " not in f" {header} "
    assert "100.5" in row
    for name, c in (s.contributions or {}).items():
        assert f"{name.removeprefix('CDL')}({c:.2f})" in row
