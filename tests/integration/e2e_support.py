"""Helpers of the end-to-end fault and cluster tests: private ``redis-server`` processes
(a restartable AOF node, a 3-master Cluster) and a pipeline whose workers can be killed and
restarted. Everything started here is stopped by the caller's ``finally``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from sink.rows import Row
from tests.integration.runtime_support import ROOT, _need, free_port
from tests.integration.test_e2e_pipeline import (
    ENGINE,
    Pipeline,
    expected_rows,
    run_cli,
    stored_rows,
)
from tests.sink_support import Db


class RedisNode:
    """One ``redis-server`` on a free port in its own directory, stoppable and restartable."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        while self.port > 55535:  # a cluster bus listens on port + 10000
            self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="alphapulse-redis-"))
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    def start(self) -> None:
        where = ("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir))
        cmd = [_need("redis-server"), *where, "--save", "", "--logfile", str(self.log), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                with redis.Redis(port=self.port, socket_timeout=2) as c:
                    c.ping()
                return
            except redis.RedisError:
                assert time.monotonic() < deadline, f"redis-server silent: {self.log_tail()}"
                time.sleep(0.05)

    def stop(self, crash: bool = False) -> None:
        """SIGTERM (Redis syncs its AOF and exits), SIGKILL past 10 s; ``crash``: SIGKILL
        at once (with ``appendfsync always`` every acknowledged write is on disk anyway)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""


class Supervised(Pipeline):
    """A :class:`Pipeline` that remembers how each process was started, so the test can kill
    one (SIGKILL) and start it again under the same name, as a process manager would."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        super().__init__(logs, env)
        self.specs: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {}
        self.restarts: list[tuple[str, int | None]] = []

    def start(self, name: str, *args: str, **env: str) -> None:
        self.specs[name] = (args, env)
        self.procs = [(n, p) for n, p in self.procs if n != name]
        log = (self.logs / f"{name}.log").open("ab")  # appended across restarts
        self.files.append(log)
        cmd = [sys.executable, *args]
        proc = subprocess.Popen(cmd, env={**self.env, **env}, cwd=ROOT, stdout=log, stderr=log)
        self.procs.append((name, proc))

    def proc(self, name: str) -> subprocess.Popen[bytes]:
        return next(p for n, p in self.procs if n == name)

    def kill(self, name: str) -> None:
        p = self.proc(name)
        if p.poll() is None:
            p.kill()
        p.wait(10)

    def revive(self) -> list[str]:
        """Start again every process that has ended (killed, or exited on an outage)."""
        dead = [(n, p.returncode) for n, p in self.procs if p.poll() is not None]
        for name, code in dead:
            self.restarts.append((name, code))
            args, env = self.specs[name]
            self.start(name, *args, **env)
        return [n for n, _ in dead]


WORKERS = ("ingest", "detectors-1", "detectors-2", "signals", "sink")


def stage_env(
    redis_url: str,
    namespace: str,
    partitions: int,
    lateness_ms: int = 5000,
    idle_close_ms: int = 500,
) -> dict[str, str]:
    """Environment of every stage (and of replay): quick crash recovery (claims, leases,
    retries) and enough deliveries that chaos never dead-letters an entry.

    Replay closes every bar still open at the end of its input; the live detectors close
    them when a partition has been idle (``IDLE_CLOSE_MS``). An idle close extrapolates event
    time from the wall clock, so it equals replay only if no partition pauses for longer than
    ``lateness_ms`` of wall time while trades are still to come: tests with faults pass a
    lateness far above any outage they cause. A test whose feed ends with closing trades
    (``write_closed_subset``) passes ``idle_close_ms=0``: bars by event time only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "REDIS_TLS"))}
    env.update(
        REDIS_URL=redis_url,
        NAMESPACE=namespace,
        PARTITIONS=str(partitions),
        METRICS_PORT="0",
        LOG_FORMAT="json",
        IDLE_CLOSE_MS=str(idle_close_ms),
        CHECKPOINT_INTERVAL="200",
        GRACE_SECONDS="5",
        BLOCK_MS="100",
        CLAIM_IDLE_MS="1500",
        MAX_DELIVERIES="1000",
        LEASE_TTL_MS="3000",
        HEARTBEAT_MS="500",
        SINK_RETRY_MAX_S="1",
        STORE_TICKS="0",
        **ENGINE,
    )
    env["ALLOWED_LATENESS_MS"] = str(lateness_ms)
    return env


def start_stages(
    pipe: Supervised, db_url: str, csv_path: Path, *sim_args: str, detectors: int = 2
) -> None:
    """Sink, signals, ``detectors`` detectors (``detectors-1``, …), ingest and the simulator
    serving ``csv_path``."""
    port = free_port()
    pipe.start("sink", "-m", "sink", DATABASE_URL=db_url)
    pipe.start("signals", "-m", "signals")
    for i in range(1, detectors + 1):
        pipe.start(f"detectors-{i}", "-m", "detectors", DETECTOR_ID=f"det-{i}")
    url = f"ws://127.0.0.1:{port}/binance/stream"
    rest = f"http://127.0.0.1:{port}/binance"  # the simulator's REST history: gap backfill
    pipe.start("ingest", "-m", "ingest", EXCHANGES="binance:BTCUSDT,ETHUSDT",
               INGEST_URL_BINANCE=url, INGEST_REST_URL_BINANCE=rest)  # fmt: skip
    sim = ["-m", "common.cli", "simulate", "--port", str(port), "--feed", f"binance={csv_path}"]
    pipe.start("simulator", *sim, *sim_args)


async def replay_rows(
    csv_path: Path, out: Path, env: dict[str, str], partitions: int, through_ms: int | None = None
) -> tuple[list[Row], list[Row], list[dict[str, Any]]]:
    """What ``alphapulse replay`` computes from ``csv_path`` (bars, patterns, signals rows;
    ``through_ms``: see ``expected_rows``)."""
    cmd = [sys.executable, "-m", "common.cli", "replay", "--ticks", str(csv_path)]
    done = await run_cli([*cmd, "--partitions", str(partitions), "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    return expected_rows(out, through_ms)


async def drain_and_compare(
    pipe: Supervised,
    db: Db,
    want: tuple[list[Row], list[Row], list[dict[str, Any]]],
    env: dict[str, str],
    limit_s: float,
) -> None:
    """Wait (reviving crashed workers) until the database holds as many rows as replay and
    ``alphapulse status --wait-idle`` reports every group drained; then the rows must equal."""
    want_bars, want_patterns, want_signals = want
    deadline = time.monotonic() + limit_s
    while True:
        pipe.revive()
        try:
            bars, patterns, signals, _ = await stored_rows(db)
        except (OSError, asyncpg.PostgresError):
            bars, patterns, signals = [], [], []
        have = (len(bars), len(patterns), len(signals))
        want_n = (len(want_bars), len(want_patterns), len(want_signals))
        if all(h >= w for h, w in zip(have, want_n, strict=True)):
            break
        if time.monotonic() > deadline:
            missing = sorted(set(want_bars) - set(bars))[:20]
            extra = sorted(set(bars) - set(want_bars))[:20]
            pytest.fail(
                f"stored {have} of {want_n}; bars missing {missing}, unexpected {extra}\n"
                + pipe.log_tail()
            )
        await asyncio.sleep(0.5)
    status = [sys.executable, "-m", "common.cli", "status", "--wait-idle", "--timeout", "60"]
    idle = await run_cli(status, env, 90)
    assert idle.returncode == 0, idle.stdout + idle.stderr + pipe.log_tail().encode()
    bars, patterns, signals, unstamped = await stored_rows(db)
    assert bars == want_bars, pipe.log_tail()
    assert patterns == want_patterns
    assert signals == want_signals
    assert unstamped == 0
