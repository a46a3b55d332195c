"""``alphapulse replay`` on the recorded Binance session (recording format, --exchange)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from common.cli import main
from common.contracts import Bar

DATA = Path("/work/shared/data") if Path("/work/shared/data").exists() else Path("data")
REC = DATA / "binance-spot-btcusdt-20240808.rec.gz"


def test_replay_writes_sorted_bars_and_patterns(tmp_path: Path) -> None:
    args = ["replay", "--ticks", str(REC), "--exchange", "binance"]
    assert main([*args, "--timeframes", "1s,1m", "--out", str(tmp_path / "a")]) == 0
    bars = [orjson.loads(x) for x in (tmp_path / "a" / "bars.jsonl").read_bytes().splitlines()]
    events = [
        orjson.loads(x) for x in (tmp_path / "a" / "patterns.jsonl").read_bytes().splitlines()
    ]
    assert {b["timeframe"] for b in bars} == {"1s", "1m"}
    keys = [(b["symbol"], b["timeframe"] == "1m", b["open_time"]) for b in bars]
    assert keys == sorted(keys)
    parsed = [Bar.from_dict(b) for b in bars]
    assert all(isinstance(b["open_time"], int) and b["open_time"] % 1000 == 0 for b in bars)
    assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in parsed)
    # Every trade lands in exactly one bar per timeframe (the recording has no duplicates).
    assert sum(b.trades for b in parsed if b.timeframe == "1s") == 9757
    assert sum(b.trades for b in parsed if b.timeframe == "1m") == 9757
    assert events and all(e["patterns"] and "rsi" in e and "recent" in e for e in events)
    # Deterministic: a second run writes the same bytes.
    assert main([*args, "--timeframes", "1s,1m", "--out", str(tmp_path / "b")]) == 0
    for name in ("bars.jsonl", "patterns.jsonl", "signals.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_replay_rejects_bad_timeframes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["replay", "--ticks", str(REC), "--timeframes", "2m,3m", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "--timeframes" in capsys.readouterr().err
