"""Signals stage benchmark: scoring and worker throughput, end-to-end latency under a burst.

Figures (each next to a baseline measured in the same run):

1. ``score_event`` alone (pure Python) — events/s and µs/event, on ``event_mix`` and on
   ``event_series`` (each event carrying its series' earlier events as ``recent``, as the
   detector writes them); baseline: the plain per-event scoring code from before issue 17
   (``tests/signals_reference.py``, same results) on the same events.
2. One ``SignalsService`` draining a backlog of pattern events (in-process, burst mode) —
   events/s and the worker process's CPU per event (``time.process_time``: Redis's own work
   is not in it), written as the detectors write them (columnar entries of ~63 events) and,
   in the same run, one entry per event (v1); baseline: XREADGROUP + XACK of the same backlog
   (one entry per event) with no work at all.
3. 1,000 symbols closing a bar at once (1,000 pattern events XADDed in one pipeline), a worker
   and the WebSocket server running as their own processes: p50/p99 latency from the burst's
   XADD to each signal seen on the ``signals`` stream (XREAD BLOCK) and at a WebSocket client;
   baseline: the same burst XADDed to a plain stream and read back with XREADGROUP.
2b. The same on entries as a detector engine writes them (``detector_entries``: 500 symbols'
   random walks, 1s/5s/1m bars, real features and ``recent`` lists): scoring alone from the
   columns (the worker's path) next to decoding each event's record and scoring it, and the
   per-event reference code, each from a cold memo; and one worker draining them; baseline:
   XREADGROUP + XACK of the same entries. Both under the worker's GC tuning (as in 4.).
4. The worker of 2. (columnar entries) under the worker's garbage-collector tuning
   (``tune_gc(GC_GEN0)``, as ``run_service`` applies it): CPU per event and the part of it
   spent inside collections (``gc.callbacks``); baseline in the same run: Python's default
   thresholds. Rounds alternate which goes first; best of each.

``BENCH_QUICK=1`` runs fewer and smaller rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
import uvloop
from websockets.asyncio.client import connect

from common.columns import decode_events, encode_events
from common.contracts import PatternEvent
from common.logging import configure_logging
from common.names import GROUP_SIGNALS, Keys
from common.settings import CommonSettings
from signals.columnar import score_entry
from signals.model import Model
from signals.scoring import _PRIORS, score_event
from signals.service import SignalsService
from signals.settings import SignalsSettings
from signals.versions import ModelHistory
from tests import signals_reference
from tests.bench.gc_support import SETTINGS, GcClock, collector, rounds_of
from tests.ports import free_port
from tests.signals_factory import (
    MINUTE,
    T0,
    detector_entries,
    event_mix,
    event_series,
    strong_event,
)

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUICK = os.environ.get("BENCH_QUICK") == "1"
SYMBOLS = 1000
TOKEN = "bench-token"


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: Sequence[float]) -> str:
    return f"p50 {pct(values, 0.5) * 1000:7.2f} ms  p99 {pct(values, 0.99) * 1000:7.2f} ms"


def bench_scoring(events: Sequence[PatternEvent], label: str) -> None:
    model = Model()
    took: dict[str, float] = {}
    for code, score in (("now", score_event), ("reference", signals_reference.score_event)):
        started = time.perf_counter()
        n = sum(len(score(e, model)) for e in events)
        took[code] = time.perf_counter() - started
    now, ref = (len(events) / took[k] for k in ("now", "reference"))
    print(
        f"score_event ({label}) {now:10,.0f} events/s  ({1e6 / now:.1f} µs/event, "
        f"{n} signals)   baseline per-event reference code {ref:10,.0f}/s ({1e6 / ref:.1f} µs)"
    )


async def write(
    r: aioredis.Redis, stream: str, events: Sequence[PatternEvent], *, columnar: bool = True
) -> None:
    """XADD ``events`` as the detectors do: columnar entries of one partition's write (~63
    events at a boundary of 1,000 symbols over 16 partitions), or one entry per event (v1)."""
    if columnar:
        entries = [f for i in range(0, len(events), 63) for f in encode_events(events[i : i + 63])]
    else:
        entries = [e.encode() for e in events]
    async with r.pipeline(transaction=False) as pipe:
        for fields in entries:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        await pipe.execute()


async def bench_worker(
    r: aioredis.Redis, keys: Keys, events: Sequence[PatternEvent], *, columnar: bool = True
) -> None:
    # Baseline: consume and ack the same backlog doing nothing.
    raw = keys.patterns + ":raw"
    await write(r, raw, events, columnar=False)
    base = await consume_only(r, raw)
    await write(r, keys.patterns, events, columnar=columnar)
    took, cpu = await drain(keys)
    n = await r.xlen(keys.signals)
    what = "columnar entries" if columnar else "one entry/event"
    print(
        f"signals worker ({what:16}) {len(events) / took:10,.0f} events/s  "
        f"({n / took:,.0f} signals/s, CPU {cpu / len(events) * 1e6:.1f} µs/event)   "
        f"baseline XREADGROUP+XACK {len(events) / base:10,.0f}/s"
    )


async def consume_only(r: aioredis.Redis, stream: str) -> float:
    """Seconds to XREADGROUP + XACK all of ``stream`` (100 entries a read), doing nothing."""
    await r.xgroup_create(stream, "g", id="0")
    started = time.perf_counter()
    while True:
        reply: Any = await r.xreadgroup("g", "c", {stream: ">"}, count=100)
        if not reply:
            break
        await r.xack(stream, "g", *[i for i, _ in reply[0][1]])
    return time.perf_counter() - started


async def drain(keys: Keys) -> tuple[float, float]:
    """Wall and CPU seconds of one ``SignalsService`` draining ``keys.patterns`` (burst)."""
    common = CommonSettings(
        redis_url=REDIS_URL, namespace=keys.namespace, metrics_port=0, trim_interval_s=0
    )
    # Its own client from the settings (common.redis), as the service runs in production.
    worker = SignalsService(SignalsSettings(common=common, model=Model()), burst=True)
    await worker.start()
    started, cpu = time.perf_counter(), time.process_time()
    await worker.run()
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    await worker.stop()
    return took, cpu


async def bench_worker_gc(r: aioredis.Redis, keys: Keys, events: Sequence[PatternEvent]) -> None:
    """The worker's CPU per event (columnar entries): Python's default GC vs its tuning."""
    rounds = 4 if QUICK else 6  # short runs (~0.1 s each when quick): the best of several
    cpu_us: dict[int | None, float] = {}
    gc_us: dict[int | None, float] = {}
    for k, (_, gen0) in enumerate(rounds_of(rounds)):
        run_keys = Keys(partitions=1, namespace=f"{keys.namespace}gc{k}:")  # new signal ids
        await write(r, run_keys.patterns, events)
        with collector(gen0), GcClock() as clock:
            _, cpu = await drain(run_keys)
        cpu_us[gen0] = min(cpu_us.get(gen0, math.inf), cpu / len(events) * 1e6)
        gc_us[gen0] = min(gc_us.get(gen0, math.inf), clock.seconds / len(events) * 1e6)
    (base_label, base), (tuned_label, tuned) = SETTINGS
    print(
        f"signals worker CPU per event (columnar, best of {rounds}): {tuned_label} "
        f"{cpu_us[tuned]:.1f} µs, {gc_us[tuned]:.1f} in the collector "
        f"({cpu_us[tuned] / cpu_us[base]:.2f} of baseline)   baseline {base_label} "
        f"{cpu_us[base]:.1f} µs, {gc_us[base]:.1f} in the collector"
    )


def bench_entry_scoring(entries: Sequence[dict[bytes, bytes]]) -> None:
    """Scoring entries as the detectors write them: from their columns (the worker's path) vs
    decoding each event's record first and scoring it (the path before), and the plain
    per-event reference code on the records; each from a cold memo, best of 3."""
    history = ModelHistory.seed(Model())
    model = Model()
    n = sum(int(f[b"n"]) for f in entries)

    def columns() -> int:
        return sum(
            len(r)
            for f in entries
            for r in score_entry(history, f, emit_warming=False, emitted_at="t").results
            if isinstance(r, list)
        )

    def records() -> int:
        return sum(len(history.score(e, emitted_at="t")) for f in entries for e in decode_events(f))

    def reference() -> int:
        return sum(
            len(signals_reference.score_event(e, model)) for f in entries for e in decode_events(f)
        )

    best: dict[str, float] = {}
    signals: dict[str, int] = {}
    for _ in range(3):
        for name, run in (("columns", columns), ("records", records), ("reference", reference)):
            _PRIORS.clear()
            started = time.process_time()
            signals[name] = run()
            took = time.process_time() - started
            best[name] = min(best.get(name, math.inf), took)
    if len(set(signals.values())) != 1:
        raise RuntimeError(f"the paths disagree: {signals}")
    us = {k: v / n * 1e6 for k, v in best.items()}
    print(
        f"scoring detector-written entries ({len(entries)} entries, {n} events, "
        f"{signals['columns']} signals), CPU per event: from the columns {us['columns']:.1f} µs "
        f"({us['columns'] / us['records']:.2f} of records, {us['columns'] / us['reference']:.2f} "
        f"of the reference)   baseline decoded records {us['records']:.1f} µs, the per-event "
        f"reference code on them {us['reference']:.1f} µs"
    )


async def bench_worker_entries(
    r: aioredis.Redis, keys: Keys, entries: Sequence[dict[bytes, bytes]]
) -> None:
    """One worker draining entries as the detectors write them (decode, score, append,
    publish, ack): its CPU per event."""
    raw = keys.patterns + ":raw"
    for stream in (raw, keys.patterns):
        async with r.pipeline(transaction=False) as pipe:
            for fields in entries:
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            await pipe.execute()
    n = sum(int(f[b"n"]) for f in entries)
    base = await consume_only(r, raw)
    took, cpu = await drain(keys)
    print(
        f"signals worker on detector-written entries ({n} events, "
        f"{await r.xlen(keys.signals)} signals): {n / took:10,.0f} events/s, "
        f"CPU {cpu / n * 1e6:.1f} µs/event   baseline XREADGROUP+XACK of the same entries "
        f"{n / base:10,.0f} events/s"
    )


async def bench_latency(r: aioredis.Redis, keys: Keys, rounds: int) -> None:
    port = free_port()
    env = os.environ | {
        "REDIS_URL": REDIS_URL,
        "NAMESPACE": keys.namespace,
        "METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "BLOCK_MS": "1000",
        "SIGNALS_WS_TOKENS": TOKEN,
        "SIGNALS_WS_PORT": str(port),
        "SIGNALS_WS_HOST": "127.0.0.1",
    }
    await r.delete(keys.patterns, keys.signals, keys.signal_ids)
    await r.xgroup_create(keys.patterns, GROUP_SIGNALS, id="$", mkstream=True)
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-m", mod, env=env)
        for mod in ("signals", "signals.ws")
    ]
    try:
        await _measure(r, keys, port, rounds)
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
            await asyncio.wait_for(p.wait(), 15)


async def _connect_ws(port: int) -> Any:
    for _ in range(100):
        try:
            return await connect(
                f"ws://127.0.0.1:{port}/?token={TOKEN}", compression=None, max_size=None
            )
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the WebSocket server did not start")


async def _measure(r: aioredis.Redis, keys: Keys, port: int, rounds: int) -> None:
    ws = await _connect_ws(port)
    await ws.send('{"type": "subscribe"}')
    await ws.recv()
    raw = keys.patterns + ":baseline"
    await r.xgroup_create(raw, "g", id="$", mkstream=True)
    reader = aioredis.Redis.from_url(REDIS_URL)
    stream_lat: list[float] = []
    ws_lat: list[float] = []
    base_lat: list[float] = []
    last = "0-0"  # the signals stream was emptied before the worker started
    for k in range(rounds):
        events = [
            strong_event(f"S{i:04d}", T0 + k * MINUTE, 1 if i % 2 else -1) for i in range(SYMBOLS)
        ]
        # Baseline: the same burst through a plain stream and XREADGROUP.
        t0 = time.perf_counter()
        await write(r, raw, events, columnar=False)
        got = 0
        while got < SYMBOLS:
            reply: Any = await reader.xreadgroup("g", "c", {raw: ">"}, count=1000, block=4000)
            now = time.perf_counter()
            for _, items in reply or []:
                base_lat += [now - t0] * len(items)
                got += len(items)
        # The real path: patterns -> worker -> signals -> (stream reader, WebSocket client).
        t0 = time.perf_counter()
        await write(r, keys.patterns, events)
        ws_task = asyncio.create_task(_ws_receive(ws, SYMBOLS, t0))
        got = 0
        while got < SYMBOLS:
            reply = await reader.xread({keys.signals: last}, count=1000, block=4000)
            now = time.perf_counter()
            if not reply:
                raise RuntimeError("no signal within 4 s")
            for _, items in reply:
                stream_lat += [now - t0] * len(items)
                got += len(items)
                last = items[-1][0].decode()
        ws_lat += await asyncio.wait_for(ws_task, 30)
    await ws.close()
    await reader.aclose()
    print(f"burst of {SYMBOLS} bars, {rounds} rounds:")
    print(f"  pattern -> signal on stream  {ms(stream_lat)}")
    print(f"  pattern -> WebSocket client  {ms(ws_lat)}")
    print(f"  baseline XADD -> XREADGROUP  {ms(base_lat)}")


async def _ws_receive(ws: Any, n: int, t0: float) -> list[float]:
    out: list[float] = []
    while len(out) < n:
        frame = orjson.loads(await ws.recv())
        if frame.get("type") == "signal":
            out.append(time.perf_counter() - t0)
    return out


async def run() -> None:
    keys = Keys(partitions=1, namespace=f"bench{uuid.uuid4().hex[:8]}:")
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        n = 5_000 if QUICK else 50_000
        bench_scoring(event_mix(n), "pure, mix   ")
        # 20 bars of 1,000 symbols even when quick: the series reach their steady state.
        bench_scoring(event_series(4 * n, symbols=SYMBOLS), "with recent")
        # What the detectors write at a boundary of 500 symbols (1s, 5s, 1m bars): real
        # features, warm-up, ``recent`` lists of up to 5 entries.
        entries = detector_entries(500, 90 if QUICK else 180, seed=7)
        with collector(SETTINGS[-1][1]):  # the worker's GC tuning (``run_service``)
            bench_entry_scoring(entries)
            await bench_worker_entries(
                r, Keys(partitions=1, namespace=f"{keys.namespace}det:"), entries
            )
        mix = event_mix(5_000 if QUICK else 30_000, symbols=SYMBOLS)
        await bench_worker(r, keys, mix)
        # The same events as v1 entries (what detectors wrote before issue 17), in a namespace
        # of their own: the signals' ids are new there.
        v1_keys = Keys(partitions=1, namespace=f"{keys.namespace}v1:")
        await bench_worker(r, v1_keys, mix, columnar=False)
        await bench_worker_gc(r, keys, mix)
        await bench_latency(r, keys, 3 if QUICK else 20)
    finally:
        async for key in r.scan_iter(match=f"*{keys.namespace}*", count=1000):
            await r.delete(key)
        await r.aclose()


def main() -> None:
    configure_logging(level="WARNING", fmt="console")
    uvloop.run(run())


if __name__ == "__main__":
    main()
