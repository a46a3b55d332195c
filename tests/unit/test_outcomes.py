"""Outcomes (issue 12 §1) equal a straightforward loop over the bar series, on the recordings
and on a long random walk; they do not depend on batching, partitions or checkpoints."""

from __future__ import annotations

import io
import struct
from collections import defaultdict
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from common.columns import OutcomeColumns, encode_outcome_parts
from common.contracts import (
    Bar,
    BarOutcome,
    PatternEvent,
    Tick,
    TickBatch,
    decode_outcomes,
    encode_outcomes,
)
from common.errors import ConfigError, DecodeError
from detectors import checkpoint
from detectors.outcomes import FLOAT_STATE, OutcomeConfig, parse_horizons
from detectors.partition import EngineConfig, Output, PartitionEngine
from detectors.replay import replay_ticks, sorted_events
from detectors.settings import outcome_config_from_env
from detectors.timeframes import parse_timeframes
from ingest.offline.ticks import read_ticks, synthetic_ticks
from signals.model import Model
from signals.offline import score_events
from signals.outcomes import outcome_lines

DATA = Path("/work/shared/data") if Path("/work/shared/data").exists() else Path("data")
RECORDINGS = ("binance-spot-btcusdt-20240808.rec.gz", "binance-spot-ethusdt-20240808.rec.gz")
HORIZONS = (1, 5, 10, 20)
COST_BPS = 0.5


