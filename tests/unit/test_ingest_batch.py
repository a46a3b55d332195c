"""``parse_many`` (columnar batch parsing) returns exactly what ``parse`` does frame by frame:
the same ticks for good batches, and for a batch with anything unusual the per-frame
outcome of every frame, each bad frame with the reason ``parse`` gives it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.contracts import Tick, TickBatch
from common.errors import BadInput
from ingest.packing import columns_batch, merge_split
from ingest.venues import EXCHANGES, get_adapter
from ingest.venues.base import ParseResult
from ingest.venues.batch import ParsedBatch
from tests.ingest_samples import (
    BINANCE_FUTURES_AGG,
    BINANCE_FUTURES_TRADE,
    BINANCE_TRADE_SELL,
    CONTROL_FRAMES,
    TRADE_FRAMES,
    recorded_lines,
)

RECV = 1_723_161_255_400_000_000
Outcome = ParseResult | tuple[str, str]


def _one(exchange: str, frame: str | bytes) -> Outcome:
    try:
        return get_adapter(exchange).parse(frame, RECV)
    except BadInput as e:
        return (e.reason, e.detail)


def _per_frame(exchange: str, frames: list[Any]) -> list[Outcome]:
    return [_one(exchange, f) for f in frames]


def _outcomes(batch: ParsedBatch) -> list[Outcome]:
    return [(r.reason, r.detail) if isinstance(r, BadInput) else r for r in batch.outcomes]


def _assert_same_as_parse(exchange: str, frames: list[Any]) -> ParsedBatch:
    batch = get_adapter(exchange).parse_many(frames, RECV)
    expected = _per_frame(exchange, frames)
    if batch.columns is not None:
        assert batch.outcomes == ()
        assert all(isinstance(r, ParseResult) and r.kind == "trade" for r in expected)
        assert batch.columns.size == len(batch.columns.ticks())
    else:
        assert _outcomes(batch) == expected
    want: list[Tick] = [t for r in expected if isinstance(r, ParseResult) for t in r.ticks]
    assert batch.ticks() == want
    return batch


def _trade(tid: int, sample: str = BINANCE_TRADE_SELL, **changes: Any) -> str:
    """``sample`` (a combined-stream frame with a ``t`` id) with id ``tid`` and ``changes``."""
    doc = orjson.loads(sample)
    doc["data"]["t"] = tid
    doc["data"].update(changes)
    return json.dumps(doc)


def test_recorded_trade_frames_come_back_in_columns() -> None:
    frames = [fr for _, fr in recorded_lines() if fr.startswith(b'{"stream":"btcusdt@trade"')]
    batch = _assert_same_as_parse("binance", frames)
    cols = batch.columns
    assert cols is not None and cols.size == len(frames) > 1000
    assert cols.seq.tolist() == [int(t) for t in cols.trade_ids]
    assert set(cols.symbols) == {"BTC-USDT"} and set(cols.natives) == {"BTCUSDT"}
    assert cols.buy.any() and not cols.buy.all()  # both taker sides occur


def test_futures_and_bare_payloads() -> None:
    bare = orjson.loads(BINANCE_TRADE_SELL)["data"]
    _assert_same_as_parse("binance", [json.dumps(bare), BINANCE_TRADE_SELL])
    batch = _assert_same_as_parse("binance-futures", [BINANCE_FUTURES_AGG] * 3)
    assert batch.columns is not None
    assert batch.ticks()[0].symbol == "BTC-USDT-PERP" and batch.ticks()[0].side == "sell"


def _futures_trade(tid: int, **changes: Any) -> str:
    return _trade(tid, BINANCE_FUTURES_TRADE, **changes)


def test_futures_raw_trades_come_back_in_columns() -> None:
    frames = [_futures_trade(i, m=i % 2 == 0) for i in range(1, 6)]
    batch = _assert_same_as_parse("binance-futures", frames)
    assert batch.columns is not None
    assert [t.trade_id for t in batch.ticks()] == ["1", "2", "3", "4", "5"]
    assert {t.symbol for t in batch.ticks()} == {"BTC-USDT-PERP"}
    assert [t.side for t in batch.ticks()][:2] == ["buy", "sell"]


@pytest.mark.parametrize(
    ("odd", "outcome"),
    [
        (BINANCE_FUTURES_AGG, "trade"),  # both streams in one batch: each frame parsed
        (_futures_trade(9, X="INSURANCE_FUND"), "ignored"),
        (_futures_trade(9, X="ADL"), "ignored"),
        (_futures_trade(9, X="LIMIT"), "bad_type"),
        (_futures_trade(9, X=None), "bad_type"),
        (_futures_trade(9, e="trades"), "unknown_frame"),
    ],
)
def test_futures_raw_trade_batches_with_other_frames(odd: str, outcome: str) -> None:
    frames = [_futures_trade(7), odd, _futures_trade(8)]
    batch = _assert_same_as_parse("binance-futures", frames)
    assert batch.columns is None
    got = batch.outcomes[1]
    assert (got.reason if isinstance(got, BadInput) else got.kind) == outcome
    middle = ["5933014"] if outcome == "trade" else []
    assert [t.trade_id for t in batch.ticks()] == ["7", *middle, "8"]


def test_spot_aggtrade_frames_are_bad_input_in_a_batch() -> None:
    batch = _assert_same_as_parse("binance", [_trade(7), BINANCE_FUTURES_AGG, _trade(8)])
    got = batch.outcomes[1]
    assert isinstance(got, BadInput) and got.reason == "unknown_frame"
    assert [t.trade_id for t in batch.ticks()] == ["7", "8"]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{broken", "invalid_json"),
        ('{"result":null,"id":1}', None),  # an ack: per frame, no error
        (_trade(9, p="NaN"), "non_finite"),
        (_trade(9, p="inf"), "non_finite"),
        (_trade(9, q="0"), "non_positive"),
        (_trade(9, p="-1"), "non_positive"),
        (_trade(9, p="1e12"), "absurd_value"),
        (_trade(9, T=1), "absurd_value"),
        (_trade(9, t=True), "bad_type"),
        (_trade(9, t="9"), "bad_type"),
        (_trade(9, m=1), "bad_type"),
        (_trade(9, p="x"), "bad_type"),
        (_trade(9, s="eth-usdt"), "unknown_symbol"),
        (_trade(9, s=""), "unknown_symbol"),
        ('{"stream":"btcusdt@trade","data":[1]}', "bad_type"),
        ("[1,2]", "unknown_frame"),
        ('{"e":"trade","s":"BTCUSDT"}', "missing_field"),
        ("{" + " " * (1 << 20) + "}", "frame_too_large"),
    ],
)
def test_a_bad_frame_is_attributed_to_itself(bad: str, reason: str | None) -> None:
    frames = [_trade(7), _trade(8), bad, _trade(10)]
    batch = _assert_same_as_parse("binance", frames)
    assert batch.columns is None
    got = batch.outcomes[2]
    if reason is None:
        assert isinstance(got, ParseResult) and got.control == "ack"
    else:
        assert isinstance(got, BadInput) and got.reason == reason
    assert all(isinstance(r, ParseResult) for i, r in enumerate(batch.outcomes) if i != 2)
    assert [t.trade_id for t in batch.ticks()] == ["7", "8", "10"]


def test_valid_but_unusual_frames_take_the_exact_path() -> None:
    """Numbers sent as JSON numbers, ids beyond int64: valid for ``parse``, same ticks."""
    for odd in (_trade(9, p=61837.5), _trade(2**63 + 5)):
        batch = _assert_same_as_parse("binance", [_trade(8), odd])
        assert batch.columns is None and len(batch.ticks()) == 2


def test_empty_batch() -> None:
    batch = get_adapter("binance").parse_many([], RECV)
    assert batch.columns is None and batch.outcomes == [] and batch.ticks() == []


@pytest.mark.parametrize("exchange", [e for e in EXCHANGES if not e.startswith("binance")])
def test_other_exchanges_parse_each_frame(exchange: str) -> None:
    frames = [fr for fr, *_ in TRADE_FRAMES.get(exchange, [])]
    frames += [fr for fr, *_ in CONTROL_FRAMES.get(exchange, [])] + ["{broken"]
    batch = _assert_same_as_parse(exchange, frames)
    assert batch.columns is None and len(batch.outcomes) == len(frames)


_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(
        ["NaN", "-0", "1e-400", "61837.63", "BTCUSDT", "trade", "aggTrade", "MARKET", "ADL"]
    )
)


@pytest.mark.parametrize(
    ("exchange", "sample"),
    [
        ("binance", BINANCE_TRADE_SELL),
        ("binance-futures", BINANCE_FUTURES_AGG),
        ("binance-futures", BINANCE_FUTURES_TRADE),
    ],
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_batches_match_parse(exchange: str, sample: str, data: st.DataObject) -> None:
    frames: list[Any] = []
    for _ in range(data.draw(st.integers(1, 6))):
        doc = orjson.loads(sample)
        payload = doc.get("data", doc)
        if data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(payload)))
            if data.draw(st.booleans()):
                del payload[key]
            else:
                payload[key] = data.draw(_leaf)
        frames.append(json.dumps(doc))
    _assert_same_as_parse(exchange, frames)


def test_columns_pack_into_the_batches_from_ticks_would_make() -> None:
    frames = [_trade(i, s="ETHUSDT" if i % 4 == 0 else "BTCUSDT") for i in range(1, 30)]
    cols = get_adapter("binance").parse_many(frames, RECV).columns
    assert cols is not None
    ticks = cols.ticks()
    whole = columns_batch(cols)
    assert list(whole) == ticks and whole.symbols == TickBatch.from_ticks(ticks).symbols
    assert whole.records.tobytes() == TickBatch.from_ticks(ticks).records.tobytes()
    eth = np.flatnonzero(np.array(cols.symbols) == "ETH-USDT")
    assert list(columns_batch(cols, eth)) == [t for t in ticks if t.symbol == "ETH-USDT"]
    # ticks offered before and after, re-cut into batches of 8 with compact symbol tables
    before, after = ticks[:3], ticks[3:5]
    parts = merge_split([TickBatch.from_ticks(before), whole, TickBatch.from_ticks(after)], size=8)
    assert [t for b in parts for t in b] == before + ticks + after
    assert [len(b) for b in parts] == [8, 8, 8, 8, 2]
    for b in parts:
        assert sorted(b.symbols) == sorted({(t.exchange, t.symbol, t.native_symbol) for t in b})
        assert TickBatch.decode(b.encode()).trade_ids == b.trade_ids
    assert merge_split([whole], 100) == [whole]
