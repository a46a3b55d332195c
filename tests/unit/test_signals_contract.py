"""The public signal contract: schema validation of every emitted signal, codec, model config."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.contracts import DEFAULT_RECENT_BARS
from common.errors import ConfigError, DecodeError
from signals.contract import (
    Signal,
    decode_entry,
    encode_entry,
    iso_utc_ms,
    load_schema,
    signal_from_json,
    signal_to_json,
)
from signals.model import DEFAULT_PATTERNS, Model, load_model, model_from_mapping
from signals.scoring import score_event
from signals.settings import SignalsSettings, WsSettings
from tests.signals_factory import MINUTE, T0, make_event

VALIDATOR = jsonschema.Draft202012Validator(
    load_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
NAMES = sorted(DEFAULT_PATTERNS)

trend = st.sampled_from([-1, 0, 1, None])
maybe_float = st.one_of(st.none(), st.floats(0, 100, allow_nan=False))
events = st.builds(
    lambda pats, tr, htf, vol, rsi, k, tf: make_event(
        pats,
        open_time=T0 + k * MINUTE,
        timeframe=tf,
        trend=tr,
        htf_trend=htf,
        volume_ratio=vol,
        rsi=rsi,
    ),
    st.dictionaries(st.sampled_from(NAMES), st.sampled_from([-200, -100, 100, 200]), max_size=4),
    trend,
    trend,
    st.one_of(st.none(), st.floats(0, 5, allow_nan=False)),
    maybe_float,
    st.integers(0, 10_000),
    st.sampled_from(["1m", "5m", "1h", "1d"]),
)


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(load_schema())


@settings(max_examples=300, deadline=None)
@given(events)
def test_every_emitted_signal_validates_and_round_trips(event: object) -> None:
    for signal in score_event(event, Model(), emit_warming=True):  # type: ignore[arg-type]
        for stamped in (signal, signal.stamped()):
            doc = json.loads(signal_to_json(stamped))
            VALIDATOR.validate(doc)
            assert signal_from_json(signal_to_json(stamped)) == stamped
            assert decode_entry(encode_entry(stamped)) == stamped
            assert 0.0 <= stamped.score <= 1.0


def test_example_signal_fields() -> None:
    event = make_event({"CDLHAMMER": 100, "CDLDOJI": 100}, trend=-1, volume_ratio=2.0)
    (signal,) = score_event(event, Model())
    doc = json.loads(signal_to_json(signal.stamped("2024-08-08T23:55:00.012Z")))
    VALIDATOR.validate(doc)
    assert doc["open_time"] == "2024-08-08T23:54:00.000Z"
    assert doc["open_time_ms"] == T0
    assert doc["id"] == f"binance:BTCUSDT:1m:{T0}:long"
    assert doc["patterns"] == {"CDLDOJI": 100, "CDLHAMMER": 100}
    assert doc["supporting"] == ["CDLDOJI", "CDLHAMMER"]
    assert set(doc["features"]) == {"volume_ratio", "trend", "htf_trend", "rsi"}
    assert doc["model"] == Model().fingerprint


def test_readers_ignore_unknown_fields_and_reject_other_versions() -> None:
    (signal,) = score_event(make_event({"CDLHAMMER": 100}, trend=-1), Model())
    doc = signal.to_dict() | {"new_field": 1}
    assert Signal.from_dict(doc) == signal
    with pytest.raises(DecodeError):
        Signal.from_dict(doc | {"v": 2})
    with pytest.raises(DecodeError):
        signal_from_json(b"[1]")
    with pytest.raises(DecodeError):
        decode_entry({b"v": b"1"})


def test_iso_time() -> None:
    assert iso_utc_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc_ms(T0 + 5) == "2024-08-08T23:54:00.005Z"


def test_model_overrides_from_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "m.toml"
    toml.write_text("threshold = 0.7\n[patterns.CDLHAMMER]\nreliability = 0.9\n")
    model = load_model(str(toml))
    assert model.params.threshold == 0.7
    assert model.patterns["CDLHAMMER"].reliability == 0.9
    assert model.fingerprint != Model().fingerprint
    js = tmp_path / "m.json"
    js.write_text('{"patterns": {"CDLNEW": {"kind": "continuation", "reliability": 0.5}}}')
    assert load_model(str(js)).patterns["CDLNEW"].kind == "continuation"
    assert load_model(None) == Model()


@pytest.mark.parametrize(
    "doc",
    [
        {"thresold": 0.5},
        {"threshold": "high"},
        {"patterns": {"CDLHAMMER": {"kind": "bullish"}}},
        {"patterns": {"CDLNEW": {"reliability": 0.5}}},
        {"patterns": {"CDLHAMMER": {"reliability": 2}}},
    ],
)
def test_bad_model_config_names_the_variable(doc: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="SIGNALS_MODEL_FILE"):
        model_from_mapping(doc)


def test_settings_from_env(tmp_path: Path) -> None:
    model_file = tmp_path / "m.json"
    model_file.write_text('{"threshold": 0.8}')
    s = SignalsSettings.from_env(
        {"SIGNALS_MODEL_FILE": str(model_file), "SIGNALS_ID_RETENTION_S": "60", "NAMESPACE": "x:"}
    )
    assert (s.model.params.threshold, s.id_retention_ms, s.common.namespace) == (0.8, 60_000, "x:")
    with pytest.raises(ConfigError, match="SIGNALS_STREAM_MAXLEN"):
        SignalsSettings.from_env({"SIGNALS_STREAM_MAXLEN": "-1"})
    assert SignalsSettings.from_env({}).append_slice_ms == 2
    assert SignalsSettings.from_env({"SIGNALS_APPEND_SLICE_MS": "0"}).append_slice_ms == 0
    with pytest.raises(ConfigError, match="SIGNALS_APPEND_SLICE_MS"):
        SignalsSettings.from_env({"SIGNALS_APPEND_SLICE_MS": "-1"})
    with pytest.raises(ConfigError, match="SIGNALS_WS_TOKENS"):
        WsSettings.from_env({})
    ws = WsSettings.from_env({"SIGNALS_WS_TOKENS": "tok-1, tok-2", "SIGNALS_WS_QUEUE": "5"})
    assert ws.tokens == {"tok-1", "tok-2"} and ws.queue_size == 5
    assert "tok-" not in repr(ws)
    assert (ws.log_lines, ws.log_interval_s) == (20, 10.0)
    logged = {
        "SIGNALS_WS_TOKENS": "t",
        "SIGNALS_WS_LOG_LINES": "3",
        "SIGNALS_WS_LOG_INTERVAL_S": "2",
    }
    quiet = WsSettings.from_env(logged)
    assert (quiet.log_lines, quiet.log_interval_s) == (3, 2.0)
    with pytest.raises(ConfigError, match="SIGNALS_WS_LOG_INTERVAL_S"):
        WsSettings.from_env({"SIGNALS_WS_TOKENS": "t", "SIGNALS_WS_LOG_INTERVAL_S": "0"})


def test_cooldown_may_not_look_past_the_history_detectors_send(tmp_path: Path) -> None:
    """A cooldown longer than ``recent`` reaches would silently apply less: refuse to start."""
    model_file = tmp_path / "m.json"
    model_file.write_text('{"cooldown_bars": 8}')
    env = {"SIGNALS_MODEL_FILE": str(model_file)}
    with pytest.raises(ConfigError, match=r"SIGNALS_MODEL_FILE.*COOLDOWN_BARS"):
        SignalsSettings.from_env(env)
    assert SignalsSettings.from_env(env | {"COOLDOWN_BARS": "8"}).model.params.cooldown_bars == 8
    assert Model().params.cooldown_bars <= DEFAULT_RECENT_BARS  # the defaults agree