def independent_lines(
    bars: list[Bar], events: list[PatternEvent], signals: list[Any], horizons: tuple[int, ...]
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The definitions, literally: per firing, walk the later bars of its own series."""
    series: dict[tuple[str, str, str], list[Bar]] = defaultdict(list)
    for b in bars:
        series[(b.exchange, b.symbol, b.timeframe)].append(b)
    position: dict[str, tuple[list[Bar], int]] = {}
    for seq in series.values():
        seq.sort(key=lambda b: b.open_time)
        for i, b in enumerate(seq):
            position[b.id] = (seq, i)

    def paths(bar_id: str, d: int) -> dict[str, dict[str, Any]]:
        seq, t = position[bar_id]
        c0 = seq[t].close
        out: dict[str, dict[str, Any]] = {"returns": {}, "mfe": {}, "mae": {}, "hit": {}}
        for h in horizons:
            if t + h >= len(seq):
                continue  # pending: the bar t+h has not closed
            later = seq[t + 1 : t + h + 1]
            r = d * (seq[t + h].close / c0 - 1)
            if d == 1:
                mfe = max(b.high / c0 - 1 for b in later)
                mae = min(b.low / c0 - 1 for b in later)
            else:
                mfe = max(1 - b.low / c0 for b in later)
                mae = min(1 - b.high / c0 for b in later)
            k = str(h)
            out["returns"][k], out["mfe"][k], out["mae"][k] = r, mfe, mae
            out["hit"][k] = r > COST_BPS / 1e4
        return out

    expected: dict[tuple[str, str, str], dict[str, Any]] = {}
    for e in events:
        for name, value in e.patterns.items():
            expected[("pattern", e.bar.id, name)] = paths(e.bar.id, 1 if value > 0 else -1)
    for s in signals:
        bar = s.id.rsplit(":", 1)[0]
        expected[("signal", s.id, "")] = paths(bar, 1 if s.direction == "long" else -1)
    return expected


def check_against_loop(ticks: list[Tick], config: EngineConfig, partitions: int) -> int:
    out = replay_ticks(ticks, config, partitions)
    events = sorted_events(out.events, config)
    signals = score_events(events, Model())
    tf_ms = {t.name: t.ms for t in config.timeframes}
    horizons = config.outcomes.horizons
    lines = outcome_lines(events, signals, out.outcomes, tf_ms, horizons)
    expected = independent_lines(out.bars, events, signals, horizons)
    got = {
        (line["kind"], line["id"], line.get("pattern", "")): {
            k: line[k] for k in ("returns", "mfe", "mae", "hit")
        }
        for line in lines
    }
    assert len(got) == len(lines), "one line per firing"
    assert got.keys() == expected.keys()
    for line in lines:  # pending horizons are absent, and listed
        assert line["pending"] == [str(h) for h in horizons if str(h) not in line["returns"]]
    for key, want in expected.items():
        assert got[key] == want, key  # exactly: same doubles, not approximately
    assert any(line["returns"] for line in lines), "some horizons should have completed"
    assert any(len(line["returns"]) < len(HORIZONS) for line in lines), "and some pending"
    return len(lines)


CONFIG = EngineConfig(
    timeframes=parse_timeframes("1s,5s"),
    allowed_lateness_ms=5000,
    outcomes=OutcomeConfig(HORIZONS, COST_BPS),
)


@pytest.mark.parametrize("recording", RECORDINGS)
def test_outcomes_on_the_recordings_equal_a_loop_over_the_bars(recording: str) -> None:
    ticks = list(read_ticks(DATA / recording, "binance"))
    assert check_against_loop(ticks, CONFIG, partitions=4) > 500


def test_outcomes_on_a_long_random_walk_equal_a_loop_over_the_bars() -> None:
    """Some 17,000 bars of four symbols (1s/5s/15s); horizons up to 50 bars."""
    config = EngineConfig(
        timeframes=parse_timeframes("1s,5s,15s"),
        allowed_lateness_ms=1000,
        outcomes=OutcomeConfig((1, 2, 5, 10, 20, 50), COST_BPS),
    )
    ticks = list(synthetic_ticks("binance", 4, 8.0, seed=11, count=30_000))
    assert check_against_loop(ticks, config, partitions=2) > 20_000


def outcome_rows(out: Output) -> list[tuple[Any, ...]]:
    return sorted(tuple(o.to_list()) for o in out.outcomes)


def test_outcomes_do_not_depend_on_batches_or_partitions() -> None:
    """(Checkpoints at any point: ``test_detectors_partition``'s restore test compares them.)"""
    ticks = list(synthetic_ticks("binance", 3, 4.0, seed=5, count=6_000))
    reference = outcome_rows(replay_ticks(ticks, CONFIG, partitions=1))
    assert reference
    assert outcome_rows(replay_ticks(ticks, CONFIG, partitions=3, batch_size=61)) == reference
    engine = PartitionEngine(CONFIG)
    out = Output()
    for a in range(0, len(ticks), 777):
        out.extend(engine.apply(TickBatch.from_ticks(ticks[a : a + 777])))
    out.extend(engine.close_all())
    assert outcome_rows(out) == reference


def test_a_checkpoint_keeps_pending_outcomes_and_refuses_other_horizons() -> None:
    ticks = list(synthetic_ticks("binance", 2, 4.0, seed=9, count=4_000))
    engine = PartitionEngine(CONFIG)
    engine.apply(TickBatch.from_ticks(ticks))
    assert (engine.space.outcomes.age >= 0).any(), "some events should be pending"
    restored = checkpoint.loads(checkpoint.dumps(engine), CONFIG)
    rows = restored.space.outcomes.rows
    assert np.array_equal(restored.space.outcomes.age, engine.space.outcomes.age[:rows])
    other = EngineConfig(
        timeframes=CONFIG.timeframes,
        allowed_lateness_ms=5000,
        outcomes=OutcomeConfig((1, 5)),
    )
    with pytest.raises(checkpoint.CheckpointMismatch, match="outcome_horizons"):
        checkpoint.loads(checkpoint.dumps(engine), other)


def test_no_outcome_before_its_bar_closes() -> None:
    """A horizon completes only when the bar t+h closes: never from an open bar."""
    ticks = list(synthetic_ticks("binance", 1, 4.0, seed=1, count=3_000))
    engine = PartitionEngine(CONFIG)
    out = Output()
    closed: set[str] = set()
    for a in range(0, len(ticks), 50):
        step = engine.apply(TickBatch.from_ticks(ticks[a : a + 50]))
        closed.update(b.id for b in step.bars)
        out.extend(step)
        by_series: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for bar_id in closed:
            ex, sym, tf, ot = bar_id.split(":")
            by_series[(ex, sym, tf)].append(int(ot))
        for o in step.outcomes:
            times = sorted(by_series[(o.exchange, o.symbol, o.timeframe)])
            t = times.index(o.open_time)
            assert t + o.horizon < len(times), "the bar t+h must have closed already"
    assert out.outcomes


def test_outcome_stream_codec_round_trips() -> None:
    items = [
        BarOutcome("binance", "BTC", "1m", 60_000, 5, 100.0, 0.01, 0.02, -0.01, 1.0, None, 1.5, 0),
        BarOutcome("binance", "ETH", "1m", 0, 1, 10.0, -0.0, 0.0, -0.5, None, 0.01, None, 2.5),
    ]
    assert decode_outcomes(encode_outcomes(items)) == items
    for bad in ({b"v": b"2", b"d": b"[]"}, {b"v": b"1", b"d": b"{}"}, {b"v": b"1", b"d": b"[[1]]"}):
        with pytest.raises(DecodeError):
            decode_outcomes(bad)


def encode_records(outcomes: list[BarOutcome]) -> dict[bytes, bytes]:
    """The ``outcomes`` entry as written before the engine emitted columns: one record each."""
    items = [tuple(o) for o in outcomes]
    return {b"v": b"1", b"n": b"%d" % len(items), b"d": orjson.dumps(items)}


def test_outcome_columns_write_the_bytes_the_records_did() -> None:
    """The engine's columns (several steps' parts, warming regimes as None) encode to the
    same entry as their records, which are what a consumer decodes."""
    assert [f.name for f in fields(OutcomeColumns)] == list(BarOutcome._fields)
    ticks = list(synthetic_ticks("binance", 3, 4.0, seed=5, count=6_000))
    engine = PartitionEngine(CONFIG)
    out = Output()
    for a in range(0, len(ticks), 500):
        out.extend(engine.apply(TickBatch.from_ticks(ticks[a : a + 500])))
    assert len(out.outcome_parts) > 1
    records = out.outcomes
    assert any(o.trend is None for o in records) and any(o.trend is not None for o in records)
    columns = out.outcome_columns()
    assert len(columns) == len(records)
    assert columns.to_outcomes() == records
    assert columns.encode() == encode_records(records) == encode_outcomes(records)
    assert encode_outcome_parts(out.outcome_parts) == encode_records(records)
    assert decode_outcomes(columns.encode()) == records
    for part in out.outcome_parts:
        assert part.encode() == encode_records(part.to_outcomes())
    items = [
        BarOutcome("binance", "BTC", "1m", 60_000, 5, 100.0, 0.01, 0.02, -0.01, 1.0, None, 1.5, 0),
        BarOutcome("binance", "ETH", "1m", 0, 1, 10.0, -0.0, 0.0, -0.5, None, 0.01, None, 2.5),
    ]
    parts = [OutcomeColumns.from_outcomes(items[:1]), OutcomeColumns.from_outcomes(items[1:])]
    assert OutcomeColumns.concat(parts).encode() == encode_records(items)
    empty = OutcomeColumns.concat([])
    assert empty.encode() == encode_records([])
    assert encode_outcome_parts([parts[0], empty, parts[1]]) == encode_records(items)
    assert not Output().outcome_columns() and Output().outcomes == []


def test_outcome_settings_are_validated() -> None:
    assert outcome_config_from_env({}) == OutcomeConfig((1, 5, 10, 20), 0.0)
    assert outcome_config_from_env({"OUTCOME_HORIZONS": "20, 3"}).horizons == (3, 20)
    assert outcome_config_from_env({"OUTCOME_HORIZONS": "off"}).horizons == ()
    assert parse_horizons("1,2") == (1, 2)
    bad_settings = [
        {"OUTCOME_HORIZONS": "1,x"},
        {"OUTCOME_HORIZONS": "0"},
        {"OUTCOME_HORIZONS": "5,5"},
        {"OUTCOME_HORIZONS": ","},
        {"OUTCOME_COST_BPS": "-1"},
        {"OUTCOME_COST_BPS": "x"},
    ]
    for bad in bad_settings:
        with pytest.raises(ConfigError) as e:
            outcome_config_from_env(bad)
        assert e.value.variable in bad


def test_tracking_off_emits_no_outcomes() -> None:
    config = EngineConfig(timeframes=CONFIG.timeframes, outcomes=OutcomeConfig(()))
    ticks = list(synthetic_ticks("binance", 2, 4.0, seed=9, count=2_000))
    out = replay_ticks(ticks, config, partitions=1)
    assert out.events and not out.outcomes
    engine = PartitionEngine(config)
    engine.apply(TickBatch.from_ticks(ticks))
    assert checkpoint.loads(checkpoint.dumps(engine), config).space.outcomes.age.size == 0


def as_version_1(blob: bytes) -> bytes:
    """A checkpoint as the code before outcome tracking wrote it (v1: no ``out_*`` arrays,
    no ``outcome_horizons`` in the fingerprint)."""
    (size,) = struct.unpack("<I", blob[4:8])
    header = orjson.loads(blob[8 : 8 + size])
    header["v"] = 1
    del header["config"]["outcome_horizons"]
    with np.load(io.BytesIO(blob[8 + size :])) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("out_")}
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    head = orjson.dumps(header)
    return checkpoint.MAGIC + struct.pack("<I", len(head)) + head + buf.getvalue()


def test_a_checkpoint_from_before_outcomes_restores_with_nothing_pending() -> None:
    ticks = list(synthetic_ticks("binance", 2, 4.0, seed=9, count=4_000))
    engine = PartitionEngine(CONFIG)
    engine.apply(TickBatch.from_ticks(ticks[:2_000]), entry_id="1-0")
    old = as_version_1(checkpoint.dumps(engine))
    restored = checkpoint.loads(old, CONFIG)
    assert restored.last_id == "1-0"
    assert not (restored.space.outcomes.age >= 0).any()
    later = restored.apply(TickBatch.from_ticks(ticks[2_000:]))
    reference = engine.apply(TickBatch.from_ticks(ticks[2_000:]))
    assert later.bars == reference.bars and later.events == reference.events
    # Only events after the restore have outcomes; theirs are the uninterrupted engine's.
    assert later.outcomes and set(map(repr, later.outcomes)) < set(map(repr, reference.outcomes))
    with pytest.raises(checkpoint.CheckpointMismatch):
        other = EngineConfig(timeframes=parse_timeframes("1s"), outcomes=CONFIG.outcomes)
        checkpoint.loads(old, other)


def test_a_checkpoint_holds_only_the_pending_slots() -> None:
    """The rings are saved sparsely: a checkpoint grows with pending events, not with
    rows x max(horizons) (dense, 1,000 symbols x 6 timeframes doubled its size)."""
    # 40 busy symbols, and 400 that trade once (rows, but nothing pending on them).
    quiet = list(synthetic_ticks("kraken", 400, 1000.0, seed=3, count=400))
    ticks = quiet + list(synthetic_ticks("binance", 40, 20.0, seed=3, count=4_000))
    on, off = PartitionEngine(CONFIG), PartitionEngine(replace(CONFIG, outcomes=OutcomeConfig(())))
    for engine in (on, off):
        engine.apply(TickBatch.from_ticks(ticks))
    pending = int((on.space.outcomes.age >= 0).sum())
    assert pending > 0
    per_slot = 8 * (4 + len(FLOAT_STATE))  # row, slot, age, open_time and the floats
    extra = len(checkpoint.dumps(on)) - len(checkpoint.dumps(off))
    assert extra <= pending * per_slot + 10 * 1024  # + the archive's per-array headers
    assert on.space.outcomes.rows * on.space.outcomes.width * per_slot > 4 * extra
