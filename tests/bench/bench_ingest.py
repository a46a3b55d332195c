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
* 1,000 interleaved symbols — the same recorded trades, each given to one of 1,000 symbols
  at random (ids consecutive per symbol), as a feed of many symbols interleaves them: the
  batch path in this process, and a WebSocket raw feed (``tests.bench.e2e_feed.FeedServer``
  in a 2nd process: pre-encoded frames written as fast as ingest reads them) →
  ``IngestService`` → Redis, in ticks per CPU-second of the ingest process; each next to the
  same measure with few symbols (2 for the batch path, 1 for the WebSocket) in the same run;
* WebSocket clients, receive only — the raw feed (1 symbol, 2nd process) read and dropped by
  ``ingest.wsclient`` (picows, ingest's client), ``picows.websockets`` (its
  websockets-compatible API), aiohttp and ``websockets`` (the baseline: ingest's client
  before), frames/s and frames per CPU-second, in the same run;
* websocket raw feed → ingest → Redis with ingest's client, next to the same service with
  the ``websockets`` library swapped in as its client (``_WebsocketsSocket``: the reader of
  before, batches taken from its receive queue) — the same run, the same feed;
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
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from subprocess import DEVNULL, PIPE
from typing import Any

import aiohttp
import numpy as np
import picows.websockets
import redis.asyncio as aioredis
import uvloop
import websockets.asyncio.client
from prometheus_client import CollectorRegistry
from websockets.exceptions import ConnectionClosed

import ingest.connection
from common.contracts import Tick
from common.lifecycle import tune_gc
from common.names import Keys
from common.settings import DEFAULT_GC_GEN0, CommonSettings
from ingest import wsclient
from ingest.connection import Connection
from ingest.deadletter import DeadLetters
from ingest.metrics import IngestMetrics
from ingest.offline.ticks import read_ticks
from ingest.sequence import TradeDeduper
from ingest.service import IngestService
from ingest.settings import IngestSettings
from ingest.simulator.market import Feed
from ingest.simulator.venues import get_server
from ingest.venues import get_adapter
from ingest.writer import TickWriter
from tests.bench import service_redis
from tests.bench.e2e_feed import FeedServer, ws_frames
from tests.polling import until

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
QUICK = os.environ.get("BENCH_QUICK") == "1"
N_FRAMES = 50_000 if QUICK else 400_000
MANY = 1_000  # symbols of the interleaved case
MANY_WS_TICKS = 100_000 if QUICK else 400_000  # measured, after a warm-up
CLIENT_FRAMES = 200_000 if QUICK else 1_000_000  # the receive-only client rows


