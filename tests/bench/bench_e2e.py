"""End to end on one machine: throughput with nothing lost, signal latency, memory over a soak.

Every stage runs as its own process (``python -m detectors`` twice, ``signals``, ``sink``) on
the local Redis (a fresh namespace) and PostgreSQL (a fresh schema); this process plays
ingest: synthetic trades over 1,000 symbols (:mod:`tests.bench.e2e_support`) go in as the
``TradeColumns`` that ``parse_many`` yields, through the real ``ingest.writer.TickWriter``
(ingest's defaults: 1000 ticks per entry, 5 ms flush) into ``ticks:{p}``. The WebSocket and
JSON parse in front of it are measured by ``bench_ingest``/``bench_ingest_parse``.

* **Throughput** (ticks not stored, then stored with ``STORE_TICKS=1``): N pre-generated
  ticks (50,000 per second of event time) are written as fast as the writer goes; the
  figure is N / (time from the first write until every group of every stream has consumed
  and acked everything). Then the database must hold exactly the expected rows: bars ==
  what the engine closes for these ticks (computed from the ticks), patterns == the pattern
  entries' patterns, signals == the signals stream's entries, ticks == N.
* **Latency** at a paced 10,000 ticks/s whose event times are the wall clock, so 1 s bars
  close every second: for each signal, the Redis entry-id time (ms, Redis's clock) minus the
  receive time stamped on the trade that closed its bar (the first tick of its partition at
  or past the bar's end; ``ALLOWED_LATENESS_MS=0``). Resolution 1 ms (entry ids are ms).
* **Memory**: RSS of each process every second over the paced run (the soak: 10 min, 1 min
  with ``BENCH_QUICK=1``): start, end, max and the least-squares slope.
* **Baselines** from the same run: ``redis-benchmark -P 64`` XADD and asyncpg COPY of tick rows.

Writes ``docs/bench/e2e.png`` (throughput, latency and RSS over the run) and ``docs/bench/e2e.md``.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import platform
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
import numpy as np
import orjson
import redis.asyncio as aioredis
from matplotlib.figure import Figure
from prometheus_client import CollectorRegistry

from common.logging import configure_logging
from common.names import partition_of
from common.settings import CommonSettings
from common.status import collect_status
from detectors.timeframes import parse_timeframe
from ingest.metrics import IngestMetrics
from ingest.packing import columns_batch
from ingest.writer import TickWriter
from sink.rows import TABLES, tick_rows
from tests.bench.e2e_support import (
    EXCHANGE,
    PARTITIONS,
    SYMBOLS,
    Stack,
    Trades,
    rss_kib,
    scrape,
)
from tests.sink_support import REDIS_URL

QUICK = os.environ.get("BENCH_QUICK") == "1"
N_TICKS = 300_000 if QUICK else 2_000_000
SOAK_S = 60 if QUICK else 600
RATE = 10_000
CHUNK = 1000
EVENT_T0_NS = 1_723_075_200 * 10**9  # 2024-08-08T00:00:00Z
EVENT_STEP_NS = 20_000  # 50,000 ticks per second of event time
OUT = Path(__file__).resolve().parents[2] / "docs" / "bench"


@dataclass
class Run:
    """One throughput run's figures and its samples over time."""

    label: str
    ticks: int = 0
    seconds: float = 0.0
    write_seconds: float = 0.0
    copy_rate: float = 0.0  # COPY baseline measured in this run's schema (stored run)
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # table -> (stored, expected)
    series: list[tuple[float, float]] = field(default_factory=list)  # (s, ticks/s applied)

    @property
    def rate(self) -> float:
        return self.ticks / self.seconds

    @property
    def exact(self) -> bool:
        return all(a == b for a, b in self.rows.values())


@dataclass
class Soak:
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (s, ms)
    emitted: list[float] = field(default_factory=list)  # emitted_at - closing tick, ms
    pattern_latencies: list[float] = field(default_factory=list)  # pattern entry, ms
    rss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # MiB
    sent: int = 0
    seconds: float = 0.0
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)


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


