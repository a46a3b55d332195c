"""``alphapulse parse`` as a user runs it: a real recording, stdin with bad lines, no file."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson

from tests.ingest_samples import BINANCE_TRADE_SELL, BTC_RECORDING, TRADE_FRAMES

CMD = [sys.executable, "-m", "common.cli", "parse"]


def _run(args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CMD, *args], input=stdin, capture_output=True, timeout=120,
                          check=False)  # fmt: skip


def test_real_recording_prints_every_trade() -> None:
    assert BTC_RECORDING.is_file(), f"recorded data missing: {BTC_RECORDING}"
    proc = _run(["--exchange", "binance", str(BTC_RECORDING)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    rows = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 9757
    assert rows[0] == {
        "exchange": "binance", "symbol": "BTC-USDT", "trade_id": "3735683259",
        "price": 61837.63, "qty": 0.02, "side": "sell", "ts": 1723161255342000000,
    }  # fmt: skip
    ids = [int(r["trade_id"]) for r in rows]
    assert ids == list(range(ids[0], ids[0] + 9757))


def test_stdin_with_timestamps_control_frames_and_a_malformed_line() -> None:
    lines = [
        b"1723161253937085768 " + BINANCE_TRADE_SELL.encode(),
        b'{"result":null,"id":1}',
        b'1723161253937085769 {"stream":"btcusdt@trade","data":{"e":"trade"',
        b"",
        BINANCE_TRADE_SELL.replace('"m":true', '"m":false').encode(),
    ]
    proc = _run(["--exchange", "binance"], b"\n".join(lines) + b"\n")
    assert proc.returncode == 0
    sides = [orjson.loads(line)["side"] for line in proc.stdout.splitlines()]
    assert sides == ["sell", "buy"]
    (report,) = proc.stderr.decode().splitlines()
    assert report.startswith("line 3: invalid_json")


def test_gzip_file_of_another_exchange(tmp_path: Path) -> None:
    path = tmp_path / "kraken.rec.gz"
    frames = [fr for fr, _, _ in TRADE_FRAMES["kraken"]] + ['{"channel":"heartbeat"}']
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(f"{i} {fr}" for i, fr in enumerate(frames)) + "\n")
    proc = _run(["--exchange", "kraken", str(path)])
    assert proc.returncode == 0 and proc.stderr == b""
    rows = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [r["trade_id"] for r in rows] == ["4665906", "4665846", "4665847"]
    assert {r["symbol"] for r in rows} == {"MATIC-USD"}


def test_unreadable_file_exits_non_zero_with_a_message(tmp_path: Path) -> None:
    missing = tmp_path / "nope.rec.gz"
    proc = _run(["--exchange", "okx", str(missing)])
    assert proc.returncode != 0
    assert b"cannot read" in proc.stderr and str(missing).encode() in proc.stderr
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"this is not gzip")
    proc = _run(["--exchange", "okx", str(broken)])
    assert proc.returncode != 0 and b"cannot read" in proc.stderr
