"""``alphapulse replay`` on history: bars files, trades CSVs from any venue and date, every
unused row counted by reason, nothing usable -> exit 1, a missing file -> one line, exit 2."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import orjson
import pytest

from common.cli import main
from ingest.offline.ticks import CSV_HEADER

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BTC = DATA / "binance-spot-btcusdt-20240808.rec.gz"
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000  # a UTC midnight, ms


def random_bars(n: int, step_ms: int, seed: int = 3) -> list[list[float | int]]:
    rng = random.Random(seed)
    price, out = 100.0, []
    for i in range(n):
        o = price
        c = max(1.0, o * (1 + rng.gauss(0, 0.01)))
        h = max(o, c) * (1 + abs(rng.gauss(0, 0.004)))
        lo = min(o, c) * (1 - abs(rng.gauss(0, 0.004)))
        out.append([T0 + i * step_ms, o, h, lo, c, rng.uniform(10, 100)])
        price = c
    return out


def write_bars(
    path: Path, rows: list[list[object]], header: str = "time,open,high,low,close,volume"
) -> Path:
    with path.open("w", newline="") as f:
        f.write(header + "\n")
        csv.writer(f, lineterminator="\n").writerows(rows)
    return path


def read(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def replay(*args: str) -> int:
    return main(["replay", *args])


def test_bars_file_every_rejection_reason_counted_and_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = random_bars(60, 60_000)
    bad: list[list[object]] = [
        [T0 + 100 * 60_000, 1, 2],  # missing_field (short row)
        ["yesterday", 1, 2, 0.5, 1.5, 1],  # bad_time
        [T0 + 101 * 60_000, "x", 2, 0.5, 1.5, 1],  # bad_number
        [T0 + 102 * 60_000, "nan", 2, 0.5, 1.5, 1],  # non_finite
        [T0 + 103 * 60_000, 0, 2, 0.5, 1.5, 1],  # non_positive
        [T0 + 104 * 60_000, 1, 1.2, 0.5, 1.5, 1],  # bad_ohlc (high below close)
        [T0 + 105 * 60_000, 1, 2, 0.5, 1.5, -3],  # bad_volume
        good[5],  # duplicate of an earlier bar
    ]
    path = write_bars(tmp_path / "bars.csv", [*good, *bad])
    assert replay("--bars", str(path), "--symbol", "XYZ", "--out", str(tmp_path / "o")) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "skipped" in x)
    assert "skipped 8 rows" in line
    for reason in (
        "missing_field",
        "bad_time",
        "bad_number",
        "non_finite",
        "non_positive",
        "bad_ohlc",
        "bad_volume",
        "duplicate",
    ):
        assert f"{reason} 1" in line, reason
    assert err.count("  line ") == 5  # the first few, with their line numbers
    assert "line 62: missing_field" in err
    bars = [b for b in read(tmp_path / "o" / "bars.jsonl") if b["timeframe"] == "1m"]
    assert len(bars) == 60


def test_bars_with_gaps_duplicates_and_unsorted_rows_equal_the_clean_file(tmp_path: Path) -> None:
    rows = random_bars(300, 60_000)
    del rows[100:130]  # a gap of 30 minutes: no bars there, as with trades
    clean = write_bars(tmp_path / "clean.csv", rows)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    messy = write_bars(tmp_path / "messy.csv", [*shuffled, rows[7], rows[200]])
    for name, path in (("a", clean), ("b", messy)):
        assert (
            replay(
                "--bars",
                str(path),
                "--symbol",
                "XYZ",
                "--exchange",
                "nyse",
                "--timeframes",
                "1m,5m,15m",
                "--out",
                str(tmp_path / name),
            )
            == 0
        )
    for f in ("bars.jsonl", "patterns.jsonl", "outcomes.jsonl"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    bars = read(tmp_path / "a" / "bars.jsonl")
    fine = [b for b in bars if b["timeframe"] == "1m"]
    assert [b["open_time"] for b in fine] == [r[0] for r in rows]
    assert {b["exchange"] for b in bars} == {"nyse"}
    # 5m bars folded from the given 1m bars: open of the first, close of the last, extremes.
    five = {b["open_time"]: b for b in bars if b["timeframe"] == "5m"}
    for start, b in five.items():
        part = [r for r in rows if start <= r[0] < start + 300_000]
        assert b["open"] == part[0][1] and b["close"] == part[-1][4]
        assert b["high"] == max(r[2] for r in part) and b["low"] == min(r[3] for r in part)
        assert b["volume"] == pytest.approx(sum(r[5] for r in part))
    assert (tmp_path / "a" / "stats.json").exists()


def test_bars_replay_equals_tick_replay_of_the_same_bars(tmp_path: Path) -> None:
    """Bars built from ticks, written as a bars file and replayed, give the same coarser bars,
    the same patterns and the same outcomes: bars go straight into the same engine."""
    assert replay("--ticks", str(BTC), "--timeframes", "1s,5s", "--out", str(tmp_path / "t")) == 0
    fine = [b for b in read(tmp_path / "t" / "bars.jsonl") if b["timeframe"] == "1s"]
    rows = [[b["open_time"], b["open"], b["high"], b["low"], b["close"], b["volume"]] for b in fine]
    path = write_bars(tmp_path / "b.csv", rows, header="open_time,Open,High,Low,Close,Volume")
    assert (
        replay(
            "--bars",
            str(path),
            "--symbol",
            "BTC-USDT",
            "--exchange",
            "binance",
            "--timeframes",
            "1s,5s",
            "--out",
            str(tmp_path / "b"),
        )
        == 0
    )

    def key(rec: dict[str, object]) -> tuple[object, ...]:
        return tuple(rec[k] for k in ("timeframe", "open_time", "open", "high", "low", "close"))

    tick_bars = [key(b) for b in read(tmp_path / "t" / "bars.jsonl")]
    assert [key(b) for b in read(tmp_path / "b" / "bars.jsonl")] == tick_bars
    pats = [
        (p["timeframe"], p["open_time"], p["patterns"])
        for p in read(tmp_path / "t" / "patterns.jsonl")
    ]
    assert [
        (p["timeframe"], p["open_time"], p["patterns"])
        for p in read(tmp_path / "b" / "patterns.jsonl")
    ] == pats
    outs = [
        (o["kind"], o["open_time"], o.get("pattern"), o["returns"])
        for o in read(tmp_path / "t" / "outcomes.jsonl")
        if o["kind"] == "pattern"
    ]
    assert [
        (o["kind"], o["open_time"], o.get("pattern"), o["returns"])
        for o in read(tmp_path / "b" / "outcomes.jsonl")
        if o["kind"] == "pattern"
    ] == outs


def test_daily_iso_bars_infer_1d_despite_weekends_and_keep_old_dates(tmp_path: Path) -> None:
    rows = []
    day = 86_400_000
    base = -(365 * 20) * day  # 1950: far before the live 2010..2100 window
    for i, r in enumerate(random_bars(400, day)):
        if i % 7 in (5, 6):
            continue  # weekends
        from datetime import UTC, datetime  # noqa: PLC0415

        date = datetime.fromtimestamp((base + i * day) / 1000, UTC).date().isoformat()
        rows.append([date, *r[1:5], "", r[5]])
    path = write_bars(tmp_path / "d.csv", rows, header="Date,Open,High,Low,Close,Adj Close,Volume")
    assert replay("--bars", str(path), "--symbol", "OLD", "--out", str(tmp_path / "o")) == 0
    bars = read(tmp_path / "o" / "bars.jsonl")
    assert {b["timeframe"] for b in bars} == {"1d"}
    assert len(bars) == len(rows) and bars[0]["open_time"] == base


def test_trades_csv_from_any_venue_and_any_date(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    with path.open("w") as f:
        f.write(",".join(CSV_HEADER) + "\n")
        t = 820_454_400_000_000  # 1996-01-01 in µs
        for i in range(600):
            price = 100 + (i % 17) - (i % 5)
            f.write(f"nasdaq,AAPL,{t + i * 30_000_000},{t},{i + 1},buy,{price},1\n")
    assert replay("--ticks", str(path), "--timeframes", "1m", "--out", str(tmp_path / "o")) == 0
    bars = read(tmp_path / "o" / "bars.jsonl")
    assert len(bars) == 300
    assert {(b["exchange"], b["symbol"]) for b in bars} == {("nasdaq", "AAPL")}


def test_trades_csv_rejections_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        ",".join(CSV_HEADER) + "\n"
        "binance,BTCUSDT,1723161255342000,1723161254087896,1,buy,61837.63,0.02\n"
        "binance,BTCUSDT,1723161255342000,1723161254087896,2,up,61837.63,0.02\n"
        "binance,BTCUSDT,1723161255342000,1723161254087896,3,buy,-1,0.02\n"
        "binance,BTCUSDT,1723161255342000,1723161254087896,4,buy,nan,0.02\n"
        "binance,BTCUSDT,99999999999999999999,0,5,buy,1,0.02\n"
        "binance,BTCUSDT,1\n"
    )
    assert replay("--ticks", str(path), "--timeframes", "1s", "--out", str(tmp_path / "o")) == 0
    err = capsys.readouterr().err
    assert (
        "skipped 5 rows: absurd_value 1, bad_type 1, missing_field 1, non_finite 1, non_positive 1"
    ) in err


def test_recording_read_as_another_exchange_is_nothing_usable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert replay("--ticks", str(BTC), "--exchange", "kraken", "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert "no usable trade" in err and "read as kraken (ignored" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "o" / "bars.jsonl").exists()


def test_bars_file_with_nothing_usable_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_bars(tmp_path / "b.csv", [["nope", 1, 2, 0.5, 1.5, 1]])
    assert replay("--bars", str(path), "--symbol", "X", "--out", str(tmp_path / "o")) == 1
    assert "bad_time 1" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--ticks", "--bars"])
def test_missing_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    code = replay(flag, str(tmp_path / "nope.csv"), "--symbol", "X", "--out", str(tmp_path / "o"))
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.csv" in err and "Traceback" not in err


def test_bars_file_needs_symbol_and_a_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_bars(tmp_path / "b.csv", random_bars(5, 60_000))
    assert replay("--bars", str(path), "--out", str(tmp_path / "o")) == 2
    assert "--symbol" in capsys.readouterr().err
    other = write_bars(tmp_path / "c.csv", [[1, 2]], header="a,b")
    assert replay("--bars", str(other), "--symbol", "X", "--out", str(tmp_path / "o")) == 2
    assert "header names no time" in capsys.readouterr().err