async def verify(redis: aioredis.Redis, stack: Stack, trades: Trades) -> dict[str, tuple[int, int]]:
    """(stored, expected) per table: entries in == rows out."""
    patterns = 0
    async for _ in _entries(redis, stack.keys.patterns):
        patterns += len(orjson.loads(_[b"d"])["patterns"])
    rows = {
        "bars": (await stack.count("bars"), trades.expected_bars()),
        "patterns": (await stack.count("patterns"), patterns),
        "signals": (await stack.count("signals"), await stack.added(redis, stack.keys.signals)),
    }
    if stack.store_ticks:
        rows["ticks"] = (await stack.count("ticks"), trades.count)
    return rows


async def _entries(redis: aioredis.Redis, stream: str) -> Any:
    last = "-"
    while True:
        got: Any = await redis.xrange(stream, min=last, count=5000)
        if not got:
            return
        for _, fields in got:
            yield fields
        last = "(" + got[-1][0].decode()


def writer_for(redis: aioredis.Redis, stack: Stack) -> TickWriter:
    """The ingest writer with ingest's default batch size, flush interval and bound."""
    return TickWriter(redis, stack.keys, IngestMetrics(CollectorRegistry()), batch_size=CHUNK)


async def throughput(redis: aioredis.Redis, store_ticks: bool) -> Run:
    run = Run("ticks stored" if store_ticks else "ticks not stored")
    trades = Trades(seed=1 if store_ticks else 2)
    steps = np.arange(CHUNK, dtype=np.int64) * EVENT_STEP_NS
    chunks = [
        trades.chunk(EVENT_T0_NS + i * EVENT_STEP_NS + steps, 0) for i in range(0, N_TICKS, CHUNK)
    ]
    stack = Stack(store_ticks)
    try:
        await stack.start(redis)
        loop = asyncio.get_running_loop()
        started = loop.time()
        sampler = RateSampler([port for _, port in stack.procs.values()], started, run.series)
        sampler.start()
        async with writer_for(redis, stack) as writer:
            for cols in chunks:
                if not writer.offer_columns(cols._replace(recv_ts=time.time_ns())):
                    await writer.wait_for_space()
        run.write_seconds = loop.time() - started
        done = await idle_since(redis, stack, 600)
        sampler.stopped.set()
        await asyncio.to_thread(sampler.join)
        run.ticks, run.seconds = trades.count, done - started
        run.rows = await verify(redis, stack, trades)
        if store_ticks:
            run.copy_rate = await copy_baseline(stack, chunks[:200])
    finally:
        await stack.close(redis)
    return run


class RateSampler(threading.Thread):
    """Ticks/s the detectors applied (their counters), every 0.5 s, on its own thread: the
    writer keeps the event loop busy while it floods, which would starve an asyncio task."""

    NAME = "alphapulse_detectors_ticks_total"

    def __init__(self, ports: list[int], t0: float, out: list[tuple[float, float]]) -> None:
        super().__init__(daemon=True)
        self.ports, self.t0, self.out = ports, t0, out
        self.stopped = threading.Event()

    def total(self) -> float:
        return sum(scrape(port, (self.NAME,))[self.NAME] for port in self.ports)

    def run(self) -> None:
        prev_t, prev = time.monotonic(), self.total()
        while not self.stopped.wait(0.5):
            now, value = time.monotonic(), self.total()
            self.out.append((now - self.t0, (value - prev) / (now - prev_t)))
            prev_t, prev = now, value


