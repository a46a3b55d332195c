"""The whole pipeline as processes leaves in PostgreSQL exactly what ``alphapulse replay`` computes.

The first 150 s of the recorded Binance BTC and ETH sessions (merged by receive time, as a
normalized trades CSV) are served by ``alphapulse simulate`` at 10x; ``python -m ingest``
reads them from its WebSocket, then ``python -m detectors``, ``python -m signals`` and
``python -m sink`` run on real Redis (this test's namespace) and real PostgreSQL (a private
schema). Bars close by event time only, as in replay (``IDLE_CLOSE_MS=0``): the feed ends with
one closing trade per symbol (``write_closed_subset``), far enough after the last real trade
that its arrival closes every real bar; rows of the closing trades' own bars, which only the
replay closes, are left out of the comparison. (A wall-clock idle timer made this test depend
on the machine: a multi-second stall of the ingest side while a detector polled an empty
stream raised the watermark over ticks still on their way, which then arrived late; the test
now stops ingest for ``STALL_S`` mid-run to show that nothing depends on it.) With 4
partitions BTC and ETH land in different ones, so each partition's ticks come in file order.

Once the database holds as many rows as the replay and ``alphapulse status --wait-idle``
says every group has consumed and acked everything, the ``bars``, ``patterns`` and
``signals`` tables must equal replay's ``bars.jsonl``, ``patterns.jsonl`` and
``signals.jsonl`` (signals compared without ``emitted_at``, which only the live path sets).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import orjson
import pytest
import redis.asyncio as aioredis

from common.contracts import Bar, Tick
from common.names import Keys, partition_of
from ingest.offline.ticks import read_ticks, write_trades_csv
from signals.offline import comparable
from sink.rows import BARS, PATTERNS, Row, bar_row, ms_to_dt
from tests.conftest import REDIS_URL
from tests.integration.runtime_support import ROOT, free_port
from tests.sink_support import Db, make_db

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

DATA = Path("/work/shared/data") if Path("/work/shared/data").exists() else Path("data")
FILES = ("binance-spot-btcusdt-20240808.rec.gz", "binance-spot-ethusdt-20240808.rec.gz")
SPAN_NS = 150 * 10**9
PARTITIONS = 4
ENGINE = {"TIMEFRAMES": "1s,5s", "ALLOWED_LATENESS_MS": "5000"}
#: How long after the last trade the closing trades come: > lateness + the 5 s bar.
CLOSING_AFTER_NS = 11 * 10**9
#: How long ingest is stopped mid-run: longer than the allowed lateness.
STALL_S = 7.0
WAIT_S = 120.0


@pytest.fixture
async def db() -> AsyncIterator[Db]:
    async for d in make_db("postgres"):
        yield d


def _subset() -> list[Tick]:
    """The first ``SPAN_NS`` of both sessions, merged by receive time."""
    ticks = sorted(
        (t for f in FILES for t in read_ticks(DATA / f, "binance")), key=lambda t: t.recv_ts
    )
    t0 = min(t.ts for t in ticks)
    parts = {partition_of(t.exchange, t.symbol, PARTITIONS) for t in ticks}
    assert len(parts) == 2, "BTC and ETH must be in different partitions (per-partition order)"
    return [t for t in ticks if t.ts < t0 + SPAN_NS]


def write_subset(path: Path) -> int:
    """The first ``SPAN_NS`` of both sessions, merged by receive time, as a trades CSV."""
    with path.open("w", encoding="utf-8") as f:
        return write_trades_csv(_subset(), f)


def write_closed_subset(path: Path) -> int:
    """``write_subset`` plus one closing trade per symbol ``CLOSING_AFTER_NS`` after the last
    trade (the next trade id, the last price): past the allowed lateness and the longest bar,
    so it closes every real bar by event time, live as in replay. Returns the event time (ms)
    of the last real trade: every row of a real bar opens at or before it."""
    ticks = _subset()
    last = {t.symbol: t for t in ticks}  # the last trade of each symbol (ids ascend)
    end_ns = max(t.ts for t in ticks)
    recv_ns = max(t.recv_ts for t in ticks) + CLOSING_AFTER_NS
    closing = [
        t._replace(trade_id=str(int(t.trade_id) + 1), ts=end_ns + CLOSING_AFTER_NS, recv_ts=recv_ns)
        for t in last.values()
    ]
    with path.open("w", encoding="utf-8") as f:
        write_trades_csv([*ticks, *closing], f)
    return end_ns // 1_000_000


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


class Pipeline:
    """The stage processes of one test (logs under ``logs``), stopped by :meth:`close`."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs, self.env = logs, env
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.files: list[IO[bytes]] = []

    def start(self, name: str, *args: str, **env: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.files.append(log)
        cmd = [sys.executable, *args]
        proc = subprocess.Popen(cmd, env={**self.env, **env}, cwd=ROOT, stdout=log, stderr=log)
        self.procs.append((name, proc))

    def check_alive(self) -> None:
        dead = [(n, p.returncode) for n, p in self.procs if p.poll() is not None]
        assert not dead, f"processes ended early: {dead}\n{self.log_tail()}"

    def log_tail(self) -> str:
        return "\n".join(
            f"{p.name}:\n{p.read_text(errors='replace')[-2500:]}"
            for p in sorted(self.logs.glob("*.log"))
        )

    def close(self) -> None:
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        for f in self.files:
            f.close()


def expected_rows(
    out: Path, through_ms: int | None = None
) -> tuple[list[Row], list[Row], list[dict[str, Any]]]:
    """Replay's rows (bars, patterns, signals); with ``through_ms`` (the last real trade of a
    ``write_closed_subset`` feed) only those of the bars opening at or before it."""
    last = through_ms if through_ms is not None else float("inf")
    bars = sorted(
        bar_row(Bar.from_dict(d)) for d in jsonl(out / "bars.jsonl") if d["open_time"] <= last
    )
    patterns = sorted(
        (d["exchange"], d["symbol"], d["timeframe"], ms_to_dt(d["open_time"]), name, value)
        for d in jsonl(out / "patterns.jsonl")
        if d["open_time"] <= last
        for name, value in d["patterns"].items()
    )
    signals = sorted(
        (comparable(line) for line in (out / "signals.jsonl").read_bytes().splitlines()),
        key=lambda d: str(d["id"]),
    )
    return bars, patterns, [s for s in signals if s["open_time_ms"] <= last]


async def stored_rows(db: Db) -> tuple[list[Row], list[Row], list[dict[str, Any]], int]:
    """The test schema's rows (qualified: until the sink migrated it, ``public`` would answer)."""
    exists = await db.fetch(
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = $1 AND tablename = "
        "ANY('{bars,patterns,signals}'::text[])",
        db.schema,
    )
    if exists[0]["n"] < 3:
        return [], [], [], 0
    s = db.schema
    bars = sorted(tuple(r) for r in await db.fetch(f"SELECT {BARS.column_list()} FROM {s}.bars"))
    patterns = sorted(
        tuple(r) for r in await db.fetch(f"SELECT {PATTERNS.column_list()} FROM {s}.patterns")
    )
    rows = await db.fetch(f"SELECT doc::text AS doc, emitted_at FROM {s}.signals")
    signals = sorted((comparable(r["doc"]) for r in rows), key=lambda d: str(d["id"]))
    unstamped = sum(r["emitted_at"] is None for r in rows)
    return bars, patterns, signals, unstamped


async def run_cli(
    cmd: list[str], env: dict[str, str], limit_s: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """A bounded command line run, off the event loop."""
    kwargs: dict[str, Any] = {"env": env, "cwd": ROOT, "capture_output": True}
    return await asyncio.to_thread(subprocess.run, cmd, timeout=limit_s, check=False, **kwargs)


def _env(namespace: str) -> Iterator[tuple[str, str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "REDIS_TLS"))}
    yield from base.items()
    yield from {
        "REDIS_URL": REDIS_URL,
        "NAMESPACE": namespace,
        "PARTITIONS": str(PARTITIONS),
        "METRICS_PORT": "0",
        "LOG_FORMAT": "json",
        "IDLE_CLOSE_MS": "0",  # bars close by event time, as in replay (module docstring)
        "CHECKPOINT_INTERVAL": "200",
        "GRACE_SECONDS": "5",
        **ENGINE,
    }.items()


async def test_pipeline_processes_store_exactly_what_replay_computes(
    redis_client: aioredis.Redis, keys: Keys, namespace: str, db: Db, tmp_path: Path
) -> None:
    csv_path = tmp_path / "ticks.csv"
    through_ms = write_closed_subset(csv_path)
    env = dict(_env(namespace))
    out = tmp_path / "replay"
    replay = [sys.executable, "-m", "common.cli", "replay", "--ticks", str(csv_path)]
    done = await run_cli([*replay, "--partitions", str(PARTITIONS), "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    want_bars, want_patterns, want_signals = expected_rows(out, through_ms)
    assert len(want_signals) >= 5 and len(want_patterns) > len(want_signals)

    port = free_port()
    pipeline = Pipeline(tmp_path, env)
    try:
        pipeline.start("sink", "-m", "sink", DATABASE_URL=db.url)
        pipeline.start("signals", "-m", "signals")
        pipeline.start("detectors", "-m", "detectors")
        pipeline.start(
            "ingest",
            "-m",
            "ingest",
            EXCHANGES="binance:BTCUSDT,ETHUSDT",
            INGEST_URL_BINANCE=f"ws://127.0.0.1:{port}/binance/stream",
        )
        sim = ["-m", "common.cli", "simulate", "--port", str(port), "--speed", "10"]
        pipeline.start("simulator", *sim, "--feed", f"binance={csv_path}")

        deadline = time.monotonic() + WAIT_S
        # Mid-run, ingest stops for longer than the allowed lateness while the detectors go on
        # polling their empty streams (what a stalled machine did to an earlier version of
        # this test): bars must still close by event time only.
        while not (await stored_rows(db))[0]:
            pipeline.check_alive()
            assert time.monotonic() < deadline, pipeline.log_tail()
            await asyncio.sleep(0.2)
        ingest = next(p for name, p in pipeline.procs if name == "ingest")
        ingest.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(STALL_S)
        finally:
            ingest.send_signal(signal.SIGCONT)
        while True:
            bars, patterns, signals, _ = await stored_rows(db)
            have = (len(bars), len(patterns), len(signals))
            want = (len(want_bars), len(want_patterns), len(want_signals))
            if all(h >= w for h, w in zip(have, want, strict=True)):
                break
            pipeline.check_alive()
            assert time.monotonic() < deadline, (
                f"stored {len(bars)}/{len(want_bars)} bars, {len(patterns)}/"
                f"{len(want_patterns)} patterns, {len(signals)}/{len(want_signals)} signals\n"
                + pipeline.log_tail()
            )
            await asyncio.sleep(0.5)

        status = [sys.executable, "-m", "common.cli", "status", "--wait-idle", "--timeout", "60"]
        idle = await run_cli(status, env, 90)
        assert idle.returncode == 0, idle.stdout + idle.stderr
        assert b"detectors(lag=0,pending=0)" in idle.stdout

        bars, patterns, signals, unstamped = await stored_rows(db)
        assert bars == want_bars
        assert patterns == want_patterns
        assert signals == want_signals
        assert unstamped == 0  # the live path stamps emitted_at; only that differs
    finally:
        pipeline.close()
