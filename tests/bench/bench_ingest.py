"""Ingest throughput of one process, next to Redis's own pipelined XADD rate.

Figures (each printed with its baseline, measured in the same run):

* parse only — recorded Binance trade frames through ``BinanceSpot.parse`` (frames/s), and
  through the batch API ``BinanceSpot.parse_many`` 64 frames a call (trades in columns);
* parse + dedupe + write — the same frames through ``Connection.handle_frame`` (parse,
  duplicate/gap check, metrics) and ``TickWriter`` into a real Redis, until every tick is
  appended to ``ticks:{p}`` (ticks/s);
* the same through the batch path — ``Connection.offer_frames`` 64 frames a call
  (``parse_many`` columns, deduper runs, ``TickWriter.offer_columns``: no ``Tick`` per
  trade), as the websocket reader uses it for frames already received;
* websocket end to end — ``alphapulse simulate`` (its own process, speed 0, looping the
  BTCUSDT recording) → ``IngestService`` → Redis: one frame per trade, as Binance sends;
  with ``INGEST_READ_BATCH=1`` (frame by frame) and the default 128 (queued frames batched);
* baseline: ``redis-benchmark -q -P 64 -n 200000 XADD`` (one entry per XADD; ingest packs
  up to ``batch`` ticks per entry), or a Python pipelined XADD loop if redis-benchmark is
  missing (then said so).

Frames are the recorded BTCUSDT/ETHUSDT trades, looped with ids and times shifted (rendered
by the adapter's server side, byte-compatible with what Binance sends) so nothing repeats.
``BENCH_QUICK=1`` runs a short version.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from subprocess import DEVNULL, PIPE

import redis.asyncio as aioredis
import uvloop
from prometheus_client import CollectorRegistry

from common.names import Keys
from common.settings import CommonSettings
from ingest.connection import Connection
from ingest.deadletter import DeadLetters
from ingest.exchanges import get_adapter
from ingest.metrics import IngestMetrics
from ingest.sequence import TradeDeduper
from ingest.service import IngestService
from ingest.settings import DEFAULT_GC_GEN0, IngestSettings, tune_gc
from ingest.simfeed import Feed
from ingest.sources import read_ticks
from ingest.writer import TickWriter

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
QUICK = os.environ.get("BENCH_QUICK") == "1"
N_FRAMES = 50_000 if QUICK else 400_000


def _frames(n: int) -> list[str]:
    ticks = [
        *read_ticks(DATA / "binance-spot-btcusdt-20240808.rec.gz"),
        *read_ticks(DATA / "binance-spot-ethusdt-20240808.rec.gz"),
    ]
    feed = Feed.build("binance", ticks, loop=True)
    session = get_adapter("binance").server_session()
    per = n // len(feed.symbols)
    out: list[str] = []
    for stream in feed.symbols.values():
        out += session.render_trades([stream.tick_at(i) for i in range(per)])
    return out


async def _write_only(frames: list[str], keys: Keys, redis: aioredis.Redis) -> float:
    """The writer's ceiling: already-parsed ticks, one frame's worth per ``put``."""
    now = time.time_ns()
    parse = get_adapter("binance").parse
    ticks = [parse(f, now).ticks for f in frames]
    metrics = IngestMetrics(CollectorRegistry())
    async with TickWriter(redis, keys, metrics, batch_size=1000, flush_interval=0.005) as w:
        t0 = time.perf_counter()
        for batch in ticks:
            await w.put(batch)
        await w.drain()
        dt = time.perf_counter() - t0
    return w.written / dt


def _parse_only(frames: list[str]) -> float:
    parse = get_adapter("binance").parse
    now = time.time_ns()
    t0 = time.perf_counter()
    n = 0
    for frame in frames:
        n += len(parse(frame, now).ticks)
    dt = time.perf_counter() - t0
    assert n == len(frames)
    return n / dt


def _parse_many(frames: list[str], size: int = 64) -> float:
    """The batch API: ``parse_many`` over ``size`` frames at a time, trades in columns."""
    parse_many = get_adapter("binance").parse_many
    batches = [frames[i : i + size] for i in range(0, len(frames), size)]
    now = time.time_ns()
    t0 = time.perf_counter()
    n = 0
    for batch in batches:
        columns = parse_many(batch, now).columns
        assert columns is not None
        n += columns.size
    dt = time.perf_counter() - t0
    assert n == len(frames)
    return n / dt


async def _parse_and_write(
    frames: list[str], keys: Keys, redis: aioredis.Redis, size: int = 0
) -> float:
    """``Connection.handle_frame`` + ``TickWriter.put`` per frame (``size`` 0, as the
    websocket reader does), or the batch path ``Connection.offer_frames`` (``parse_many``
    → deduper runs → ``TickWriter.offer_columns``) ``size`` frames a call."""
    metrics = IngestMetrics(CollectorRegistry())
    adapter = get_adapter("binance")
    batches = [frames[i : i + size] for i in range(0, len(frames), size)] if size else []
    async with TickWriter(redis, keys, metrics, batch_size=1000, flush_interval=0.005) as w:
        conn = Connection(
            adapter,
            ["BTCUSDT", "ETHUSDT"],
            writer=w,
            deduper=TradeDeduper(sequential_key=adapter.trade_id_key),
            metrics=metrics,
            dead_letters=DeadLetters(redis, keys, consumer="bench", dropped=metrics.dlq_dropped),
        )
        t0 = time.perf_counter()
        for frame in frames if not size else ():
            ticks = conn.handle_frame(frame, time.time_ns())
            if ticks:
                await w.put(ticks)
        for batch in batches:
            if not conn.offer_frames(batch, time.time_ns()):
                await w.wait_for_space()
            if w.flush_due:
                await asyncio.sleep(0)  # let the flusher run, as the reader does
        await w.drain()
        dt = time.perf_counter() - t0
    assert w.written == len(frames), (w.written, len(frames))
    return w.written / dt


async def _websocket(
    frames_n: int, keys: Keys, redis_url: str, read_batch: int
) -> tuple[float, float]:
    """Ticks/s written, and ticks per CPU second of this (the ingest) process: the second
    is what ingest itself costs, less sensitive to the simulator and to a busy machine."""
    """``alphapulse simulate`` in its own process (the box's other core) → this process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    feed = f"binance={DATA / 'binance-spot-btcusdt-20240808.rec.gz'}"
    cmd = [sys.executable, "-m", "common.cli", "simulate", "--feed", feed, "--speed", "0"]
    sim = await asyncio.create_subprocess_exec(
        *cmd, "--loop", "--port", str(port), stdout=DEVNULL, stderr=PIPE
    )
    try:
        assert sim.stderr is not None
        url = ""
        while "binance: ws://" not in url:  # the simulator prints its URLs once listening
            line = await asyncio.wait_for(sim.stderr.readline(), 60)
            if not line:
                raise RuntimeError("the simulator did not start")
            url = line.decode()
        metrics = IngestMetrics(CollectorRegistry())
        settings = IngestSettings(
            common=CommonSettings(partitions=keys.partitions, namespace=keys.namespace),
            exchanges=(("binance", ("BTCUSDT",)),),
            urls=(("binance", url.split(": ", 1)[1].strip()),),
            read_batch=read_batch,
        )
        service = IngestService(
            settings, aioredis.Redis.from_url(redis_url), metrics=metrics, keys=keys
        )
        async with service:
            run = asyncio.create_task(service.run())
            writer = service.writer
            await _until(lambda: writer.written >= 1000)  # warm up: connected and flowing
            start, t0, cpu0 = writer.written, time.perf_counter(), time.process_time()
            await _until(lambda: writer.written - start >= frames_n)
            rate = (writer.written - start) / (time.perf_counter() - t0)
            cpu_rate = (writer.written - start) / (time.process_time() - cpu0)
            service.request_stop()
            await run
    finally:
        sim.terminate()
        await asyncio.wait_for(sim.wait(), 10)
    return rate, cpu_rate


async def _until(cond: Callable[[], bool], limit_s: float = 300.0) -> None:
    for _ in range(int(limit_s / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("the websocket benchmark made no progress")


def _redis_benchmark(key: str) -> tuple[str, float]:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return "python pipelined XADD (redis-benchmark missing)", _python_xadd(key)
    m = re.match(r"redis(?:s)?://(?:[^@]*@)?([^:/]+)(?::(\d+))?", REDIS_URL)
    host, port = (m.group(1), m.group(2) or "6379") if m else ("127.0.0.1", "6379")
    n = "50000" if QUICK else "200000"
    cmd = [exe, "-h", host, "-p", port, "-q", "-P", "64", "-n", n, "XADD", key, "*", "f", "v"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    rate = re.findall(r"([\d.]+) requests per second", out)
    return f"redis-benchmark -q -P 64 -n {n} XADD", float(rate[-1])


def _python_xadd(key: str) -> float:
    async def go() -> float:
        r = aioredis.Redis.from_url(REDIS_URL)
        n = 50_000 if QUICK else 200_000
        t0 = time.perf_counter()
        for _ in range(0, n, 64):
            pipe = r.pipeline(transaction=False)
            for _j in range(64):
                pipe.xadd(key, {b"f": b"v"})
            await pipe.execute()
        dt = time.perf_counter() - t0
        await r.aclose()
        return n / dt

    return uvloop.run(go())


async def _cleanup(namespace: str) -> None:
    r = aioredis.Redis.from_url(REDIS_URL)
    async for key in r.scan_iter(match=f"{namespace}*", count=1000):
        await r.delete(key)
    await r.aclose()


def _row(what: str, value: float, unit: str) -> None:
    print(f"{what:<58} {value:>14,.0f} {unit}", flush=True)


def main() -> None:
    namespace = f"bench:{uuid.uuid4().hex[:8]}:"
    frames = _frames(N_FRAMES)
    threshold = gc.get_threshold()
    tune_gc(DEFAULT_GC_GEN0)  # as python -m ingest does
    print(f"{len(frames):,} recorded Binance trade frames (looped, ids shifted)")
    try:
        label, base = _redis_benchmark(f"{namespace}xadd")
        _row(f"baseline: {label}", base, "XADD/s")
        _row("parse only (BinanceSpot.parse)", _parse_only(frames), "frames/s")
        _row(
            "parse only (BinanceSpot.parse_many, 64 frames a call)", _parse_many(frames), "frames/s"
        )

        async def write(job: Callable[..., Awaitable[float]], ns: str) -> float:
            r = aioredis.Redis.from_url(REDIS_URL)
            try:
                return await job(frames, Keys(16, namespace + ns), r)
            finally:
                await r.aclose()

        _row(
            "writer only: parsed ticks -> ticks:{p}",
            uvloop.run(write(_write_only, "w:")),
            "ticks/s",
        )
        rate = uvloop.run(write(_parse_and_write, "pw:"))
        _row("parse + dedupe + write to ticks:{p} (1 process)", rate, "ticks/s")
        rate = uvloop.run(write(functools.partial(_parse_and_write, size=64), "bw:"))
        _row("  same, batch path (offer_frames, 64 frames a call)", rate, "ticks/s")
        ws_n = 20_000 if QUICK else 100_000
        for read_batch, what in ((1, "frame by frame"), (128, "reader batches <= 128")):
            keys = Keys(16, f"{namespace}ws{read_batch}:")
            ws_rate, cpu_rate = uvloop.run(_websocket(ws_n, keys, REDIS_URL, read_batch))
            _row(f"websocket: simulate (2nd process) -> ingest, {what}", ws_rate, "ticks/s")
            _row("  ingest process CPU", cpu_rate, "ticks/CPU-s")
    finally:
        uvloop.run(_cleanup(namespace))
        gc.unfreeze()  # leave the process as it was for the other stages' benchmarks
        gc.set_threshold(*threshold)


if __name__ == "__main__":
    main()
