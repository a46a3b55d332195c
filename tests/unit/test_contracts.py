from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from common import columns
from common.columns import (
    BAR_DTYPE,
    FIRED_DTYPE,
    EventColumns,
    bar_columns,
    decode_bars,
    decode_events,
    encode_bars,
    encode_events,
    event_columns,
    feature_dicts,
    pattern_dicts,
    recent_documents,
)
from common.contracts import Bar, PatternEvent, Tick, TickBatch, encode_recent_entry
from common.errors import DecodeError
from common.names import Keys, partition_of


def _tick(i: int, symbol: str = "BTC-USDT", side: str = "buy") -> Tick:
    return Tick(
        "binance",
        symbol,
        symbol.replace("-", ""),
        str(1000 + i),
        61000.5 + i,
        0.25,
        side,
        1_723_161_255_342_000_000 + i,
        1_723_161_255_400_000_000 + i,
    )  # type: ignore[arg-type]


def test_tick_batch_round_trips_through_its_stream_encoding() -> None:
    ticks = [_tick(0), _tick(1, "ETH-USDT", "sell"), _tick(2)]
    batch = TickBatch.decode(TickBatch.from_ticks(ticks).encode())
    assert list(batch) == ticks
    assert batch.symbols == [("binance", "BTC-USDT", "BTCUSDT"), ("binance", "ETH-USDT", "ETHUSDT")]


def test_empty_tick_batch_round_trips() -> None:
    assert list(TickBatch.decode(TickBatch.from_ticks([]).encode())) == []


def test_concatenated_tick_batches_keep_order_and_list_each_symbol_once() -> None:
    parts = [
        [_tick(0), _tick(1, "ETH-USDT", "sell")],
        [],
        [_tick(2, "SOL-USDT"), _tick(3), _tick(4, "ETH-USDT")],
        [_tick(5, "SOL-USDT", "sell")],
    ]
    batches = [TickBatch.decode(TickBatch.from_ticks(p).encode()) for p in parts]
    merged = TickBatch.concat(batches)
    assert list(merged) == [t for p in parts for t in p]
    assert [s for _, s, _ in merged.symbols] == ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    assert list(TickBatch.decode(merged.encode())) == list(merged)
    assert [t.symbol for t in batches[2]] == ["SOL-USDT", "BTC-USDT", "ETH-USDT"]  # untouched
    assert TickBatch.concat(batches[:1]) is batches[0]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda f: f.pop(b"a"),
        lambda f: f.__setitem__(b"n", b"7"),
        lambda f: f.__setitem__(b"v", b"9"),
        lambda f: f.__setitem__(b"s", b"not json"),
        lambda f: f.__setitem__(b"a", b"\x00" * 5),
        lambda f: f.__setitem__(b"s", b"[]"),
    ],
)
def test_malformed_tick_batch_raises_decode_error(mutate: object) -> None:
    fields = TickBatch.from_ticks([_tick(0), _tick(1)]).encode()
    mutate(fields)  # type: ignore[operator]
    with pytest.raises(DecodeError):
        TickBatch.decode(fields)


def test_bar_and_pattern_event_round_trip_with_deterministic_ids() -> None:
    bar = Bar(
        "binance", "BTC-USDT", "1m", 1_723_161_240_000, 1.0, 2.0, 0.5, 1.5, 10.0, 15.0, 7, 4.0, 1.5
    )
    assert Bar.decode(bar.encode()) == bar
    assert bar.id == "binance:BTC-USDT:1m:1723161240000"
    ev = PatternEvent(bar, {"CDLHAMMER": 100}, {"rsi": 42.0, "trend": -1}, [])
    assert PatternEvent.decode(ev.encode()) == ev
    assert ev.id == bar.id
    with pytest.raises(DecodeError):
        PatternEvent.decode({b"v": b"1", b"d": b'{"patterns": {}}'})


def test_partition_is_stable_and_keys_share_the_partition_hash_tag() -> None:
    # CRC-32 is fixed by definition: these values must never change between releases.
    assert partition_of("binance", "BTC-USDT", 16) == partition_of("binance", "BTC-USDT", 16)
    assert {partition_of("binance", f"S{i}-USDT", 8) for i in range(200)} == set(range(8))
    k = Keys(partitions=8, namespace="ns:")
    assert k.ticks(3) == "ns:ticks:{3}"
    assert k.lease(3).endswith("{3}") and k.checkpoint(3).endswith("{3}")
    assert k.signal_ids == "{ns:signals}:ids"
    assert k.dlq(k.bars) == "ns:dlq:bars"


# --- columnar bars / patterns (v2, common.columns) ------------------------------------------
def _bar(i: int, symbol: str = "BTC-USDT", tf: str = "1m") -> Bar:
    t = 1_723_161_240_000 + i * 60_000
    return Bar("binance", symbol, tf, t, 1.0 + i, 2.5, 0.5, 1.5, 10 / 3, 15.1, 7 + i, 4.0, 1.5 / 7)