def _recorded_ticks(n: int) -> list[Tick]:
    """``n`` recorded BTCUSDT/ETHUSDT trades (looped, ids and times shifted), in order."""
    ticks = [
        *read_ticks(DATA / "binance-spot-btcusdt-20240808.rec.gz"),
        *read_ticks(DATA / "binance-spot-ethusdt-20240808.rec.gz"),
    ]
    streams = list(Feed.build("binance", ticks, loop=True).symbols.values())
    return [streams[i % len(streams)].tick_at(i // len(streams)) for i in range(n)]


def _interleaved_frames(
    n: int, symbols: int, seed: int = 7
) -> tuple[list[str], list[str], list[int]]:
    """``n`` Binance trade frames of ``symbols`` native symbols (``S0000USDT``...), each
    trade given to a symbol drawn at random, ids 1, 2, 3... per symbol; the symbols; and
    each frame's symbol (an index into them)."""
    natives = [f"S{i:04d}USDT" for i in range(symbols)]
    pick = np.random.default_rng(seed).integers(0, symbols, n).tolist()
    next_id = [1] * symbols
    ticks = []
    for t, k in zip(_recorded_ticks(n), pick, strict=True):
        ticks.append(t._replace(native_symbol=natives[k], trade_id=str(next_id[k])))
        next_id[k] += 1
    return get_server("binance").session().render_trades(ticks), natives, pick


def _frames(n: int) -> list[str]:
    ticks = [
        *read_ticks(DATA / "binance-spot-btcusdt-20240808.rec.gz"),
        *read_ticks(DATA / "binance-spot-ethusdt-20240808.rec.gz"),
    ]
    feed = Feed.build("binance", ticks, loop=True)
    session = get_server("binance").session()
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
    frames: list[str], keys: Keys, redis: aioredis.Redis, size: int = 0, *, cpu: bool = False
) -> float:
    """``Connection.handle_frame`` + ``TickWriter.put`` per frame (``size`` 0, as the
    websocket reader does), or the batch path ``Connection.offer_frames`` (``parse_many``
    → deduper runs → ``TickWriter.offer_columns``) ``size`` frames a call. Ticks/s, or
    with ``cpu`` ticks per CPU-second of this process."""
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
        t0, cpu0 = time.perf_counter(), time.process_time()
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
        dt = time.process_time() - cpu0 if cpu else time.perf_counter() - t0
    assert w.written == len(frames), (w.written, len(frames))
    return w.written / dt


async def _websocket(
    frames_n: int, keys: Keys, redis_url: str, read_batch: int, *, baseline: bool = False
) -> tuple[float, float]:
    """``alphapulse simulate`` in its own process (the box's other core) → this process
    (``baseline``: with the ``websockets`` library as ingest's client)."""
    if baseline:
        async with _websockets_client():
            return await _websocket(frames_n, keys, redis_url, read_batch)
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
        return await _ingest(
            url.split(": ", 1)[1].strip(),
            ["BTCUSDT"],
            frames_n,
            keys,
            redis_url,
            read_batch=read_batch,
        )
    finally:
        sim.terminate()
        await asyncio.wait_for(sim.wait(), 10)


async def _ingest(
    url: str,
    natives: Sequence[str],
    ticks_n: int,
    keys: Keys,
    redis_url: str,
    *,
    read_batch: int = 128,
    warm_up: int = 1000,
) -> tuple[float, float]:
    """``IngestService`` in this process reading ``natives`` from ``url`` into Redis: ticks/s
    written over ``ticks_n`` ticks after ``warm_up``, and ticks per CPU second of this
    process (what ingest itself costs, less sensitive to the feeder and a busy machine)."""
    metrics = IngestMetrics(CollectorRegistry())
    settings = IngestSettings(
        common=CommonSettings(partitions=keys.partitions, namespace=keys.namespace),
        exchanges=(("binance", tuple(natives)),),
        urls=(("binance", url),),
        read_batch=read_batch,
    )
    service = IngestService(settings, service_redis(redis_url), metrics=metrics, keys=keys)
    async with service:
        run = asyncio.create_task(service.run())
        writer = service.writer
        # connected and flowing
        await until(
            lambda: writer.written >= warm_up,
            "the warm-up trades",
            timeout_s=300.0,
            interval_s=0.02,
        )
        start, t0, cpu0 = writer.written, time.perf_counter(), time.process_time()
        await until(
            lambda: writer.written - start >= ticks_n,
            "the measured trades",
            timeout_s=300.0,
            interval_s=0.02,
        )
        rate = (writer.written - start) / (time.perf_counter() - t0)
        cpu_rate = (writer.written - start) / (time.process_time() - cpu0)
        service.request_stop()
        await run
    return rate, cpu_rate


def _serve_raw(symbols: int, frames_n: int, out: Pipe) -> None:
    """The raw feed's process: ``frames_n`` interleaved frames of ``symbols`` symbols, one
    group per connection of the adapter's plan; sends its URL once listening, serves until
    terminated."""

    async def serve() -> None:
        frames, natives, pick = _interleaved_frames(frames_n, symbols)
        plan = get_adapter("binance").connection_plan(natives)
        member = {n: g for g, group in enumerate(plan) for n in group}
        of_frame = [member[natives[k]] for k in pick]
        groups = []
        for g, group in enumerate(plan):
            mine = [f.encode() for f, m in zip(frames, of_frame, strict=True) if m == g]
            groups.append((frozenset(group), ws_frames(mine)))
        server = FeedServer(groups)
        await server.start()
        out.send((server.url, natives))
        await asyncio.Event().wait()

    uvloop.run(serve())


async def _websocket_raw(
    symbols: int, ticks_n: int, keys: Keys, redis_url: str
) -> tuple[float, float]:
    """``FeedServer`` in a 2nd process serving ``symbols`` interleaved symbols → this process
    (``_ingest``, reader batches <= 128), warmed up on 10 ticks a symbol."""
    warm_up = max(1000, 10 * symbols)
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_serve_raw, args=(symbols, warm_up + ticks_n + 10_000, send))
    proc.start()
    try:
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, recv.poll, 300):
            raise RuntimeError("the raw feed did not start")
        url, natives = recv.recv()
        return await _ingest(url, natives, ticks_n, keys, redis_url, warm_up=warm_up)
    finally:
        proc.terminate()
        proc.join(10)


