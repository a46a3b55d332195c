"""Tick inputs: the recording format, the normalized trades CSV, the synthetic generator."""

from __future__ import annotations

import gzip
import io
import itertools
from pathlib import Path

import pytest

from common.errors import BadInput
from ingest.offline.ticks import (
    CSV_HEADER,
    as_exchange,
    is_csv,
    read_frames,
    read_ticks,
    read_trades_csv,
    synthetic_symbols,
    synthetic_ticks,
    write_trades_csv,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BTC = DATA / "binance-spot-btcusdt-20240808.rec.gz"
FIRST_TRADE = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",'
    '"t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}'
)


def test_recording_yields_every_trade_and_only_trades() -> None:
    ticks = list(read_ticks(BTC))
    assert len(ticks) == 9757  # the README's count of trade frames in this session
    first = ticks[0]
    assert (first.exchange, first.symbol, first.native_symbol) == ("binance", "BTC-USDT", "BTCUSDT")
    assert (first.trade_id, first.price, first.qty) == ("3735683259", 61837.63, 0.02)
    assert first.side == "sell"  # m=true: the buyer was the maker, so the taker sold
    assert first.ts == 1723161255342 * 1_000_000
    assert first.recv_ts == 1723161254087896568
    ids = [int(t.trade_id) for t in ticks]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # "trade ids without gaps"


def test_plain_recording_with_junk_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "rec.txt"
    path.write_text(
        f"1723161254087896568 {FIRST_TRADE}\n"
        '1723161254087896569 {"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT"}}\n'
        "1723161254087896570 {not json\n\n"
    )
    bad: list[tuple[int, str]] = []
    ticks = list(read_ticks(path, on_bad=lambda n, line, e: bad.append((n, e.reason))))
    assert [t.trade_id for t in ticks] == ["3735683259"]
    assert bad == [(3, "invalid_json")]
    assert [r for r, _ in read_frames(path)] == [
        1723161254087896568,
        1723161254087896569,
        1723161254087896570,
    ]


def test_csv_round_trip_gzip_and_plain(tmp_path: Path) -> None:
    ticks = list(itertools.islice(read_ticks(BTC), 500))
    buf = io.StringIO()
    assert write_trades_csv(ticks, buf) == 500
    plain = tmp_path / "t.csv"
    plain.write_text(buf.getvalue())
    packed = tmp_path / "t.csv.gz"
    packed.write_bytes(gzip.compress(buf.getvalue().encode()))
    assert buf.getvalue().splitlines()[0] == ",".join(CSV_HEADER)
    for path in (plain, packed):
        assert is_csv(path)
        back = list(read_ticks(path))
        # µs resolution: trade times (ms) survive exactly, receive times are truncated to µs
        assert [(t.trade_id, t.price, t.qty, t.side, t.ts) for t in back] == [
            (t.trade_id, t.price, t.qty, t.side, t.ts) for t in ticks
        ]
        assert all(b.recv_ts == t.recv_ts // 1000 * 1000 for b, t in zip(back, ticks, strict=True))


def test_csv_accepts_tardis_rows_and_rejects_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "tardis.csv"
    path.write_text(
        ",".join(CSV_HEADER) + "\n"
        "binance,BTCUSDT,1723161255342000,1723161254087896,1,buy,61837.63,0.02\n"
        "okex,BTC-USDT,1723161255342000,1723161254087896,2,sell,61837.63,0.5\n"
        "binance,BTCUSDT,1723161255342000,1723161254087896,3,up,61837.63,0.02\n"
        "binance,BTCUSDT,1723161255342000,1723161254087896,4,buy,-1,0.02\n"
        "binance,BTCUSDT,1723161255342000,1723161254087896,5,buy,nan,0.02\n"
        "binance,BTCUSDT,oops,1723161254087896,6,buy,1,0.02\n"
        "nasdaq,AAPL,1723161255342000,1723161254087896,7,buy,1,1\n"
        "binance,BTCUSDT,1\n"
    )
    bad: list[tuple[int, str]] = []
    ticks = list(read_trades_csv(path, on_bad=lambda n, line, e: bad.append((n, e.reason))))
    assert [(t.exchange, t.symbol, t.native_symbol, t.side) for t in ticks] == [
        ("binance", "BTC-USDT", "BTCUSDT", "buy"),
        ("okx", "BTC-USDT", "BTC-USDT", "sell"),
        ("nasdaq", "AAPL", "AAPL", "buy"),  # a venue outside the seven: taken as written
    ]
    assert bad == [
        (4, "bad_type"),
        (5, "non_positive"),
        (6, "non_finite"),
        (7, "bad_type"),
        (9, "missing_field"),
    ]


def test_csv_exchange_override_and_header_check(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(",".join(CSV_HEADER) + "\nbinance,BTC-USDT,1723161255342000,0,9,buy,1.5,2\n")
    (t,) = read_ticks(path, exchange="kraken")
    assert (t.exchange, t.symbol, t.native_symbol) == ("kraken", "BTC-USDT", "BTC/USDT")
    other = tmp_path / "x.csv"
    other.write_text("a,b,c\n")
    assert not is_csv(other)
    with pytest.raises(ValueError, match="not a normalized trades CSV"):
        list(read_trades_csv(other))


def test_as_exchange_respells_symbols() -> None:
    ticks = list(itertools.islice(read_ticks(BTC), 3))
    moved = list(as_exchange(ticks, "kraken"))
    assert {(t.exchange, t.symbol, t.native_symbol) for t in moved} == {
        ("kraken", "BTC-USDT", "BTC/USDT")
    }
    assert [t.trade_id for t in moved] == [t.trade_id for t in ticks]
    with pytest.raises(BadInput):
        list(as_exchange([ticks[0]], "binance-futures"))  # a spot pair has no perp spelling


def test_synthetic_is_deterministic_and_sequential() -> None:
    a = list(synthetic_ticks("binance", 5, 1000.0, seed=7, count=2000))
    b = list(synthetic_ticks("binance", 5, 1000.0, seed=7, count=2000))
    c = list(synthetic_ticks("binance", 5, 1000.0, seed=8, count=2000))
    assert a == b and a != c
    assert [t.ts - a[0].ts for t in a[:3]] == [0, 1_000_000, 2_000_000]  # 1000 trades/s
    by_symbol: dict[str, list[int]] = {}
    for t in a:
        assert t.price > 0 and t.qty > 0
        by_symbol.setdefault(t.symbol, []).append(int(t.trade_id))
    assert len(by_symbol) == 5
    for ids in by_symbol.values():
        assert ids == list(range(1, len(ids) + 1))


@pytest.mark.parametrize("exchange", ["binance", "binance-futures", "kraken", "okx", "coinbase"])
def test_synthetic_symbols_are_spelled_by_the_adapter(exchange: str) -> None:
    syms = synthetic_symbols(exchange, 12)
    assert len({s for s, _ in syms}) == 12
    if exchange == "binance-futures":
        assert all(s.endswith("-PERP") for s, _ in syms)