async def copy_baseline(stack: Stack, chunks: list[Any]) -> float:
    """asyncpg COPY of tick rows into a scratch copy of ``ticks`` (no index): rows/s."""
    rows = [r for cols in chunks for r in tick_rows(columns_batch(cols))]
    conn = await asyncpg.connect(stack.db_url)
    try:
        await conn.execute(f"CREATE TABLE {stack.schema}.copy_scratch (LIKE {stack.schema}.ticks)")
        started = time.perf_counter()
        for i in range(0, len(rows), 50_000):
            await conn.copy_records_to_table(
                "copy_scratch",
                schema_name=stack.schema,
                records=rows[i : i + 50_000],
                columns=TABLES["ticks"].columns,
            )
        return len(rows) / (time.perf_counter() - started)
    finally:
        await conn.close()


def redis_xadd_baseline(key: str) -> float:
    """``redis-benchmark -q -P 64 -n 200000 XADD key * f v``: entries/s."""
    url = urlparse(REDIS_URL)
    cmd = ["redis-benchmark", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379)]
    cmd += ["-q", "-P", "64", "-n", "200000", "XADD", key, "*", "f", "v"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r"([\d.]+) requests per second", out.replace("\r", "\n"))
    if not found:
        raise RuntimeError(f"unexpected redis-benchmark output: {out!r}")
    return float(found.group(1))