class _WebsocketsSocket:
    """The ``websockets`` library behind ``ingest.wsclient.WebSocket``'s interface, as
    ingest read with it before (``recv()`` per frame, the frames already in its receive
    queue taken as a batch): the baseline of the WebSocket rows, swapped in by
    :func:`_websockets_client`."""

    def __init__(self, ws: websockets.asyncio.client.ClientConnection) -> None:
        self.ws = ws
        self.queue = ws.recv_messages.frames  # type: ignore[attr-defined]  # its receive queue
        self.sending: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self.queue)

    async def recv_batch(self, limit: int) -> list[bytes]:
        try:
            frames = [await self.ws.recv(decode=False)]
            while len(self.queue) and len(frames) < limit:
                frames.append(await self.ws.recv(decode=False))
        except ConnectionClosed as e:
            raise wsclient.SocketClosed("closed" if e.rcvd else "dropped") from e
        return frames

    def send(self, text: str) -> None:
        task = asyncio.create_task(self.ws.send(text))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    def abort(self) -> None:
        self.ws.transport.abort()

    async def close(self) -> None:
        await self.ws.close()


@asynccontextmanager
async def _websockets_client() -> AsyncIterator[None]:
    """``ingest.connection`` dials with the ``websockets`` library meanwhile."""

    async def connect(url: str, **kw: Any) -> Any:
        ws = await websockets.asyncio.client.connect(
            url,
            open_timeout=kw["open_timeout_s"],
            ping_interval=kw["ping_interval_s"],
            ping_timeout=kw["ping_timeout_s"],
            max_size=kw["max_message_bytes"],
            close_timeout=2.0,
        )
        return _WebsocketsSocket(ws)

    ours = ingest.connection.connect
    ingest.connection.connect = connect  # type: ignore[assignment]
    try:
        yield
    finally:
        ingest.connection.connect = ours


_SUBSCRIBE = '{"method":"SUBSCRIBE","params":["s0000usdt@trade"],"id":1}'


class _Clock:
    """Wall and CPU time of the receive loop alone (not the connect, not the close)."""

    def start(self) -> None:
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()

    def rates(self, n: int) -> tuple[float, float]:
        return n / (time.perf_counter() - self.t0), n / (time.process_time() - self.cpu0)


async def _recv_websockets(url: str, n: int, *, compat: bool = False) -> tuple[float, float]:
    """Receive ``n`` frames with ``websockets`` (or ``picows.websockets``, its API)."""
    lib = picows.websockets if compat else websockets.asyncio.client
    clock = _Clock()
    async with lib.connect(url, max_size=None, compression=None, close_timeout=0.1) as ws:
        await ws.send(_SUBSCRIBE)
        await ws.recv(decode=False)  # the ack
        clock.start()
        for _ in range(n):
            await ws.recv(decode=False)
        return clock.rates(n)


async def _recv_wsclient(url: str, n: int) -> tuple[float, float]:
    """Receive ``n`` frames with ``ingest.wsclient`` (picows, batches)."""
    ws = await wsclient.connect(
        url, open_timeout_s=10, ping_interval_s=20, ping_timeout_s=20, max_message_bytes=1 << 21
    )
    ws.send(_SUBSCRIBE)
    await ws.recv_batch(1)  # the ack
    clock = _Clock()
    clock.start()
    got = 0
    while got < n:
        got += len(await ws.recv_batch(n - got))
    rates = clock.rates(n)
    await ws.close(0.1)
    return rates


async def _recv_aiohttp(url: str, n: int) -> tuple[float, float]:
    clock = _Clock()
    timeout = aiohttp.ClientWSTimeout(ws_close=0.1)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, max_msg_size=0, timeout=timeout) as ws,
    ):
        await ws.send_str(_SUBSCRIBE)
        await ws.receive()  # the ack
        clock.start()
        for _ in range(n):
            await ws.receive()
        return clock.rates(n)


def _clients() -> None:
    """The receive-only rows: each client against a fresh raw feed (2nd process)."""
    print("WebSocket clients, receive only: raw feed (2nd process, 1 symbol) -> client, dropped")
    clients: list[tuple[str, Callable[[str, int], Awaitable[tuple[float, float]]]]] = [
        ("websockets (baseline: ingest's client before)", _recv_websockets),
        ("ingest.wsclient (picows listener, batches)", _recv_wsclient),
        ("picows.websockets (websockets-compatible API)",
         functools.partial(_recv_websockets, compat=True)),
        ("aiohttp", _recv_aiohttp),
    ]  # fmt: skip
    base = 0.0
    for what, recv in clients:
        ctx = multiprocessing.get_context("spawn")
        rx, tx = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_serve_raw, args=(1, CLIENT_FRAMES + 10_000, tx))
        proc.start()
        try:
            if not rx.poll(300):
                raise RuntimeError("the raw feed did not start")
            url, _ = rx.recv()
            rate, cpu = uvloop.run(recv(url, CLIENT_FRAMES))
        finally:
            proc.terminate()
            proc.join(10)
        base = base or rate
        _row(f"  {what} ({rate / base:.2f}x)", rate, "frames/s")
        _row("    its process CPU", cpu, "frames/CPU-s")


