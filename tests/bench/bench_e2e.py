"""End to end on one machine: throughput with nothing lost, signal latency, memory over a soak.

Every stage runs as its own process (``python -m ingest`` twice, ``python -m detectors``
twice, ``signals``, ``sink``) on the local Redis (a fresh namespace) and PostgreSQL (a fresh
schema), with the production settings (trimming on) except ``ALLOWED_LATENESS_MS=0`` and
``IDLE_CLOSE_MS=0`` (see :mod:`tests.bench.e2e_support`). The trades are synthetic, over
1,000 symbols of one exchange (Binance spot), with per-symbol sequential trade ids.

* **Throughput** (ticks not stored, then stored with ``STORE_TICKS=1``): N pre-generated
  trades (50,000 per second of event time, then the trailer of :mod:`tests.bench.e2e_expected`)
  go out as Binance ``trade`` frames over a real WebSocket from this process
  (:class:`tests.bench.e2e_feed.FeedServer`, pre-encoded frames written raw, so the sender is
  not the limit) to the ingest processes, each subscribed to the symbols of its share of the
  partitions (one connection each, so every partition is fed in order by one connection, as
  in the recording replay reads). The figure is N / (time from the first frame sent until
  every group of every stream has consumed and acked everything); ingest's own rate (until
  it has written every tick to ``ticks:{p}``) is printed beside it. Then the database must
  hold exactly what ``alphapulse replay`` of the same frames gives: bars, patterns and
  signals row for row, and with ticks stored every tick once.
* **In-process writer** (a second line): the same trades put straight into an
  ``ingest.writer.TickWriter`` in this process as the ``TradeColumns`` ``parse_many``
  yields (no WebSocket, no JSON): what the stages behind ingest take.
* **Latency** at a paced 10,000 ticks/s whose event times are the wall clock, so 1 s bars
  close every second: for each signal, the Redis entry-id time (ms, Redis's clock) minus the
  receive time stamped on the trade that closed its bar (the first tick of its partition at
  or past the bar's end; ``ALLOWED_LATENESS_MS=0``). Resolution 1 ms (entry ids are ms).
  Fed by the in-process writer (receive time: when the bench offers the trade), or with
  ``BENCH_E2E_LATENCY_FEED=ws`` through the ingest processes over the WebSocket (receive
  time: ingest's stamp, read back from the ``TickBatch`` entries in ``ticks:{p}``). Rows
  checked against replay as above. The bench's own bookkeeping (decoding what it read,
  rendering the recording) waits until after the run: its readers only keep the entries.
* **Memory**: RSS of each process every second over the paced run (the soak: 10 min, 1 min
  with ``BENCH_QUICK=1``): start, end, max and the least-squares slope.
* **Baselines** from the same run: ``redis-benchmark -P 64`` XADD of entries laid out as
  this run's tick micro-batches (fields ``v n s i a``, each of the size a ``TickBatch`` of
  the run's mean ticks per entry encodes to), in ticks/s; asyncpg COPY of tick rows.

Parts: ``BENCH_E2E_PARTS`` (or the arguments of ``python -m tests.bench.bench_e2e``), any of
``throughput``, ``writer``, ``latency``, ``sweep`` (the latency run again at 10 and 100
symbols, 60 s each; default all four); e.g. ``BENCH_E2E_PARTS=latency
python -m tests.bench e2e``. ``BENCH_E2E_INGESTS`` sets the ingest process count (4: each
writer flushes one pipeline at a time, and with 2 the flushes paced the run, 190-196k against
221k ticks/s, ``docs/benchmarks.md``), ``BENCH_E2E_PARTITIONS`` the tick partitions (16),
``BENCH_E2E_SYMBOLS`` the symbols (1,000), ``BENCH_E2E_SIGNALS`` the signals workers (1;
``BENCH_E2E_SIGNALS_<VAR>=value`` sets ``<VAR>`` for them only, e.g.
``BENCH_E2E_SIGNALS_BATCH_COUNT=2``).
Writes ``docs/bench/e2e.png`` and ``docs/bench/e2e.md`` (or into ``BENCH_E2E_OUT``) when every
part ran.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import asyncpg
import numpy as np
import redis as sync_redis
import redis.asyncio as aioredis
from matplotlib.figure import Figure
from prometheus_client import CollectorRegistry

from common.logging import configure_logging
from common.settings import CommonSettings
from ingest.metrics import IngestMetrics
from ingest.packing import columns_batch
from sink.rows import TABLES, tick_rows
from tests.bench import service_redis
from tests.bench.e2e_expected import Check, Expected, compare, run_replay
from tests.bench.e2e_feed import FeedServer, ws_frames
from tests.bench.e2e_latency import RATE, Soak, soak
from tests.bench.e2e_support import (
    CHUNK,
    EXCHANGE,
    INGEST_METRICS,
    INGESTS,
    MS_NS,
    PARTITIONS,
    SYMBOLS,
    Stack,
    TradeArrays,
    Trades,
    cpu_snapshot,
    idle_since,
    scrape,
    until_written,
    write_recording,
    writer_for,
)
from tests.sink_support import REDIS_URL

QUICK = os.environ.get("BENCH_QUICK") == "1"
N_TICKS = 300_000 if QUICK else 2_000_000
PARTS = ("throughput", "writer", "latency", "sweep")
# The ``sweep`` part: the paced latency run again with fewer symbols (same ticks/s), shorter.
SWEEP_SYMBOLS = (10, 100)
SWEEP_S = 20 if QUICK else 60
EVENT_T0_NS = 1_723_075_200 * 10**9  # 2024-08-08T00:00:00Z
EVENT_STEP_NS = 20_000  # 50,000 ticks per second of event time
OUT = Path(
    os.environ.get("BENCH_E2E_OUT") or Path(__file__).resolve().parents[2] / "docs" / "bench"
)


@dataclass
class Run:
    """One throughput run's figures and its samples over time."""

    label: str
    feeder: str = "ingest"  # what wrote the ticks to ``ticks:{p}``
    ticks: int = 0
    seconds: float = 0.0
    ingest_seconds: float = 0.0  # until ingest (or the in-process writer) wrote every tick
    entries: int = 0  # tick micro-batch entries written
    xadd: float = 0.0  # baseline: XADD entries/s of this run's mean entry size
    entry_bytes: int = 0
    copy_rate: float = 0.0  # COPY baseline measured in this run's schema (stored run)
    anomalies: dict[str, float] = field(default_factory=dict)  # gaps, duplicates, bad frames
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per stage over the run
    rows: dict[str, Check] = field(default_factory=dict)
    series: list[tuple[float, float]] = field(default_factory=list)  # (s, ticks/s applied)

    @property
    def rate(self) -> float:
        return self.ticks / self.seconds

    @property
    def per_entry(self) -> float:
        return self.ticks / self.entries if self.entries else float("nan")

    @property
    def xadd_ticks(self) -> float:
        return self.xadd * self.per_entry

    @property
    def exact(self) -> bool:
        return (
            bool(self.rows)
            and all(c.exact for c in self.rows.values())
            and not any(self.anomalies.values())
        )


