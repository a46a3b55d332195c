"""The live configuration document (pure): validation, editing, diff, version selection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.cli import main
from common.configstore import ConfigVersion, document_fingerprint
from common.errors import ConfigError
from signals.liveconfig import (
    apply_assignments,
    diff_documents,
    seed_document,
    validate_document,
)
from signals.model import Model, model_from_mapping, model_to_mapping
from signals.versions import ModelHistory
from tests.signals_factory import MINUTE, T0, event_mix


def test_the_seed_is_whole_and_canonical() -> None:
    doc = seed_document({"RETENTION_TICKS": "14d", "SIGNALS_WS_QUEUE": "50"}, Model())
    assert doc["sink"]["retention_s"]["ticks"] == 14 * 86_400
    assert doc["ws"] == {"max_connections": 1000, "queue_size": 50, "resume_max": 100_000}
    assert len(doc["model"]["patterns"]) == 61
    assert validate_document(doc) == doc  # canonical: validating again changes nothing
    assert model_from_mapping(doc["model"]).fingerprint == Model().fingerprint


def test_a_calibrated_model_round_trips() -> None:
    model = model_from_mapping({"calibration": {"horizon": 5, "x": [0, 1], "y": [0.4, 0.6]}})
    again = model_from_mapping(model_to_mapping(model))
    assert again == model and again.fingerprint == model.fingerprint


@pytest.mark.parametrize(
    ("assignment", "key"),
    [
        ("threshold=abc", "model"),
        ("threshold=1.5e400", "model"),
        ("patterns.CDLHAMMER.reliability=2", "model"),
        ("model.nope=1", "model"),
        ("ws.max_connections=0", "ws.max_connections"),
        ("ws.queue_size=true", "ws.queue_size"),
        ("ws.bogus=3", "ws.bogus"),
        ("sink.retention_s.ticks=7 parsecs", "sink.retention_s.ticks"),
        ("sink.retention_s.trades=1d", "sink.retention_s.trades"),
        ("sink.retention_interval_s=0", "sink.retention_interval_s"),
        ("model.cooldown_bars=50", "model.cooldown_bars"),
    ],
)
def test_an_invalid_change_names_its_key(assignment: str, key: str) -> None:
    doc = seed_document({}, Model())
    with pytest.raises(ConfigError) as err:
        validate_document(apply_assignments(doc, [assignment]))
    assert err.value.variable == key
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("key", "var"),
    [
        ("timeframes", "TIMEFRAMES"),
        ("TIMEFRAMES", "TIMEFRAMES"),
        ("patterns", "PATTERNS"),
        ("partitions", "PARTITIONS"),
        ("ws.max_message", "SIGNALS_WS_MAX_MESSAGE"),
    ],
)
def test_start_time_keys_are_refused_with_their_variable(key: str, var: str) -> None:
    with pytest.raises(ConfigError) as err:
        apply_assignments(seed_document({}, Model()), [f"{key}=1"])
    assert "start-time only" in err.value.problem and var in err.value.problem
    with pytest.raises(ConfigError, match="start-time only"):
        validate_document({"timeframes": "1m"})


def test_assignments_shorthands_durations_and_removal() -> None:
    doc = seed_document({}, Model())
    doc["model"]["calibration"] = {"horizon": 5, "x": [0, 1], "y": [0.4, 0.6]}
    out = validate_document(
        apply_assignments(
            doc,
            [
                "threshold=0.7",
                "patterns.CDLHAMMER.weight=1.5",
                "sink.retention_s.ticks=2w",
                "model.calibration=null",
            ],
        )
    )
    assert out["model"]["threshold"] == 0.7
    assert out["model"]["patterns"]["CDLHAMMER"]["weight"] == 1.5
    assert out["sink"]["retention_s"]["ticks"] == 14 * 86_400
    assert "calibration" not in out["model"]
    assert doc["model"]["threshold"] == 0.65  # the input is not modified
    changes = {k for k, _, _ in diff_documents(validate_document(doc), out)}
    assert changes >= {"model.threshold", "model.patterns.CDLHAMMER.weight"}
    assert "model.calibration.horizon" in changes


def _version(n: int, start: int, threshold: float) -> ConfigVersion:
    doc: dict[str, Any] = validate_document({"model": {"threshold": threshold}})
    return ConfigVersion(n, start, doc, document_fingerprint(doc), "t", "", "")


def test_each_event_is_scored_by_the_version_covering_its_open_time() -> None:
    change = T0 + 10 * MINUTE
    history = ModelHistory.from_config(
        [_version(1, 0, 0.65), _version(2, change, 0.3), _version(3, change, 0.4)]
    )
    assert history.at(change - 1).version == 1
    assert history.at(change).version == 3  # same start: the newer version wins
    events = event_mix(400, symbols=5)
    assert any(e.bar.open_time < change for e in events)
    assert any(e.bar.open_time >= change for e in events)
    low = Model(params=model_from_mapping({"threshold": 0.4}).params)
    for event in events:
        for s in history.score(event):
            want = (
                "v1:" + Model().fingerprint if s.open_time_ms < change else f"v3:{low.fingerprint}"
            )
            assert s.model == want


def test_a_history_out_of_order_is_refused() -> None:
    with pytest.raises(ConfigError, match="before version 1"):
        ModelHistory.from_config([_version(1, 5, 0.6), _version(2, 4, 0.6)])
    with pytest.raises(ConfigError, match="--config-history"):
        ModelHistory.from_export({"not": "a list"})


def test_replay_refuses_an_unreadable_history_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "history.json"
    bad.write_text('{"not": "the exported list"}')
    for path in (bad, tmp_path / "missing.json"):
        args = ["replay", "--ticks", "x.csv", "--config-history", str(path)]
        assert main([*args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "--config-history" in err