class Closers:
    """Per partition, the receive time of its first tick in each second of event time."""

    def __init__(self) -> None:
        self.secs: list[list[int]] = [[] for _ in range(PARTITIONS)]
        self.recv: list[list[int]] = [[] for _ in range(PARTITIONS)]

    def add(self, part: np.ndarray[Any, Any], ts_ns: np.ndarray[Any, Any], recv_ns: int) -> None:
        keys = part * 10**12 + ts_ns // 10**9
        uniq = np.unique(keys)
        for p, sec in zip((uniq // 10**12).tolist(), (uniq % 10**12).tolist(), strict=True):
            if not self.secs[p] or sec > self.secs[p][-1]:
                self.secs[p].append(sec)
                self.recv[p].append(recv_ns)

    def closing_recv(self, p: int, end_ms: int) -> int | None:
        """Receive time (ns) of partition ``p``'s first tick at or after ``end_ms``."""
        i = bisect.bisect_left(self.secs[p], -(-end_ms // 1000))
        return self.recv[p][i] if i < len(self.recv[p]) else None


async def soak(redis: aioredis.Redis) -> Soak:
    result = Soak()
    trades, closers = Trades(seed=3), Closers()
    stack = Stack(store_ticks=False)
    try:
        await stack.start(redis)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        reader = asyncio.create_task(read_signals(redis, stack, closers, t0, result))
        memory = asyncio.create_task(sample_rss(stack, t0, result))
        last_ts = 0
        async with writer_for(redis, stack) as writer:
            while (elapsed := loop.time() - t0) < SOAK_S:
                due = int(elapsed * RATE) - result.sent
                if due > 0:
                    now = time.time_ns()
                    ts = np.maximum(now, last_ts + 1) + np.arange(due, dtype=np.int64)
                    last_ts = int(ts[-1])
                    cols = trades.chunk(ts, now)
                    closers.add(trades.partition[trades.last_idx], ts, now)
                    writer.offer_columns(cols)
                    result.sent += due
                await asyncio.sleep(0.005)
        result.seconds = loop.time() - t0
        await idle_since(redis, stack, 300)
        await asyncio.sleep(0.5)
        reader.cancel()
        memory.cancel()
        result.rows = await verify(redis, stack, trades)
    finally:
        await stack.close(redis)
    return result


async def read_signals(
    redis: aioredis.Redis, stack: Stack, closers: Closers, t0: float, out: Soak
) -> None:
    """Latency of every signal (and, for the detectors' share, every pattern event)."""
    loop = asyncio.get_running_loop()
    signals, patterns = stack.keys.signals, stack.keys.patterns
    last = {signals: "0-0", patterns: "0-0"}
    tf_ms: dict[str, int] = {}

    def since_close(doc: dict[str, Any], open_ms: int, entry_ms: int) -> float:
        tf = doc["timeframe"]
        if tf not in tf_ms:
            tf_ms[tf] = parse_timeframe(tf).ms
        p = partition_of(doc["exchange"], doc["symbol"], PARTITIONS)
        recv = closers.closing_recv(p, open_ms + tf_ms[tf])
        if recv is None:
            raise RuntimeError(f"output before its closing tick: {doc}")
        return entry_ms - recv / 1e6

    while True:
        got: Any = await redis.xread(last, count=1000, block=200)  # type: ignore[arg-type]
        for raw, entries in got:
            stream = raw.decode()
            for entry_id, fields in entries:
                last[stream] = entry_id.decode()
                entry_ms = int(last[stream].split("-")[0])
                doc = orjson.loads(fields[b"d"])
                if stream == patterns:
                    bar = doc["bar"]
                    out.pattern_latencies.append(since_close(bar, bar["open_time"], entry_ms))
                    continue
                out.latencies.append(
                    (loop.time() - t0, since_close(doc, doc["open_time_ms"], entry_ms))
                )
                emitted = datetime.fromisoformat(doc["emitted_at"].replace("Z", "+00:00"))
                out.emitted.append(since_close(doc, doc["open_time_ms"], 0) + emitted_ms(emitted))


def emitted_ms(at: datetime) -> float:
    return at.timestamp() * 1000


async def sample_rss(stack: Stack, t0: float, out: Soak) -> None:
    loop = asyncio.get_running_loop()
    while True:
        now = loop.time() - t0
        for name, kib in [
            *stack.rss().items(),
            ("bench: writer + bookkeeping", rss_kib(os.getpid())),
        ]:
            if kib is not None:
                out.rss.setdefault(name, []).append((now, kib / 1024))
        await asyncio.sleep(1.0)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def slope(points: list[tuple[float, float]]) -> float:
    """MiB per minute, least squares over the second half (after warm-up)."""
    half = points[len(points) // 2 :]
    if len(half) < 3:
        return float("nan")
    t, v = np.array([p[0] for p in half]) / 60, np.array([p[1] for p in half])
    return float(np.polyfit(t, v, 1)[0])


def report(runs: list[Run], s: Soak, xadd: float, copy: float, load: str) -> list[str]:
    lines = [
        f"machine: {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load before the run {load}; every process on it",
        f"synthetic trades over {SYMBOLS} symbols of {EXCHANGE}, {PARTITIONS} partitions, "
        f"timeframes 1s,5s,1m, 2 detectors + signals + sink, {'quick' if QUICK else 'full'} run",
        "",
        "| figure | value | same-run limit | ratio |",
        "|---|---|---|---|",
    ]
    for r in runs:
        ok = "exact" if r.exact else "MISMATCH"
        rows = ", ".join(f"{t} {a}/{b}" for t, (a, b) in r.rows.items())
        lines.append(
            f"| throughput, {r.label} ({r.ticks:,} ticks; {ok}: {rows}) | {r.rate:,.0f} ticks/s "
            f"| Redis XADD -P 64: {xadd:,.0f} entries/s | {r.rate / xadd:.2f} |"
        )
        lines.append(
            f"| ingest writer alone in that run | {r.ticks / r.write_seconds:,.0f} ticks/s | | |"
        )
    lines.append(f"| PostgreSQL COPY of tick rows | {copy:,.0f} rows/s | | |")
    stored = next((r for r in runs if "stored" in r.label and "not" not in r.label), None)
    if stored:
        lines.append(
            f"| stored-ticks throughput vs COPY | {stored.rate:,.0f} ticks/s | "
            f"COPY {copy:,.0f} rows/s | {stored.rate / copy:.2f} |"
        )
    lat = [v for _, v in s.latencies]
    if lat:
        lines.append(
            f"| signal latency at {s.sent / s.seconds:,.0f} ticks/s ({len(lat):,} signals) "
            f"| p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms, "
            f"p999 {pct(lat, 0.999):.1f} ms, max {max(lat):.1f} ms | | |"
        )
        em, pl = s.emitted, s.pattern_latencies
        lines.append(
            f"| of which to the pattern event entry (detectors) | p50 {pct(pl, 0.5):.1f} ms, "
            f"p99 {pct(pl, 0.99):.1f} ms, p999 {pct(pl, 0.999):.1f} ms ({len(pl):,} events) | | |"
        )
        lines.append(
            f"| same, to the signal's emitted_at | p50 {pct(em, 0.5):.1f} ms, "
            f"p99 {pct(em, 0.99):.1f} ms | | |"
        )
    rows = ", ".join(f"{t} {a}/{b}" for t, (a, b) in s.rows.items())
    exact = all(a == b for a, b in s.rows.values())
    lines.append(f"| paced run rows ({'exact' if exact else 'MISMATCH'}) | {rows} | | |")
    lines += ["", f"RSS over the {s.seconds:.0f} s paced run (MiB):", ""]
    lines += ["| process | start | end | max | slope, 2nd half |", "|---|---|---|---|---|"]
    for name, pts in sorted(s.rss.items()):
        v = [p[1] for p in pts]
        lines.append(
            f"| {name} | {v[0]:.1f} | {v[-1]:.1f} | {max(v):.1f} | {slope(pts):+.2f} MiB/min |"
        )
    return lines


def plot(runs: list[Run], s: Soak, path: Path) -> None:
    fig = Figure(figsize=(10, 11))
    a, b, c = fig.subplots(3, 1)
    for r in runs:
        a.plot([t for t, _ in r.series], [v for _, v in r.series], label=r.label)
        a.axhline(r.rate, linestyle=":", color=a.lines[-1].get_color())
    a.set(title="Throughput: ticks/s applied by the detectors (dotted: end-to-end average)")
    a.set(xlabel="s since the first tick", ylabel="ticks/s")
    a.legend()
    windows: dict[int, list[float]] = {}
    for t, v in s.latencies:
        windows.setdefault(int(t // 5) * 5, []).append(v)
    xs = sorted(windows)
    for q, label in ((0.5, "p50"), (0.99, "p99"), (1.0, "max")):
        b.plot(xs, [pct(windows[x], q) for x in xs], label=label)
    b.axhline(10, linestyle="--", color="grey", label="aim p99 10 ms")
    b.set(title=f"Latency, bar-closing trade -> signal entry, at {RATE:,} ticks/s (5 s windows)")
    b.set(xlabel="s since start", ylabel="ms", yscale="log")
    b.legend()
    for name, pts in sorted(s.rss.items()):
        c.plot([t for t, _ in pts], [v for _, v in pts], label=name)
    c.set(title="RSS per process over the paced run", xlabel="s since start", ylabel="MiB")
    c.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


async def amain(load: str) -> None:
    configure_logging(CommonSettings(log_level="WARNING", metrics_port=0))
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        key = f"bench-e2e-xadd-{os.getpid()}"
        xadd = await asyncio.to_thread(redis_xadd_baseline, key)
        await redis.delete(key)
        runs = [await throughput(redis, False), await throughput(redis, True)]
        copy = runs[1].copy_rate
        s = await soak(redis)
    finally:
        await redis.aclose()
    lines = report(runs, s, xadd, copy, load)
    print("\n".join(lines))
    OUT.mkdir(parents=True, exist_ok=True)
    plot(runs, s, OUT / "e2e.png")
    header = ["# End-to-end benchmark (`python -m tests.bench e2e`)", "", "![e2e](e2e.png)", ""]
    (OUT / "e2e.md").write_text("\n".join([*header, *lines]) + "\n")
    if not all(r.exact for r in runs) or not all(a == b for a, b in s.rows.values()):
        raise SystemExit("bench e2e: rows out != entries in (see above)")


def main() -> None:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    asyncio.run(amain(load))


if __name__ == "__main__":
    main()
