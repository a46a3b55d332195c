"""Support for the end-to-end benchmark: synthetic trades, the stage processes, probes.

* :class:`Trades` — deterministic synthetic trades over ``SYMBOLS`` symbols (one exchange),
  in ``TradeColumns`` as ``parse_many`` hands them to the ingest writer; event times never
  go back, trade ids rise, so nothing is late or a duplicate and the bars the detectors must
  close follow from the ticks alone (:meth:`Trades.expected_bars`).
* :class:`Stack` — a fresh Redis namespace and PostgreSQL schema with the detectors (two),
  signals and sink running as ``python -m`` processes; :meth:`Stack.close` stops them (SIGTERM,
  then SIGKILL past the grace), deletes the namespace's keys and drops the schema.
* probes: each process's RSS (``/proc``) and its ``/metrics`` counters.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any

import asyncpg
import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

from common.names import Keys, partition_of
from detectors.timeframes import parse_timeframes
from ingest.exchanges.batch import TradeColumns
from tests.integration.runtime_support import ROOT, free_port
from tests.sink_support import DATABASE_URL, REDIS_URL, with_search_path

EXCHANGE = "binance"
SYMBOLS = 1000
PARTITIONS = 16
TIMEFRAMES = "1s,5s,1m"
I64 = npt.NDArray[np.int64]


class Trades:
    """Synthetic trades: a random walk per symbol, uniform symbol choice, seeded."""

    def __init__(self, seed: int = 7, symbols: int = SYMBOLS) -> None:
        self.rng = np.random.default_rng(seed)
        self.natives = [f"S{i:04d}USDT" for i in range(symbols)]
        self.symbols = [f"S{i:04d}-USDT" for i in range(symbols)]
        self.partition = np.array(
            [partition_of(EXCHANGE, s, PARTITIONS) for s in self.symbols], np.int64
        )
        self.level = 100.0 * np.exp(self.rng.normal(0.0, 1.0, symbols))
        self.next_id = 1
        self.count = 0
        self.last_idx: I64 = np.zeros(0, np.int64)
        self._sym: list[I64] = []  # every trade's symbol index and event ms (expected bars)
        self._ms: list[I64] = []

    def chunk(self, ts_ns: I64, recv_ts: int) -> TradeColumns:
        """One batch of ``len(ts_ns)`` trades with these event times (ns, non-decreasing)."""
        n = len(ts_ns)
        rng = self.rng
        idx = rng.integers(0, len(self.symbols), n)
        self.last_idx = idx
        price = np.round(self.level[idx] * np.exp(rng.normal(0.0, 0.002, n)), 6)
        self.level *= np.exp(rng.normal(0.0, 0.001, len(self.level)))
        seq = np.arange(self.next_id, self.next_id + n, dtype=np.int64)
        self.next_id += n
        self.count += n
        self._sym.append(idx.astype(np.int64))
        self._ms.append(ts_ns // 1_000_000)
        return TradeColumns(
            EXCHANGE,
            [self.symbols[i] for i in idx.tolist()],
            [self.natives[i] for i in idx.tolist()],
            list(map(str, seq.tolist())),
            seq,
            price,
            np.round(rng.exponential(0.5, n) + 0.001, 6),
            ts_ns.astype(np.int64),
            rng.random(n) < 0.5,
            recv_ts,
        )

    def expected_bars(self) -> int:
        """Bars the detectors close (``ALLOWED_LATENESS_MS=0``, no idle close): per symbol and
        timeframe every traded bucket that ends at or before its partition's last event time."""
        sym = np.concatenate(self._sym)
        ms = np.concatenate(self._ms)
        part = self.partition[sym]
        last = np.full(PARTITIONS, -1, np.int64)
        np.maximum.at(last, part, ms)
        total = 0
        for tf in parse_timeframes(TIMEFRAMES):
            bucket = ms - ms % tf.ms
            closed = bucket + tf.ms <= last[part]
            total += len(np.unique(sym[closed] * 10**13 + bucket[closed]))
        return total


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def scrape(port: int, names: tuple[str, ...]) -> dict[str, float]:
    """Sum of each named metric's samples at ``/metrics`` (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return int(r.status) == 200
    except OSError:
        return False


class Stack:
    """Detectors x2, signals and sink in a fresh namespace and schema (see the module doc)."""

    def __init__(self, store_ticks: bool) -> None:
        tag = uuid.uuid4().hex[:10]
        self.keys = Keys(namespace=f"bench-e2e-{tag}:", partitions=PARTITIONS)
        self.schema = f"bench_e2e_{tag}"
        self.db_url = with_search_path(DATABASE_URL, self.schema)
        self.store_ticks = store_ticks
        self.logs = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
        self.procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self._files: list[IO[bytes]] = []

    def env(self, port: int) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_TLS")}
        return {
            **base,
            "REDIS_URL": REDIS_URL,
            "NAMESPACE": self.keys.namespace,
            "PARTITIONS": str(PARTITIONS),
            "METRICS_PORT": str(port),
            "METRICS_HOST": "127.0.0.1",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
            "TIMEFRAMES": TIMEFRAMES,
            "ALLOWED_LATENESS_MS": "0",
            "IDLE_CLOSE_MS": "0",
            "TRIM_INTERVAL_S": "0",
            "GRACE_SECONDS": "10",
            "DATABASE_URL": self.db_url,
            "STORE_TICKS": "1" if self.store_ticks else "0",
        }

    async def start(self, redis: aioredis.Redis, timeout_s: float = 60.0) -> None:
        admin = await asyncpg.connect(DATABASE_URL, timeout=10)
        try:
            await admin.execute(f"CREATE SCHEMA {self.schema}")
        finally:
            await admin.close()
        for name in ("sink", "signals", "detectors1", "detectors2"):
            self._spawn(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not all([await asyncio.to_thread(ready, port) for _, port in self.procs.values()]):
            self.check_alive()
            if loop.time() > deadline:
                raise RuntimeError(f"stage processes not ready in {timeout_s}s\n{self.tail()}")
            await asyncio.sleep(0.2)
        owners = [await redis.get(self.keys.lease(p)) for p in range(PARTITIONS)]
        if None in owners:
            raise RuntimeError("detectors ready but a partition has no lease holder")

    def _spawn(self, name: str) -> None:
        port = free_port()
        log = (self.logs / f"{name}.log").open("wb")
        self._files.append(log)
        cmd = [sys.executable, "-m", name.rstrip("12")]
        proc = subprocess.Popen(cmd, env=self.env(port), cwd=ROOT, stdout=log, stderr=log)
        self.procs[name] = (proc, port)

    def check_alive(self) -> None:
        dead = {n: p.returncode for n, (p, _) in self.procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"stage processes ended early: {dead}\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(
            f"{p.name}: {p.read_text(errors='replace')[-1500:]}" for p in self.logs.glob("*.log")
        )

    def rss(self) -> dict[str, int | None]:
        return {n: rss_kib(p.pid) for n, (p, _) in self.procs.items()}

    async def metric(self, names: tuple[str, ...]) -> dict[str, float]:
        """Each metric summed over every process."""
        total = dict.fromkeys(names, 0.0)
        for _, port in self.procs.values():
            for k, v in (await asyncio.to_thread(scrape, port, names)).items():
                total[k] += v
        return total

    async def count(self, table: str) -> int:
        conn = await asyncpg.connect(self.db_url, timeout=10)
        try:
            n = await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2",
                self.schema,
                table,
            )
            return (
                int(await conn.fetchval(f"SELECT count(*) FROM {self.schema}.{table}")) if n else 0
            )
        finally:
            await conn.close()

    async def added(self, redis: aioredis.Redis, stream: str) -> int:
        """Entries ever appended to ``stream`` (XINFO entries-added; 0 when missing)."""
        try:
            info: Any = await redis.xinfo_stream(stream)
        except aioredis.ResponseError:
            return 0
        return int(info["entries-added"])

    async def close(self, redis: aioredis.Redis) -> None:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs.values():
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 10)
        for f in self._files:
            f.close()
        ns = self.keys.namespace
        for pattern in (f"{ns}*", f"{{{ns}*"):
            batch = [k async for k in redis.scan_iter(match=pattern, count=1000)]
            for i in range(0, len(batch), 500):
                await redis.delete(*batch[i : i + 500])
        admin = await asyncpg.connect(DATABASE_URL, timeout=10)
        try:
            await admin.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        finally:
            await admin.close()