@dataclass
class Feed:
    """The throughput runs' trades: arrays, the replay recording, and per ingest process
    its symbols and its frames (WebSocket-encoded, in feed order)."""

    trades: Trades
    arrays: TradeArrays
    trailer_ms: int
    recording: Path
    groups: list[tuple[frozenset[str], bytes]]
    expected: Expected | None = None


def make_feed(workdir: Path) -> Feed:
    trades = Trades(seed=1)
    ts = EVENT_T0_NS + np.arange(N_TICKS, dtype=np.int64) * EVENT_STEP_NS
    main = trades.make(ts - ts % MS_NS)
    trailer_ms = (int(ts[-1]) // MS_NS // 60_000 + 2) * 60_000
    tail = trades.trailer(trailer_ms * MS_NS)
    arrays = main.then(tail)
    frames = trades.frames(arrays)
    recording = workdir / "feed.rec"
    write_recording(recording, frames, arrays.ts_ns)
    group_of = trades.partition * INGESTS // PARTITIONS  # per symbol
    tick_group = group_of[arrays.idx]
    groups = []
    for g in range(INGESTS):
        natives = frozenset(n for n, gg in zip(trades.natives, group_of, strict=True) if gg == g)
        picked = np.flatnonzero(tick_group == g).tolist()
        groups.append((natives, ws_frames([frames[i] for i in picked])))
    return Feed(trades, arrays, trailer_ms, recording, groups)


async def throughput(redis: aioredis.Redis, feed: Feed, store_ticks: bool) -> Run:
    """The WebSocket path: FeedServer → ingest processes → ... → PostgreSQL."""
    run = Run("ticks stored" if store_ticks else "ticks not stored")
    # Held until the stack has settled and the CPU counters are read: ingest subscribes while
    # the stack starts, and the partitions change hands then (the quick runs' whole feed went
    # by before, and no CPU was counted for it).
    server = FeedServer(feed.groups, hold=True)
    await server.start()
    natives = [sorted(syms) for syms, _ in feed.groups]
    stack = Stack(store_ticks, ingest=[(server.url, n) for n in natives])
    try:
        await stack.start(redis)
        loop = asyncio.get_running_loop()
        sampler = RateSampler(stack.ports("detectors"), loop.time(), run.series)
        sampler.start()
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in server.subscribed)), 120)
        cpu0 = await cpu_snapshot(redis, stack, "bench (feed server)")
        server.release()
        written = await until_written(stack, len(feed.arrays))
        done = await idle_since(redis, stack, 600)
        cpu1 = await cpu_snapshot(redis, stack, "bench (feed server)")
        run.cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
        sampler.stopped.set()
        await asyncio.to_thread(sampler.join)
        assert server.started_at is not None
        run.series = [(t + sampler.t0 - server.started_at, v) for t, v in run.series]
        run.ticks = len(feed.arrays)
        run.seconds, run.ingest_seconds = done - server.started_at, written - server.started_at
        got = await stack.metric(INGEST_METRICS, "ingest")
        run.entries = int(got[INGEST_METRICS[1]])
        run.anomalies = {
            "gaps": got[INGEST_METRICS[2]],
            "duplicates": got[INGEST_METRICS[3]],
            "bad frames": got[INGEST_METRICS[4]],
        }
        await finish(run, stack, feed)
    finally:
        await stack.close(redis)
        await server.close()
    run.xadd, run.entry_bytes = await asyncio.to_thread(xadd_baseline, feed, run.per_entry)
    return run


