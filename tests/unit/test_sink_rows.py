"""Pure parts of the sink: entry -> row mapping, migration planning, settings, pending batch."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from common.columns import encode_bars, encode_events
from common.errors import ConfigError, DecodeError
from common.stream_worker import Entry
from signals.contract import Signal, encode_entry
from sink.batch import PendingBatch
from sink.migrate import Flavor, discover, plan
from sink.rows import DECODERS, SIGNALS, TABLES, ns_to_dt, parse_iso
from sink.settings import SinkSettings, env_duration_s
from sink.store import columns_of, insert_unnest_sql
from tests.sink_support import T0, make_bar, make_event, make_signal, make_ticks


def test_tick_rows_keep_every_field_and_truncate_to_microseconds() -> None:
    rows = DECODERS["ticks"](make_ticks(0, 3).encode())
    assert len(rows) == 3
    t, exchange, symbol, trade_id, price, qty, side, recv = rows[1]
    assert (exchange, symbol, trade_id, price, qty, side) == (
        "binance",
        "BTCUSDT",
        "1",
        101.0,
        0.5,
        "buy",
    )
    assert t == datetime(2024, 8, 8, 23, 54, 0, 1000, tzinfo=UTC)
    assert recv == ns_to_dt(T0 * 1_000_000 + 1_000_001)
    assert ns_to_dt(1_999) == ns_to_dt(1_000)  # sub-microsecond part dropped, never rounded up
    assert all(len(r) == len(TABLES["ticks"].columns) for r in rows)


def test_bar_pattern_and_signal_rows() -> None:
    (bar,) = DECODERS["bars"](make_bar(2).encode())
    assert bar[:4] == ("binance", "BTCUSDT", "1m", datetime(2024, 8, 8, 23, 56, tzinfo=UTC))
    patterns = DECODERS["patterns"](make_event(0).encode())
    assert [(r[4], r[5]) for r in patterns] == [("CDLDOJI", -100), ("CDLHAMMER", 100)]
    (sig,) = DECODERS["signals"](make_signal(0))
    row = dict(zip(SIGNALS.columns, sig, strict=True))
    assert row["time"] == row["open_time"] == datetime(2024, 8, 8, 23, 54, tzinfo=UTC)
    assert row["emitted_at"] == datetime(2024, 8, 8, 23, 55, 0, 12000, tzinfo=UTC)
    assert orjson.loads(row["patterns"]) == {"CDLHAMMER": 100}
    assert orjson.loads(row["doc"])["supporting"] == ["CDLHAMMER"]


def test_columnar_entries_give_the_same_rows_as_one_record_entries() -> None:
    bars = [make_bar(i) for i in range(4)]
    events = [make_event(i) for i in range(3)]
    (bar_fields,) = encode_bars(bars)
    (event_fields,) = encode_events(events)
    assert DECODERS["bars"](bar_fields) == [r for b in bars for r in DECODERS["bars"](b.encode())]
    assert DECODERS["patterns"](event_fields) == [
        r for e in events for r in DECODERS["patterns"](e.encode())
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {b"v": b"1", b"d": b"[1]"},
        {b"v": b"1", b"d": b"{}"},
        {b"v": b"1"},
        {b"d": orjson.dumps({**orjson.loads(make_signal(0)[b"d"]), "v": 2})},
        {b"d": orjson.dumps({**orjson.loads(make_signal(0)[b"d"]), "score": "high"})},
        {b"d": orjson.dumps({**orjson.loads(make_signal(0)[b"d"]), "emitted_at": "yesterday"})},
        {b"d": orjson.dumps({**orjson.loads(make_signal(0)[b"d"]), "patterns": []})},
    ],
)
def test_bad_signals_raise_decode_error(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(DecodeError):
        DECODERS["signals"](fields)


def test_parse_iso_needs_a_zone() -> None:
    assert parse_iso("2024-08-08T23:55:00.012+02:00").hour == 21
    with pytest.raises(ValueError):
        parse_iso("2024-08-08T23:55:00")


def test_migration_plan_per_flavor(tmp_path: Path) -> None:
    for name in ("0001_a.sql", "0002_b.plain.sql", "0002_b.timescale.sql", "0003_c.tsl.sql"):
        (tmp_path / name).write_text(f"-- {name}")
    (tmp_path / "README").write_text("not a migration")
    files = discover(tmp_path)
    sql = {f: {s.version: s.sql for s in plan(files, set(), f)} for f in Flavor}
    assert sql[Flavor.PLAIN] == {1: ("-- 0001_a.sql",), 2: ("-- 0002_b.plain.sql",), 3: ()}
    assert sql[Flavor.APACHE][2] == ("-- 0002_b.timescale.sql",) and sql[Flavor.APACHE][3] == ()
    assert sql[Flavor.TIMESCALE][3] == ("-- 0003_c.tsl.sql",)
    assert [s.version for s in plan(files, {1, 2}, Flavor.PLAIN)] == [3]
    (tmp_path / "4_bad.sql").write_text("")
    with pytest.raises(ValueError, match="badly named"):
        discover(tmp_path)


def test_shipped_migrations_are_well_named() -> None:
    versions = sorted({f.version for f in discover()})
    assert versions == list(range(1, len(versions) + 1))


def test_settings_from_env() -> None:
    s = SinkSettings.from_env(
        {"DATABASE_URL": "postgresql://u:secret@db/x", "STORE_TICKS": "yes",
         "SINK_BATCH_ROWS": "100", "RETENTION_BARS": "90d", "SINK_WRITE_METHOD": "UNNEST"}
    )  # fmt: skip
    assert s.store_ticks and s.batch_rows == 100 and s.write_method == "unnest"
    assert (s.flush_ms, s.linger_ms) == (500, 250)
    assert SinkSettings.from_env({"SINK_FLUSH_MS": "100", "SINK_LINGER_MS": "0"}).linger_ms == 0
    assert s.retention_s == {"ticks": 7 * 86_400, "bars": 90 * 86_400, "patterns": 0, "signals": 0}
    assert "secret" not in repr(s) and "secret" not in str(s.redacted())
    for env, var in [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"SINK_BATCH_ROWS": "0"}, "SINK_BATCH_ROWS"),
        ({"RETENTION_TICKS": "7 days"}, "RETENTION_TICKS"),
        ({"SINK_WRITE_METHOD": "insert"}, "SINK_WRITE_METHOD"),
        ({"SINK_FLUSH_MS": "100", "SINK_LINGER_MS": "101"}, "SINK_LINGER_MS"),
    ]:
        with pytest.raises(ConfigError) as err:
            SinkSettings.from_env(env)
        assert err.value.variable == var
    assert env_duration_s({}, "X", "12h") == 43_200


def test_pending_batch_bookkeeping() -> None:
    b = PendingBatch()
    assert not b and not b.due(1, 0.0)
    e1 = Entry("bars", "1000-0", {})
    e2 = Entry("bars", "2500-1", {})
    b.add(e1, "bars", [("a",)])
    b.add(e2, "bars", [("b",), ("c",)])
    b.add(Entry("ticks:{0}", "900-0", {}), "ticks", [])
    assert b.count == 3 and len(b.entries) == 3 and b.origins["bars"] == [e1, e2, e2]
    assert b.due(3, 3600) and not b.due(4, 3600) and b.due(4, 0.0)
    assert b.newest_ms() == {"bars": 2500, "ticks:{0}": 900}


def test_unnest_sql_and_columns() -> None:
    assert "unnest($1::timestamptz[], $2::text[]" in insert_unnest_sql(TABLES["ticks"])
    assert columns_of([(1, "a"), (2, "b")], 2) == [[1, 2], ["a", "b"]]
    assert columns_of([], 3) == [[], [], []]


def test_a_real_signal_entry_maps_to_its_row() -> None:
    """The signals stage's own codec (signals.contract) -> the sink's row: the contracts agree."""
    sig = Signal(
        id=f"binance:BTCUSDT:1m:{T0}:short", exchange="binance", symbol="BTCUSDT",
        timeframe="1m", open_time_ms=T0, direction="short", score=0.25,
        patterns={"CDLENGULFING": -100}, supporting=("CDLENGULFING",),
        features={"rsi": 71.5, "atr": None}, model="m1",
    ).stamped("2024-08-08T23:55:00.500Z")  # fmt: skip
    (row,) = DECODERS["signals"](encode_entry(sig))
    got = dict(zip(SIGNALS.columns, row, strict=True))
    assert got["id"] == sig.id and got["direction"] == "short" and got["score"] == 0.25
    assert got["open_time"] == datetime(2024, 8, 8, 23, 54, tzinfo=UTC)
    assert got["emitted_at"] == datetime(2024, 8, 8, 23, 55, 0, 500_000, tzinfo=UTC)
    assert orjson.loads(got["features"]) == {"rsi": 71.5, "atr": None}
    assert got["model"] == "m1"