def _client_vs_websockets(namespace: str) -> None:
    """Raw feed → ingest → Redis, with ingest's client and with websockets swapped in."""

    async def run(baseline: bool, ns: str) -> tuple[float, float]:
        keys = Keys(16, f"{namespace}{ns}:")
        if not baseline:
            return await _websocket_raw(1, MANY_WS_TICKS, keys, REDIS_URL)
        async with _websockets_client():
            return await _websocket_raw(1, MANY_WS_TICKS, keys, REDIS_URL)

    print("websocket raw feed (2nd process, 1 symbol) -> ingest -> Redis, by client")
    ws_rate, ws_cpu = uvloop.run(run(True, "cw"))
    rate, cpu = uvloop.run(run(False, "cp"))
    _row("  websockets as ingest's client (baseline)", ws_rate, "ticks/s")
    _row("    ingest process CPU", ws_cpu, "ticks/CPU-s")
    _row(f"  ingest.wsclient (picows) ({rate / ws_rate:.2f}x)", rate, "ticks/s")
    _row(f"    ingest process CPU ({cpu / ws_cpu:.2f}x)", cpu, "ticks/CPU-s")


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


def _many_symbols(namespace: str, frames: list[str]) -> None:
    """The 1,000-interleaved-symbols rows, each after its few-symbols baseline (same run)."""
    many, _, _ = _interleaved_frames(len(frames), MANY)

    async def batch_path(fs: list[str], ns: str) -> float:
        r = service_redis(REDIS_URL)
        try:
            return await _parse_and_write(fs, Keys(16, namespace + ns), r, size=128, cpu=True)
        finally:
            await r.aclose()

    print(f"{MANY:,} interleaved symbols (trades given to symbols at random, ids consecutive)")
    base = uvloop.run(batch_path(frames, "b2:"))
    _row("  batch path, 2 symbols (baseline; 128 frames a call)", base, "ticks/CPU-s")
    rate = uvloop.run(batch_path(many, "bm:"))
    _row(f"  batch path, {MANY:,} symbols ({rate / base:.2f} of baseline)", rate, "ticks/CPU-s")
    rates = {}
    for symbols in (1, MANY):
        keys = Keys(16, f"{namespace}raw{symbols}:")
        rates[symbols] = uvloop.run(_websocket_raw(symbols, MANY_WS_TICKS, keys, REDIS_URL))
    (ws_base, cpu_base), (ws_rate, cpu_rate) = rates[1], rates[MANY]
    what = "websocket raw feed -> ingest"
    _row(f"  {what}, 1 symbol (baseline)", ws_base, "ticks/s")
    _row("    ingest process CPU", cpu_base, "ticks/CPU-s")
    _row(f"  {what}, {MANY:,} symbols", ws_rate, "ticks/s")
    _row(f"    ingest process CPU ({cpu_rate / cpu_base:.2f} of baseline)", cpu_rate, "ticks/CPU-s")


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
            r = service_redis(REDIS_URL)
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
        _clients()
        _client_vs_websockets(namespace)
        _many_symbols(namespace, frames)
        ws_n = 20_000 if QUICK else 100_000
        for read_batch, what in ((1, "frame by frame"), (128, "reader batches <= 128")):
            print(f"websocket: simulate (2nd process) -> ingest -> Redis, {what}")
            rates = {}
            for client in ("websockets", "picows"):
                keys = Keys(16, f"{namespace}ws{read_batch}{client}:")
                rates[client] = uvloop.run(
                    _websocket(ws_n, keys, REDIS_URL, read_batch, baseline=client == "websockets")
                )
            (base, base_cpu), (rate, cpu) = rates["websockets"], rates["picows"]
            _row("  websockets as ingest's client (baseline)", base, "ticks/s")
            _row("    ingest process CPU", base_cpu, "ticks/CPU-s")
            _row(f"  ingest.wsclient (picows) ({rate / base:.2f}x)", rate, "ticks/s")
            _row(f"    ingest process CPU ({cpu / base_cpu:.2f}x)", cpu, "ticks/CPU-s")
    finally:
        uvloop.run(_cleanup(namespace))
        gc.unfreeze()  # leave the process as it was for the other stages' benchmarks
        gc.set_threshold(*threshold)


if __name__ == "__main__":
    main()