async def in_process(redis: aioredis.Redis, feed: Feed, store_ticks: bool) -> Run:
    """The same trades through an in-process ``TickWriter`` (no WebSocket, no JSON)."""
    run = Run(f"ticks {'' if store_ticks else 'not '}stored, in-process ingest writer")
    run.feeder = "the in-process writer"
    a, trades = feed.arrays, feed.trades
    chunks = [a.part(slice(i, i + CHUNK)) for i in range(0, len(a), CHUNK)]
    stack = Stack(store_ticks)
    try:
        await stack.start(redis)
        loop = asyncio.get_running_loop()
        started = loop.time()
        cpu0 = await cpu_snapshot(redis, stack, "bench (writer)")
        sampler = RateSampler(stack.ports("detectors"), started, run.series)
        sampler.start()
        metrics = IngestMetrics(CollectorRegistry())
        async with writer_for(redis, stack, metrics) as writer:
            for chunk in chunks:
                if not writer.offer_columns(trades.columns(chunk, time.time_ns())):
                    await writer.wait_for_space()
        run.ingest_seconds = loop.time() - started
        run.entries = int(metrics.value(INGEST_METRICS[1]))
        done = await idle_since(redis, stack, 600)
        sampler.stopped.set()
        await asyncio.to_thread(sampler.join)
        cpu1 = await cpu_snapshot(redis, stack, "bench (writer)")
        run.cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
        run.ticks, run.seconds = len(a), done - started
        await finish(run, stack, feed)
    finally:
        await stack.close(redis)
    run.xadd, run.entry_bytes = await asyncio.to_thread(xadd_baseline, feed, run.per_entry)
    return run