def _events() -> list[PatternEvent]:
    recent = [{"open_time": 1, "patterns": {"CDLDOJI": 100}, "features": {"trend": 1}}]
    return [
        PatternEvent(
            _bar(0),
            {"CDLHAMMER": 100, "CDLDOJI": 100},
            {"rsi": 42.5, "trend": -1, "atr": None},
            [],
        ),
        PatternEvent(
            _bar(1, "ETH-USDT", "5m"),
            {"CDLENGULFING": -100},
            {"rsi": 1 / 3, "trend": None, "atr": 0.1},
            recent,
        ),
        PatternEvent(_bar(2), {"CDLDOJI": 200}, {"rsi": None, "trend": 0, "atr": 2.0}, []),
    ]


def test_bar_columns_round_trip_to_equal_bars() -> None:
    bars = [_bar(0), _bar(1, "ETH-USDT"), _bar(2, tf="5m"), _bar(3)]
    (fields,) = encode_bars(bars)
    assert fields[b"v"] == b"2" and fields[b"n"] == b"4"
    assert decode_bars(fields) == bars
    cols = bar_columns(fields)
    assert cols.ids() == [b.id for b in bars]
    assert cols.timeframe_counts() == {"1m": 3, "5m": 1}
    assert encode_bars([]) == []


def test_event_columns_round_trip_to_equal_events_with_exact_types() -> None:
    events = _events()
    (fields,) = encode_events(events)
    got = decode_events(fields)
    assert got == events
    assert [type(e.features["trend"]) for e in got] == [int, type(None), int]
    assert list(got[0].patterns) == ["CDLHAMMER", "CDLDOJI"]  # each event's own order
    cols = event_columns(fields)
    assert cols.pattern_counts() == {"CDLHAMMER": 1, "CDLDOJI": 2, "CDLENGULFING": 1}


def test_columns_split_into_bounded_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns, "MAX_ENTRY_RECORDS", 2)
    events = _events()
    entries = encode_events(events)
    assert [int(f[b"n"]) for f in entries] == [2, 1]
    assert [e for f in entries for e in decode_events(f)] == events
    merged = EventColumns.concat([event_columns(f) for f in entries])
    assert merged.to_events() == events


def test_events_with_other_feature_names_go_to_their_own_entry() -> None:
    events = [*_events(), PatternEvent(_bar(5), {"CDLDOJI": 100}, {"x": 1.0}, [])]
    entries = encode_events(events)
    assert len(entries) == 2
    assert [e for f in entries for e in decode_events(f)] == events


def test_recent_entries_travel_as_documents_sliced_out_unparsed() -> None:
    """A v3 ``patterns`` entry carries each ``recent`` entry's JSON document as it is (the
    detector's bytes, reused by later events): decoding slices them out, ``to_events`` parses
    them. A document the detector holds encoded goes out unchanged."""
    events = _events()
    doc = orjson.dumps(events[1].recent[0])
    cols = EventColumns.from_events(events)
    cols.recent = [[], [b'{"open_time":1, "patterns":{"CDLDOJI":100},"features":{"trend":1}}'], []]
    (fields,) = cols.encode()
    assert fields[b"v"] == b"3"
    assert np.frombuffer(fields[b"rc"], "<u4").tolist() == [0, 1, 0]
    decoded = event_columns(fields)
    assert decoded.recent == [[], [cols.recent[1][0]], []]
    assert decoded.to_events() == events
    (fields,) = encode_events(events)  # from records: each entry encoded once
    assert fields[b"r"] == doc and event_columns(fields).recent[1] == [doc]


def test_recent_documents_are_byte_for_byte_the_per_event_encoding() -> None:
    """``recent_documents`` (column-wise, what the detectors and the signals stage build) gives
    each event's ``encode_recent_entry`` of its ``pattern_dicts`` and ``feature_dicts`` row:
    random feature tables (integer and float columns, NaN, tiny and huge values, none at all)
    and 0-3 patterns an event; None where that encoding would not mean the values (an
    infinite feature) or a pattern is named twice."""
    rng = np.random.default_rng(17)
    names = [f"CDL{i:02d}" for i in range(61)]
    for trial in range(400):
        n = int(rng.integers(1, 30))
        table = [(f"f{j}", bool(rng.integers(0, 2))) for j in range(int(rng.integers(0, 5)))]
        matrix = rng.normal(0.0, 10.0 ** float(rng.integers(-9, 18)), (n, len(table)))
        matrix[rng.random(matrix.shape) < 0.2] = np.nan
        for j, (_, is_int) in enumerate(table):
            if is_int:
                matrix[:, j] = np.trunc(matrix[:, j])
        floats = [j for j, (_, is_int) in enumerate(table) if not is_int]
        if trial % 7 == 0 and floats:  # (an integer feature is never infinite: ``int()``)
            matrix[0, floats[-1]] = -np.inf if trial % 2 else np.inf
        rows = [
            (e, int(p), int(rng.choice([-200, -100, 0, 100, 200])))
            for e in range(n)
            for p in sorted(rng.choice(61, int(rng.integers(0, 4)), replace=False))
        ]
        fired = np.array(rows, FIRED_DTYPE)
        open_times = rng.integers(0, 2**52, n).tolist()
        got = recent_documents(open_times, names, fired, table, matrix)
        want = [
            None if np.isinf(matrix[i]).any() else encode_recent_entry(t, p, f)
            for i, (t, p, f) in enumerate(
                zip(
                    open_times,
                    pattern_dicts(names, fired, n),
                    feature_dicts(table, matrix),
                    strict=True,
                )
            )
        ]
        assert got == want
    twice = np.array([(0, 0, 100), (1, 0, 100), (1, 1, -100)], FIRED_DTYPE)
    docs = recent_documents([5, 6], ["CDLDOJI", "CDLDOJI"], twice, [], np.empty((2, 0)))
    assert docs == [b'{"open_time":5,"patterns":{"CDLDOJI":100},"features":{}}', None]
    assert recent_documents([], names, np.empty(0, FIRED_DTYPE), [], np.empty((0, 0))) == []


