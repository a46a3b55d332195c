"""Support for the end-to-end benchmark: synthetic trades, the stage processes, probes.

* :class:`Trades` — deterministic synthetic trades over ``SYMBOLS`` symbols (one exchange):
  as Binance trade frames (:meth:`Trades.frames`, for the WebSocket feed and the recording
  ``alphapulse replay`` reads) or as the ``TradeColumns`` ``parse_many`` hands the ingest
  writer (:meth:`Trades.columns`). Event times never go back and trade ids run 1, 2, 3...
  per symbol, so nothing is late, a duplicate or a gap.
* :class:`Stack` — a fresh Redis namespace and PostgreSQL schema with the detectors (two),
  signals and sink, and optionally ingest processes, running as ``python -m`` processes;
  :meth:`Stack.close` stops them (SIGTERM, then SIGKILL past the grace), deletes the
  namespace's keys and drops the schema. Settings are the production defaults (trimming
  on) except ``ALLOWED_LATENESS_MS=0`` and ``IDLE_CLOSE_MS=0``: a bar closes on the first
  trade of its partition at or past its end, which is what the latency is measured from.
* probes: each process's RSS and CPU time (``/proc``) and its ``/metrics`` counters;
  :func:`idle_since` (every group consumed and acked everything), :func:`until_written`
  (the ingest processes wrote every tick); :func:`writer_for`, the in-process ingest writer.
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
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

import asyncpg
import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.names import Keys, partition_of
from common.status import collect_status
from ingest.metrics import IngestMetrics
from ingest.simulator.venues.wire import fmt_decimal
from ingest.venues.batch import TradeColumns
from ingest.writer import TickWriter
from tests.bench.e2e_feed import render_frames
from tests.integration.runtime_support import ROOT, free_port
from tests.sink_support import DATABASE_URL, REDIS_URL, with_search_path

EXCHANGE = "binance"
# The load is 1,000 symbols; BENCH_E2E_SYMBOLS=100 shows how the latency depends on
# how many bars close on one boundary (every symbol trades every second at 10,000 ticks/s).
SYMBOLS = int(os.environ.get("BENCH_E2E_SYMBOLS", "1000"))
# Tick partitions of the run (a deployment's choice): 16 by default, as in production;
# BENCH_E2E_PARTITIONS=4 shows what fewer partitions per detector process do to latency.
PARTITIONS = int(os.environ.get("BENCH_E2E_PARTITIONS", "16"))
TIMEFRAMES = "1s,5s,1m"
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
DETECTORS = ("detectors1", "detectors2")
# Signals workers (``python -m signals``; any number share the ``signals`` group).
SIGNALS = tuple(f"signals{i}" for i in range(1, int(os.environ.get("BENCH_E2E_SIGNALS", "1")) + 1))
SIGNALS_ENV = {
    k[len("BENCH_E2E_SIGNALS_") :]: v
    for k, v in os.environ.items()
    if k.startswith("BENCH_E2E_SIGNALS_")
}
INGESTS = int(os.environ.get("BENCH_E2E_INGESTS", "4"))  # ingest processes on the WebSocket path
CHUNK = 1000  # ticks per entry at most (ingest's default)
MS_NS = 1_000_000
#: The live detectors' settings that ``alphapulse replay`` must share.
ENGINE_ENV = {
    "PARTITIONS": str(PARTITIONS),
    "TIMEFRAMES": TIMEFRAMES,
    "ALLOWED_LATENESS_MS": "0",
    "IDLE_CLOSE_MS": "0",
}


class TradeArrays(NamedTuple):
    """Trades as columns: symbol index, per-symbol sequential id, price, qty, time, side."""

    idx: I64
    ids: I64
    price: F64
    qty: F64
    ts_ns: I64  # whole milliseconds (Binance frames carry ms)
    buy: npt.NDArray[np.bool_]  # the taker bought

    def __len__(self) -> int:
        return len(self.idx)

    def part(self, sl: slice) -> TradeArrays:
        a = self
        return TradeArrays(a.idx[sl], a.ids[sl], a.price[sl], a.qty[sl], a.ts_ns[sl], a.buy[sl])

    def then(self, b: TradeArrays) -> TradeArrays:
        """These trades followed by ``b``'s."""
        a, cat = self, np.concatenate
        return TradeArrays(
            cat([a.idx, b.idx]),
            cat([a.ids, b.ids]),
            cat([a.price, b.price]),
            cat([a.qty, b.qty]),
            cat([a.ts_ns, b.ts_ns]),
            cat([a.buy, b.buy]),
        )