async def finish(run: Run, stack: Stack, feed: Feed) -> None:
    """Rows against replay; with ticks stored, the COPY baseline in the run's schema."""
    assert feed.expected is not None
    per_symbol = feed.trades.per_symbol() if stack.store_ticks else None
    run.rows = await compare(stack, feed.expected, per_symbol)
    if stack.store_ticks:
        run.copy_rate = await copy_baseline(stack, feed)


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


async def copy_baseline(stack: Stack, feed: Feed, n: int = 200_000) -> float:
    """asyncpg COPY of tick rows into a scratch copy of ``ticks`` (no index): rows/s."""
    a = feed.arrays.part(slice(0, n))
    rows = tick_rows(columns_batch(feed.trades.columns(a, time.time_ns())))
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


def xadd_baseline(feed: Feed, per_entry: float) -> tuple[float, int]:
    """``redis-benchmark -P 64 XADD`` of entries shaped like this run's tick micro-batches:
    the fields of a ``TickBatch`` of ``per_entry`` (rounded) ticks, each value replaced by as
    many bytes (a command line cannot carry the binary column). Entries/s and entry bytes."""
    k = max(1, min(CHUNK, round(per_entry)))
    a = feed.arrays.part(slice(0, k))
    fields = columns_batch(feed.trades.columns(a, time.time_ns())).encode()
    size = sum(len(f) + len(v) for f, v in fields.items())
    n = max(5_000, min(200_000, (256 << 20) // size))  # at most ~256 MiB in the key
    key = f"bench-e2e-xadd-{os.getpid()}"
    url = urlparse(REDIS_URL)
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise RuntimeError("redis-benchmark is missing: the XADD baseline needs it")
    cmd = [exe, "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379), "-q"]
    cmd += ["-P", "64", "-n", str(n), "XADD", key, "*"]
    for f, v in fields.items():
        cmd += [f.decode(), v.decode() if f in (b"v", b"n") else "x" * len(v)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    finally:
        sync_redis.Redis.from_url(REDIS_URL).delete(key)
    found = re.findall(r"([\d.]+) requests per second", out.replace("\r", "\n"))
    if not found:
        raise RuntimeError(f"unexpected redis-benchmark output: {out[-300:]!r}")
    return float(found[-1]), size


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


def report(runs: list[Run], s: Soak | None, copy: float, load: str) -> list[str]:
    lines = [
        f"machine: {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load before the run {load}; every process on it",
        f"synthetic trades over {SYMBOLS} symbols of {EXCHANGE}, {PARTITIONS} partitions, "
        f"timeframes 1s,5s,1m, {INGESTS} ingest (WebSocket runs) + 2 detectors + signals + "
        f"sink, production settings but ALLOWED_LATENESS_MS=0, IDLE_CLOSE_MS=0, "
        f"{'quick' if QUICK else 'full'} run",
        "",
        "| figure | value | same-run limit | ratio |",
        "|---|---|---|---|",
    ]
    for r in runs:
        ok = "exact vs replay" if r.exact else "MISMATCH"
        rows = ", ".join(f"{t} {c.text()}" for t, c in r.rows.items())
        odd = ", ".join(f"{k} {v:,.0f}" for k, v in r.anomalies.items() if v)
        lines.append(
            f"| throughput, {r.label} ({r.ticks:,} ticks; {ok}: {rows}{'; ' + odd if odd else ''})"
            f" | {r.rate:,.0f} ticks/s | "
            + (
                f"Redis XADD -P 64, entries of {r.per_entry:,.0f} ticks ({r.entry_bytes:,} B): "
                f"{r.xadd:,.0f} entries/s = {r.xadd_ticks:,.0f} ticks/s "
                f"| {r.rate / r.xadd_ticks:.3f} |"
                if r.xadd
                else "| |"
            )
        )
        lines.append(
            f"| {r.feeder} alone in that run (all ticks in `ticks:{{p}}`, {r.per_entry:,.0f} ticks "
            f"per entry) | {r.ticks / r.ingest_seconds:,.0f} ticks/s | | |"
        )
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r.cpu.items(), key=lambda x: -x[1]))
        lines.append(
            f"| CPU seconds over that run ({sum(r.cpu.values()):.1f} s in {r.seconds:.1f} s on "
            f"{os.cpu_count()} cores; PostgreSQL and other users not counted) | {cpu} | | |"
        )
    if copy:
        lines.append(f"| PostgreSQL COPY of tick rows | {copy:,.0f} rows/s | | |")
        for stored in (r for r in runs if r.copy_rate):
            lines.append(
                f"| {stored.label}: throughput vs COPY | {stored.rate:,.0f} ticks/s | "
                f"COPY {copy:,.0f} rows/s | {stored.rate / copy:.2f} |"
            )
    if s is None:
        return lines
    lat = [v for _, v in s.latencies]
    if lat:
        lines.append(
            f"| signal latency at {s.sent / s.seconds:,.0f} ticks/s, fed by {s.feed}, "
            f"{PARTITIONS} partitions ({len(lat):,} signals) "
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
        tl = s.trailer_latencies
        if tl:
            lines.append(
                f"| not in the above: the {len(tl):,} signals the trailer closed (the last bars, "
                f"after the paced run) | p50 {pct(tl, 0.5):.1f} ms, p99 {pct(tl, 0.99):.1f} ms; "
                f"all signals together p50 {pct(lat + tl, 0.5):.1f} ms, p99 "
                f"{pct(lat + tl, 0.99):.1f} ms | | |"
            )
        hop_names = {
            "ingest": "receipt -> the closing trade's `ticks:{p}` entry (ingest writer)",
            "detectors": "-> the pattern event's entry (detectors)",
            "signals": "-> the signal's entry (signals)",
        }
        for name, what in hop_names.items():
            v = s.hops.get(name, [])
            if v:
                lines.append(
                    f"| hop per signal: {what} | p50 {pct(v, 0.5):.1f} ms, p99 {pct(v, 0.99):.1f} "
                    f"ms ({len(v):,} of {len(lat):,} signals traced) | | |"
                )
    if s.cpu:
        used = ", ".join(f"{k} {v:.2f}" for k, v in sorted(s.cpu.items()))
        lines.append(f"| CPU over the paced run, cores (of {os.cpu_count()}) | {used} | | |")
    rows = ", ".join(f"{t} {c.text()}" for t, c in s.rows.items())
    exact = all(c.exact for c in s.rows.values())
    lines.append(f"| paced run rows ({'exact vs replay' if exact else 'MISMATCH'}) | {rows} | | |")
    lines += ["", f"RSS over the {s.seconds:.0f} s paced run (MiB):", ""]
    lines += ["| process | start | end | max | slope, 2nd half |", "|---|---|---|---|---|"]
    for name, pts in sorted(s.rss.items()):
        v = [p[1] for p in pts]
        lines.append(
            f"| {name} | {v[0]:.1f} | {v[-1]:.1f} | {max(v):.1f} | {slope(pts):+.2f} MiB/min |"
        )
    return lines


def sweep_report(sweep: list[Soak]) -> list[str]:
    """The paced latency at fewer symbols: how the burst per boundary drives the latency.
    Few bars close per boundary, so few signals: the pattern event latency (every event, not
    only those that became signals) is printed too."""
    if not sweep:
        return []

    def q(v: list[float]) -> str:
        return f"{pct(v, 0.5):.1f} / {pct(v, 0.99):.1f} ms" if v else "-"

    lines = [
        "",
        "| symbols | ticks/s | bar close -> signal p50 / p99 (signals) "
        "| -> pattern event p50 / p99 (events) | hops: detectors, signals p50 / p99 | rows |",
        "|---|---|---|---|---|---|",
    ]
    for r in sweep:
        lat = [v for _, v in r.latencies]
        exact = "exact vs replay" if all(c.exact for c in r.rows.values()) else "MISMATCH"
        hops = ", ".join(q(r.hops.get(h, [])) for h in ("detectors", "signals"))
        lines.append(
            f"| {r.symbols:,} | {r.sent / r.seconds:,.0f} | {q(lat)} ({len(lat):,}; "
            f"{len(r.trailer_latencies):,} closed by the trailer apart) "
            f"| {q(r.pattern_latencies)} ({len(r.pattern_latencies):,}) | {hops} | {exact} |"
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


def parts(argv: list[str]) -> tuple[str, ...]:
    raw = ",".join(argv) or os.environ.get("BENCH_E2E_PARTS", "")
    wanted = tuple(p for p in (x.strip() for x in raw.split(",")) if p) or PARTS
    unknown = set(wanted) - set(PARTS)
    if unknown:
        raise SystemExit(f"bench e2e: unknown parts {sorted(unknown)}; choose from {PARTS}")
    return wanted


async def amain(load: str, wanted: tuple[str, ...]) -> None:
    configure_logging(CommonSettings(log_level="WARNING", metrics_port=0))
    # The services' client: the in-process writer stands in for ingest, and the readers share
    # the machine with the stack.
    redis = service_redis(REDIS_URL)
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    runs: list[Run] = []
    s: Soak | None = None
    sweep: list[Soak] = []
    try:
        if "throughput" in wanted or "writer" in wanted:
            feed = await asyncio.to_thread(make_feed, workdir)
            feed.expected = await asyncio.to_thread(
                run_replay, feed.recording, workdir / "replay", feed.trailer_ms
            )
            if "throughput" in wanted:
                runs += [await throughput(redis, feed, False), await throughput(redis, feed, True)]
            if "writer" in wanted:
                runs += [await in_process(redis, feed, False), await in_process(redis, feed, True)]
            del feed
        if "latency" in wanted:
            s = await soak(redis, workdir / "soak")
        for n in SWEEP_SYMBOLS if "sweep" in wanted else ():
            sweep.append(await soak(redis, workdir / f"sweep{n}", symbols=n, seconds=SWEEP_S))
    finally:
        await redis.aclose()
        shutil.rmtree(workdir, ignore_errors=True)
    copy = max((r.copy_rate for r in runs), default=0.0)  # the best of the stored runs
    lines = report(runs, s, copy, load) + sweep_report(sweep)
    print("\n".join(lines))
    if set(wanted) == set(PARTS) and s is not None:
        write_docs(runs, s, lines)
    soak_ok = all(c.exact for r in [s, *sweep] if r is not None for c in r.rows.values())
    if not all(r.exact for r in runs) or not soak_ok:
        raise SystemExit("bench e2e: rows out != what replay gives for the ticks in (see above)")


def write_docs(runs: list[Run], s: Soak, lines: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    plot(runs, s, OUT / "e2e.png")
    header = ["# End-to-end benchmark (`python -m tests.bench e2e`)", "", "![e2e](e2e.png)", ""]
    (OUT / "e2e.md").write_text("\n".join([*header, *lines]) + "\n")


def main() -> None:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    asyncio.run(amain(load, parts(sys.argv[1:] if __name__ == "__main__" else [])))


if __name__ == "__main__":
    main()