def test_v2_pattern_entries_left_in_a_stream_still_decode() -> None:
    """What detectors wrote before v3: ``r`` one JSON array of the events' lists."""
    events = _events()
    (fields,) = encode_events(events)
    v2 = {k: v for k, v in fields.items() if k not in (b"rl", b"rc")}
    v2[b"v"], v2[b"r"] = b"2", orjson.dumps([e.recent for e in events])
    assert decode_events(v2) == events
    assert event_columns(v2).recent == [e.recent for e in events]


def test_bars_entries_have_no_v3() -> None:
    (fields,) = encode_bars([_bar(0)])
    with pytest.raises(DecodeError) as err:
        decode_bars({**fields, b"v": b"3"})
    assert err.value.reason == "bar"


def test_v1_entries_still_decode_as_one_record_batches() -> None:
    bar = _bar(0)
    event = _events()[1]
    assert decode_bars(bar.encode()) == [bar]
    assert bar_columns(bar.encode()).to_bars() == [bar]
    assert decode_events(event.encode()) == [event]
    assert event_columns(event.encode()).to_events() == [event]


def _drop(key: bytes) -> Any:
    return lambda f: f.pop(key)


def _set(key: bytes, value: bytes) -> Any:
    return lambda f: f.__setitem__(key, value)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (_set(b"v", b"9"), "pattern_event"),
        (_drop(b"v"), "pattern_event"),
        (_set(b"v", b"2"), "pattern_columns"),  # v2's ``r`` is one JSON array
        (_drop(b"b"), "bar_columns"),
        (_set(b"n", b"9"), "bar_columns"),
        (_set(b"b", b"\x00" * 7), "bar_columns"),
        (_set(b"k", b"[]"), "bar_columns"),
        (_set(b"k", b'[["a", "b"]]'), "bar_columns"),
        (_set(b"p", b"not json"), "pattern_columns"),
        (_set(b"p", b"[]"), "pattern_columns"),
        (_set(b"f", b"\x00" * 3), "pattern_columns"),
        (_set(b"x", b'[["rsi", "q"]]'), "pattern_columns"),
        (_set(b"m", b"\x00" * 8), "pattern_columns"),
        (_set(b"r", b"[]"), "pattern_columns"),
        (_set(b"r", b"[1, 2, 3]"), "pattern_columns"),
        (_drop(b"rl"), "pattern_columns"),
        (_set(b"rl", b"\x00" * 3), "pattern_columns"),
        (_set(b"rl", b"\x00" * 8), "pattern_columns"),  # one document too many
        (_set(b"rc", b"\x01\x00\x00\x00"), "pattern_columns"),  # counts for 1 of 3 events
        (_set(b"rc", b"\x00" * 12), "pattern_columns"),  # 0 documents, 1 in ``rl``
        (_set(b"r", b'{"open_time": 1}'), "pattern_columns"),  # lengths past the bytes
        (lambda f: f.__setitem__(b"r", b"x" * len(f[b"r"])), "pattern_columns"),  # not JSON
    ],
)
def test_malformed_pattern_columns_raise_decode_error_with_reason(mutate: Any, reason: str) -> None:
    (fields,) = encode_events(_events())
    mutate(fields)
    with pytest.raises(DecodeError) as err:
        decode_events(fields)
    assert err.value.reason == reason


def test_out_of_range_indexes_raise_decode_error() -> None:
    (fields,) = encode_events(_events())
    fired = np.frombuffer(fields[b"f"], FIRED_DTYPE).copy()
    fired["event"][-1] = 3  # past the 3 events
    with pytest.raises(DecodeError, match="out of range"):
        decode_events({**fields, b"f": fired.tobytes()})
    (bars,) = encode_bars([_bar(0)])
    rec = np.frombuffer(bars[b"b"], BAR_DTYPE).copy()
    rec["key"] = 1
    with pytest.raises(DecodeError, match="key index"):
        decode_bars({**bars, b"b": rec.tobytes()})