class Trades:
    """Synthetic trades: a random walk per symbol, uniform symbol choice, seeded; trade ids
    run 1, 2, 3... per symbol (no gaps, no repeats), prices and sizes have 6 decimals."""

    def __init__(self, seed: int = 7, symbols: int = SYMBOLS) -> None:
        self.rng = np.random.default_rng(seed)
        self.natives = [f"S{i:04d}USDT" for i in range(symbols)]
        self.symbols = [f"S{i:04d}-USDT" for i in range(symbols)]
        self.partition = np.array(
            [partition_of(EXCHANGE, s, PARTITIONS) for s in self.symbols], np.int64
        )
        self.level = 100.0 * np.exp(self.rng.normal(0.0, 1.0, symbols))
        self.next_id = np.ones(symbols, np.int64)
        self.count = 0
        self.last_idx: I64 = np.zeros(0, np.int64)

    def make(self, ts_ns: I64) -> TradeArrays:
        """``len(ts_ns)`` trades of random symbols at these times (non-decreasing)."""
        return self._trades(self.rng.integers(0, len(self.symbols), len(ts_ns)), ts_ns)

    def trailer(self, ts_ns: int) -> TradeArrays:
        """One trade per partition at ``ts_ns``: past it, every earlier bar is closed."""
        _, first = np.unique(self.partition, return_index=True)
        return self._trades(first.astype(np.int64), np.full(len(first), ts_ns, np.int64))

    def _trades(self, idx: I64, ts_ns: I64) -> TradeArrays:
        rng, n = self.rng, len(idx)
        self.last_idx = idx
        price = np.round(self.level[idx] * np.exp(rng.normal(0.0, 0.002, n)), 6)
        self.level *= np.exp(rng.normal(0.0, 0.001, len(self.level)))
        order = np.argsort(idx, kind="stable")  # rank of each trade within its symbol
        s = idx[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        ids = np.empty(n, np.int64)
        ids[order] = self.next_id[s] + rank
        self.next_id += np.bincount(idx, minlength=len(self.next_id))
        self.count += n
        qty = np.round(rng.exponential(0.5, n) + 0.001, 6)
        return TradeArrays(idx, ids, price, qty, ts_ns.astype(np.int64), rng.random(n) < 0.5)

    def columns(self, a: TradeArrays, recv_ts: int) -> TradeColumns:
        """The trades as ``parse_many`` hands them to the ingest writer."""
        pick = a.idx.tolist()
        return TradeColumns(
            EXCHANGE,
            [self.symbols[i] for i in pick],
            [self.natives[i] for i in pick],
            list(map(str, a.ids.tolist())),
            a.ids,
            a.price,
            a.qty,
            a.ts_ns,
            a.buy,
            recv_ts,
        )

    def frames(self, a: TradeArrays) -> list[bytes]:
        """Binance ``trade`` frames of the trades (what the exchange would send)."""
        return render_frames(
            [self.natives[i] for i in a.idx.tolist()],
            a.ids.tolist(),
            prices=decimals(a.price),
            qtys=decimals(a.qty),
            ms=(a.ts_ns // 1_000_000).tolist(),
            buyer_maker=(~a.buy).tolist(),
        )

    def per_symbol(self) -> dict[str, int]:
        """Trades made so far per symbol (ids ran 1..count)."""
        return {s: int(n) - 1 for s, n in zip(self.symbols, self.next_id, strict=True) if n > 1}


def decimals(x: F64) -> list[str]:
    """``fmt_decimal(v, 8)`` of each value (exact for 6-decimal values, checked)."""
    text: list[str] = np.char.mod("%.8f", x).tolist()
    if not np.array_equal(np.array(text, dtype=np.float64), x):
        text = [fmt_decimal(v, 8) for v in x.tolist()]
    return text


def write_recording(path: Path, frames: list[bytes], ts_ns: I64) -> None:
    """Append frames in the recording format ``alphapulse replay`` reads (recv time, frame)."""
    with path.open("ab") as f:
        f.writelines(b"%d %s\n" % (t, fr) for t, fr in zip(ts_ns.tolist(), frames, strict=True))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_snapshot(redis: aioredis.Redis, stack: Stack, me: str) -> dict[str, float]:
    """CPU seconds so far of each stage, this process (named ``me``) and the Redis server."""
    info: Any = await redis.info("cpu")
    used = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return {**stack.cpu(), me: cpu_seconds(os.getpid()), "redis": used}


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
    """Detectors x2, signals, sink and ``ingest`` processes (each ``(url, native symbols)``)
    in a fresh namespace and schema (see the module doc)."""

    def __init__(self, store_ticks: bool, ingest: Sequence[tuple[str, Sequence[str]]] = ()) -> None:
        tag = uuid.uuid4().hex[:10]
        self.keys = Keys(namespace=f"bench-e2e-{tag}:", partitions=PARTITIONS)
        self.schema = f"bench_e2e_{tag}"
        self.db_url = with_search_path(DATABASE_URL, self.schema)
        self.store_ticks = store_ticks
        self.ingest = list(ingest)
        self.logs = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
        self.procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self._files: list[IO[bytes]] = []

    def env(self, port: int) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_TLS")}
        return {
            **base,
            "REDIS_URL": REDIS_URL,
            "NAMESPACE": self.keys.namespace,
            **ENGINE_ENV,
            "METRICS_PORT": str(port),
            "METRICS_HOST": "127.0.0.1",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
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
        self._spawn("sink")
        for name in SIGNALS:
            self._spawn(name, **SIGNALS_ENV)
        for name in DETECTORS:
            self._spawn(name)
        for i, (url, natives) in enumerate(self.ingest, start=1):
            self._spawn(f"ingest{i}", EXCHANGES=f"{EXCHANGE}:" + ",".join(natives),
                        INGEST_URL_BINANCE=url,
                        # The feed writes raw slices (see e2e_feed): a pong the server's
                        # library wrote between two would corrupt a frame, so no pings.
                        INGEST_WS_PING_INTERVAL_S="86400")  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not all([await asyncio.to_thread(ready, port) for _, port in self.procs.values()]):
            self.check_alive()
            if loop.time() > deadline:
                raise RuntimeError(f"stage processes not ready in {timeout_s}s\n{self.tail()}")
            await asyncio.sleep(0.2)
        # Start the clock only once the partitions have settled on both detectors: the first
        # one up takes them all, then hands half over when the second joins.
        before: list[Any] = []
        while True:
            owners = [await redis.get(self.keys.lease(p)) for p in range(PARTITIONS)]
            if None not in owners and len(set(owners)) == len(DETECTORS) and owners == before:
                break
            if loop.time() > deadline:
                raise RuntimeError(f"partitions not settled in {timeout_s}s: {owners}")
            before = owners
            await asyncio.sleep(1.0)

    def _spawn(self, name: str, **extra: str) -> None:
        port = free_port()
        log = (self.logs / f"{name}.log").open("wb")
        self._files.append(log)
        cmd = [sys.executable, "-m", name.rstrip("0123456789")]
        env = {**self.env(port), **extra}
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=log)
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

    def cpu(self) -> dict[str, float]:
        """CPU seconds of each process so far (ingest1, detectors2, ... summed by stage)."""
        out: dict[str, float] = {}
        for name, (p, _) in self.procs.items():
            stage = name.rstrip("0123456789")
            out[stage] = out.get(stage, 0.0) + cpu_seconds(p.pid)
        return out

    def ports(self, prefix: str) -> list[int]:
        return [port for name, (_, port) in self.procs.items() if name.startswith(prefix)]

    async def metric(self, names: tuple[str, ...], prefix: str = "") -> dict[str, float]:
        """Each metric summed over every process (whose name starts with ``prefix``)."""
        total = dict.fromkeys(names, 0.0)
        for port in self.ports(prefix):
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


INGEST_METRICS = (
    "alphapulse_ingest_written_ticks_total",
    "alphapulse_ingest_written_entries_total",
    "alphapulse_ingest_gaps_total",
    "alphapulse_ingest_duplicates_total",
    "alphapulse_ingest_bad_frames_total",
)


async def idle_since(redis: aioredis.Redis, stack: Stack, limit_s: float) -> float:
    """Monotonic time of the first of two consecutive idle polls with nothing new between."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    first: tuple[float, Any] | None = None
    while loop.time() < deadline:
        now = loop.time()
        status = await collect_status(redis, stack.keys)
        if status.idle:
            if first is not None and first[1] == status.fingerprint():
                return first[0]
            first = (now, status.fingerprint())
        else:
            first = None
        stack.check_alive()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"pipeline not idle within {limit_s}s\n{stack.tail()}")


async def until_written(stack: Stack, total: int, stall_s: float = 60.0) -> float:
    """Monotonic time at which the ingest processes had written ``total`` ticks (an error
    once they write nothing for ``stall_s``: the feed server serves one connection per group
    once, so a reconnect stalls the run)."""
    loop = asyncio.get_running_loop()
    name = INGEST_METRICS[0]
    seen, progress = -1.0, loop.time()
    while loop.time() - progress < stall_s:
        now = loop.time()
        written = (await stack.metric((name,), "ingest"))[name]
        if written >= total:
            return now
        if written > seen:
            seen, progress = written, now
        stack.check_alive()
        await asyncio.sleep(0.05)
    raise RuntimeError(f"ingest stalled at {seen:,.0f} of {total:,} ticks\n{stack.tail()}")


def writer_for(
    redis: aioredis.Redis, stack: Stack, metrics: IngestMetrics | None = None
) -> TickWriter:
    """The ingest writer with ingest's default batch size, flush interval and bound."""
    metrics = metrics or IngestMetrics(CollectorRegistry())
    return TickWriter(redis, stack.keys, metrics, batch_size=CHUNK)
