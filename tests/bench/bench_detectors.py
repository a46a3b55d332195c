"""Detector throughput and checkpoint cost (one process, one core).

1. Tick aggregation: encoded ``ticks:{p}`` entries (as ingest writes them) decoded and applied
   to one partition engine with the default timeframes and all 61 patterns, bar closes,
   indicators and pattern evaluation included. Baseline in the same run: decoding alone.
2. The same through Redis: one in-process detector drains a backlog in ``ticks:{p}``
   (read, decode, aggregate, write bars/patterns, checkpoint + ack); baseline: the time to
   XADD that backlog. Then a backlog of 3-tick entries (what ingest writes between
   boundaries in the paced e2e run), applied as the runner does, consecutive entries merged
   into one engine step (``MERGE_TICKS``); baseline in the same run: one entry a step.
3. Checkpoint of 1,000 symbols x 6 timeframes: serialize, restore, size; baseline: a Redis
   SET + GET of the same bytes (the I/O a checkpoint costs anyway), when Redis is reachable.
4. Boundary load (issue 17): 16 partition engines x 63 symbols (~1,000), timeframes 1s,5s,1m,
   3 trades per symbol per second, so every second closes a bar of every symbol at once (and
   every 5 s / 1 min those of the longer timeframes). The engines are held as the e2e run's
   two detector processes hold them, 8 to a row space, and each process's 8 are stepped as
   one (``step_engines``, as its runners' steps of one event-loop turn are). Per closed bar:
   the engines' step (aggregation, indicators, pattern kernels, outcome tracking, the output),
   then the write as the runner does it (encode + pipelined XADD to a scratch Redis namespace;
   of it, the ``outcomes`` entry's encode is shown too). Baselines in the same run: that step
   alone; each engine stepped on its own (before joint steps); and the one-entry-per-record
   (v1) write of the same output (its outcomes encoded from records, as before the engine
   emitted columns).
5. The boundary load's CPU per closed bar (``time.process_time``: step, encode and XADD of
   each output at once, as the runner writes) under the worker's garbage-collector tuning
   (``tune_gc(GC_GEN0)``, as ``run_service`` applies it), and the part of it spent inside
   collections (``gc.callbacks``); baseline in the same run: Python's default thresholds.
   Rounds alternate which goes first; best of each.
6. The boundary load's bar aggregation alone (screen, aggregate, close and fold): the ticks
   of all 16 partitions applied as one step a second to one aggregator of 1,008 series;
   baseline in the same run: 16 steps of 63 series, as the partitions apply them now. The
   difference is the aggregator's fixed cost per step that one step over a detector's
   partitions would save.

``BENCH_QUICK=1`` shortens both.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any
from unittest import mock

import numpy as np
import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.columns import encode_outcome_parts
from common.contracts import Tick, TickBatch, encode_outcomes
from common.logging import configure_logging
from common.names import Keys
from common.settings import CommonSettings
from detectors import checkpoint, runner
from detectors.bars import ClosedBars
from detectors.metrics import DetectorMetrics
from detectors.partition import EngineConfig, PartitionEngine
from detectors.patterns import PatternDetector
from detectors.plausibility import apply_plausible
from detectors.runner import MERGE_TICKS
from detectors.service import DetectorService
from detectors.settings import DetectorSettings
from detectors.timeframes import parse_timeframes
from ingest.offline.ticks import synthetic_ticks
from tests.bench import service_redis
from tests.bench.gc_support import SETTINGS, GcClock, collector, rounds_of

QUICK = os.environ.get("BENCH_QUICK") == "1"
try:  # the boundary benches also run on code from before joint steps (A/B runs)
    from detectors.partition import row_space, step_engines
except ImportError:
    row_space = step_engines = None  # type: ignore[assignment]
BATCH = 200  # ticks per stream entry
SMALL_ENTRY = 3  # ticks per entry between boundaries in the paced e2e run


def _entries(
    n_symbols: int, rate: float, count: int, seed: int, batch: int = BATCH
) -> list[dict[bytes, bytes]]:
    ticks = list(synthetic_ticks("binance", n_symbols, rate, seed=seed, count=count))
    return [TickBatch.from_ticks(ticks[i : i + batch]).encode() for i in range(0, count, batch)]


def bench_throughput(rate: float) -> None:
    """``rate`` trades/s of exchange time: 2,000 = busy, 50 = a bar close every ~20 ticks."""
    count = 100_000 if QUICK else 400_000
    symbols = 60  # ~1,000 symbols over 16 partitions
    entries = _entries(symbols, rate, count, seed=1)
    start = time.perf_counter()
    for fields in entries:
        TickBatch.decode(fields)
    decode_s = time.perf_counter() - start
    engine = PartitionEngine(EngineConfig())
    bars = events = 0
    start = time.perf_counter()
    for fields in entries:
        out = engine.apply(TickBatch.decode(fields))
        bars += len(out.bars)
        events += len(out.events)
    apply_s = time.perf_counter() - start
    print(
        f"tick aggregation incl. decode, {symbols} symbols at {rate:g} trades/s, "
        "6 timeframes, 61 patterns: "
        f"{count / apply_s:,.0f} ticks/s ({bars} bars, {events} pattern events closed) "
        f"| baseline decode only: {count / decode_s:,.0f} ticks/s"
    )


def _engine_with(n_symbols: int) -> PartitionEngine:
    engine = PartitionEngine(EngineConfig())
    per_symbol = 20 if QUICK else 60
    # 1 trade per symbol every 6 s over the run: several closed 1m bars, all 6 bars open.
    rate = n_symbols / 6.0
    for fields in _entries(n_symbols, rate, n_symbols * per_symbol, seed=2):
        engine.apply(TickBatch.decode(fields))
    return engine


def bench_checkpoint() -> None:
    n = 1_000
    engine = _engine_with(n)
    repeats = 3 if QUICK else 10
    start = time.perf_counter()
    for _ in range(repeats):
        blob = checkpoint.dumps(engine)
    dump_ms = (time.perf_counter() - start) / repeats * 1000
    start = time.perf_counter()
    for _ in range(repeats):
        checkpoint.loads(blob, engine.config, engine.patterns)
    load_ms = (time.perf_counter() - start) / repeats * 1000
    line = (
        f"checkpoint {n} symbols x 6 timeframes: {len(blob) / 1e6:.2f} MB, "
        f"write {dump_ms:.1f} ms, restore {load_ms:.1f} ms"
    )
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        client = redis.Redis.from_url(url)
        key = f"bench:detectors:{os.getpid()}"
        start = time.perf_counter()
        for _ in range(repeats):
            client.set(key, blob)
            client.get(key)
        io_ms = (time.perf_counter() - start) / repeats * 1000
        client.delete(key)
        client.close()
        line += f" | baseline Redis SET+GET of the same bytes: {io_ms:.1f} ms"
    except redis.RedisError as e:
        line += f" | baseline Redis SET+GET: unavailable ({e!r})"
    print(line)


async def _drain_through_redis(url: str, count: int, batch: int = BATCH) -> tuple[float, float]:
    """One in-process detector drains a backlog of ``count`` ticks in one partition, in
    entries of ``batch`` ticks.

    Returns (detector seconds, seconds to XADD the backlog = the ingest-side baseline).
    """
    namespace = f"bench{os.getpid()}:"
    keys = Keys(partitions=1, namespace=namespace)
    client = service_redis(url)
    try:
        entries = _entries(60, 2_000.0, count, seed=3, batch=batch)
        start = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(keys.ticks(0), dict(fields.items()))
        await pipe.execute()
        write_s = time.perf_counter() - start
        settings = DetectorSettings(
            common=CommonSettings(
                redis_url=url, partitions=1, namespace=namespace, batch_count=50, block_ms=100
            ),
            engine=EngineConfig(),
            idle_close_ms=0,
            detector_id="bench",
        )
        service = DetectorService(
            settings, redis=client, metrics=DetectorMetrics(CollectorRegistry())
        )
        await service.start()
        tail: Any = await client.xrevrange(keys.ticks(0), count=1)
        last = tail[0][0].decode()
        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(service.run())
            while True:
                runner = service.runners.get(0)
                if runner is not None and runner.last_applied == last:
                    break
                await asyncio.sleep(0.005)
            took = time.perf_counter() - start
            service.request_stop()
        await service.stop()
        return took, write_s
    finally:
        async for key in client.scan_iter(match=f"{namespace}*", count=1000):
            await client.delete(key)
        await client.aclose()


def bench_through_redis() -> None:
    count = 50_000 if QUICK else 300_000
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    configure_logging(level="WARNING")
    try:
        took, write_s = asyncio.run(_drain_through_redis(url, count))
    except (redis.RedisError, OSError) as e:
        print(f"detector through Redis: unavailable ({e!r})")
        return
    print(
        f"one detector draining ticks:{{p}} (XREADGROUP, decode, bars, patterns, XADD, "
        f"checkpoint+XACK): {count / took:,.0f} ticks/s | baseline XADD of the same entries "
        f"(pipelined): {count / write_s:,.0f} ticks/s"
    )
    # A backlog of the small entries ingest writes between boundaries (~3 ticks per
    # partition and 5 ms flush at 10k ticks/s over 16 partitions), applied as the runner
    # does (consecutive entries as one batch, ``MERGE_TICKS``) and one entry per engine
    # step (the baseline, as before the runner merged them); rounds alternate.
    small = count // 5
    best: dict[int, float] = {}
    for _ in range(2):
        for limit in (MERGE_TICKS, 1):
            with mock.patch.object(runner, "MERGE_TICKS", limit):
                took, _ = asyncio.run(_drain_through_redis(url, small, batch=SMALL_ENTRY))
            best[limit] = min(best.get(limit, math.inf), took)
    print(
        f"one detector draining a backlog of {SMALL_ENTRY}-tick entries, merged up to "
        f"{MERGE_TICKS:,} ticks a step: {small / best[MERGE_TICKS]:,.0f} ticks/s | baseline one "
        f"entry a step: {small / best[1]:,.0f} ticks/s ({best[1] / best[MERGE_TICKS]:.1f}x)"
    )


BOUNDARY_PARTITIONS = 16
BOUNDARY_SYMBOLS = 63  # per partition: ~1,000 symbols in all
BOUNDARY_PROCESSES = 2  # the e2e run's detectors, each holding 8 of the 16 partitions


def _boundary_batches(p: int, second: int, rng: np.random.Generator) -> TickBatch:
    """Partition ``p``'s ticks of one second: 3 per symbol, the first closing its bars."""
    base = 1_723_161_600 + second  # a minute boundary: 1m bars close every 60 s
    walk = 100.0 + np.cumsum(rng.normal(0, 0.05, (BOUNDARY_SYMBOLS, 3)), axis=1)
    qty = rng.uniform(0.1, 2.0, (BOUNDARY_SYMBOLS, 3))
    ticks = [
        Tick(
            "binance",
            f"P{p:02d}S{i:02d}-USDT",
            f"P{p:02d}S{i:02d}USDT",
            str(second * 10 + k),
            float(walk[i, k]),
            float(qty[i, k]),
            "buy" if (i + k) % 2 else "sell",
            (base * 1000 + 100 + 300 * k) * 1_000_000,
            (base * 1000 + 101 + 300 * k) * 1_000_000,
        )
        for k in range(3)
        for i in range(BOUNDARY_SYMBOLS)
    ]
    return TickBatch.from_ticks(ticks)


def _boundary_seconds(first: int, last: int, rng: np.random.Generator) -> list[list[TickBatch]]:
    """Seconds ``first`` .. ``last - 1`` of the boundary load: each a batch per partition."""
    return [
        [_boundary_batches(p, second, rng) for p in range(BOUNDARY_PARTITIONS)]
        for second in range(first, last)
    ]


def _v1_entries(out: Any) -> tuple[list[dict[bytes, bytes]], list[dict[bytes, bytes]]]:
    return [e.encode() for e in out.events], [b.encode() for b in out.bars]


def _v2_entries(out: Any) -> tuple[list[dict[bytes, bytes]], list[dict[bytes, bytes]]]:
    return out.event_columns().encode(), out.bar_columns().encode()


def _outcome_entries(out: Any, *, records: bool = False) -> list[dict[bytes, bytes]]:
    """The ``outcomes`` entry of a write, from the output's columns as the runner encodes it
    (``records``: from ``BarOutcome`` records, as before; also for code without columns)."""
    if records or not hasattr(out, "outcome_parts"):
        return [encode_outcomes(out.outcomes)] if out.outcomes else []
    return [encode_outcome_parts(out.outcome_parts)] if out.outcome_parts else []


def _detector_engines(config: EngineConfig) -> list[PartitionEngine]:
    """The boundary load's 16 engines as the e2e run's detectors hold them: each process's 8
    in one row space (on code before the row space, each engine on its own)."""
    if row_space is None:
        return [PartitionEngine(config) for _ in range(BOUNDARY_PARTITIONS)]
    per = BOUNDARY_PARTITIONS // BOUNDARY_PROCESSES
    patterns = PatternDetector(config.patterns)
    spaces = [row_space(config, patterns) for _ in range(BOUNDARY_PROCESSES)]
    return [PartitionEngine(config, space=spaces[p // per]) for p in range(BOUNDARY_PARTITIONS)]


def _step_as_detectors(engines: list[PartitionEngine], row: list[TickBatch]) -> list[Any]:
    """One second of the boundary load: each detector process's partitions stepped as one,
    as its runners' steps of one event-loop turn are (``detectors.gather``)."""
    if step_engines is None:
        return [engine.apply(batch) for engine, batch in zip(engines, row, strict=True)]
    per = BOUNDARY_PARTITIONS // BOUNDARY_PROCESSES
    return [
        out
        for a in range(0, BOUNDARY_PARTITIONS, per)
        for out in step_engines(
            [(engines[p], row[p], None) for p in range(a, a + per)]  # type: ignore[misc]
        )
    ]


async def _boundary(url: str) -> None:
    config = EngineConfig(timeframes=parse_timeframes("1s,5s,1m"))
    engines = _detector_engines(config)
    alone = [PartitionEngine(config) for _ in range(BOUNDARY_PARTITIONS)]
    rng = np.random.default_rng(7)
    warm, seconds = 60, 30 if QUICK else 120
    for row in _boundary_seconds(0, warm, rng):
        _step_as_detectors(engines, row)
        for engine, batch in zip(alone, row, strict=True):
            engine.apply(batch)
    columnar = hasattr(engines[0].apply(TickBatch.from_ticks([])), "bar_columns")
    client = service_redis(url)
    stream = f"bench:boundary:{os.getpid()}"
    batches = _boundary_seconds(warm, warm + seconds, rng)
    started = time.perf_counter()
    for row in batches:
        for engine, batch in zip(alone, row, strict=True):
            engine.apply(batch)
    step_alone = time.perf_counter() - started
    started = time.perf_counter()
    outs = [out for row in batches for out in _step_as_detectors(engines, row)]
    step = time.perf_counter() - started
    bars = sum(out.n_bars if columnar else len(out.bars) for out in outs)
    events = sum(len(out.event_columns()) if columnar else len(out.events) for out in outs)
    outcomes, encode = 0, 0.0  # bar outcomes written, seconds encoding their entries
    try:
        write = time.perf_counter()
        for out in outs:
            ev, br = _v2_entries(out) if columnar else _v1_entries(out)
            began = time.perf_counter()
            oc = _outcome_entries(out)
            encode += time.perf_counter() - began
            outcomes += sum(int(fields[b"n"]) for fields in oc)
            await _xadd(client, stream, ev + br + oc)
        write = time.perf_counter() - write
        write_v1 = time.perf_counter()
        for out in outs:
            ev, br = _v1_entries(out)
            await _xadd(client, stream, ev + br + _outcome_entries(out, records=True))
        write_v1 = time.perf_counter() - write_v1
    finally:
        await client.delete(stream)
        await client.aclose()
    us = 1e6 / bars
    print(
        f"boundary load, {BOUNDARY_PARTITIONS} partitions x {BOUNDARY_SYMBOLS} symbols, "
        f"1s,5s,1m, {seconds} s ({bars} bars, {events} pattern events, {outcomes} bar "
        f"outcomes): {(step + write) * us:.1f} us per closed bar incl. "
        f"{'columnar' if columnar else 'one-entry-per-record'} encode + XADD "
        f"({write * us:.1f}, of which the outcomes entry's encode {encode * us:.2f}), each "
        f"detector's {BOUNDARY_PARTITIONS // BOUNDARY_PROCESSES} partitions stepped as one "
        f"| baseline engine step alone {step * us:.1f} us (each partition on its own "
        f"{step_alone * us:.1f} us, {step / step_alone:.2f}x), "
        f"step + one-entry-per-record write (v1) {(step + write_v1) * us:.1f} us "
        f"({write_v1 * us:.1f})"
    )


async def _xadd(client: aioredis.Redis, stream: str, entries: list[dict[bytes, bytes]]) -> None:
    pipe = client.pipeline(transaction=False)
    for fields in entries:
        pipe.xadd(stream, dict(fields.items()), maxlen=1000, approximate=True)
    await pipe.execute()


def bench_boundary(run: Callable[[str], Coroutine[Any, Any, None]], what: str) -> None:
    """One of the boundary-load benches against ``REDIS_URL`` (a line saying so without it)."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        asyncio.run(run(url))
    except (redis.RedisError, OSError) as e:
        print(f"{what}: unavailable ({e!r})")


async def _boundary_cpu(
    client: aioredis.Redis, stream: str, seconds: int, clock: GcClock
) -> tuple[float, int]:
    """CPU seconds and bars closed of ``seconds`` of the boundary load after a minute's
    warm-up, each engine output encoded and XADDed at once as the runner writes it (not kept
    for later, as ``_boundary`` keeps them); ``clock`` times the collections meanwhile."""
    config = EngineConfig(timeframes=parse_timeframes("1s,5s,1m"))
    engines = _detector_engines(config)
    rng = np.random.default_rng(7)
    warm = 60
    for row in _boundary_seconds(0, warm, rng):
        _step_as_detectors(engines, row)
    columnar = hasattr(engines[0].apply(TickBatch.from_ticks([])), "bar_columns")
    batches = _boundary_seconds(warm, warm + seconds, rng)
    bars = 0
    with clock:
        cpu = time.process_time()
        for row in batches:
            for out in _step_as_detectors(engines, row):
                ev, br = _v2_entries(out) if columnar else _v1_entries(out)
                await _xadd(client, stream, ev + br + _outcome_entries(out))
                bars += out.n_bars if columnar else len(out.bars)
        cpu = time.process_time() - cpu
    return cpu, bars


async def _boundary_gc(url: str) -> None:
    seconds, rounds = (30, 1) if QUICK else (60, 4)
    client = service_redis(url)
    stream = f"bench:boundary-gc:{os.getpid()}"
    cpu_us: dict[int | None, float] = {}
    gc_us: dict[int | None, float] = {}
    try:
        for _, gen0 in rounds_of(rounds):
            clock = GcClock()
            with collector(gen0):  # before the engines exist, as in a worker
                cpu, bars = await _boundary_cpu(client, stream, seconds, clock)
            cpu_us[gen0] = min(cpu_us.get(gen0, math.inf), cpu * 1e6 / bars)
            gc_us[gen0] = min(gc_us.get(gen0, math.inf), clock.seconds * 1e6 / bars)
    finally:
        await client.delete(stream)
        await client.aclose()
    (base_label, base), (tuned_label, tuned) = SETTINGS
    print(
        f"boundary load, CPU per closed bar (step + encode + XADD as the runner writes, "
        f"{seconds} s, best of {rounds}): {tuned_label} {cpu_us[tuned]:.1f} us, "
        f"{gc_us[tuned]:.1f} in the collector ({cpu_us[tuned] / cpu_us[base]:.2f} of "
        f"baseline) | baseline {base_label} {cpu_us[base]:.1f} us, "
        f"{gc_us[base]:.1f} in the collector"
    )


def bench_aggregation_steps() -> None:
    """Item 6 of the module docstring: the same ticks as 1 step or 16 steps a second."""
    config = EngineConfig(timeframes=parse_timeframes("1s,5s,1m"))
    rng = np.random.default_rng(7)
    warm, seconds = 60, 30 if QUICK else 120
    seconds_of_ticks = _boundary_seconds(0, warm + seconds, rng)
    best: dict[int, float] = {}
    bars: dict[int, int] = {}
    for groups in (BOUNDARY_PARTITIONS, 1, BOUNDARY_PARTITIONS, 1):  # alternating, best of 2
        engines = [PartitionEngine(config) for _ in range(groups)]
        per = BOUNDARY_PARTITIONS // groups
        steps = [
            [TickBatch.concat(row[g * per : (g + 1) * per]) for g in range(groups)]
            for row in seconds_of_ticks
        ]
        for row in steps[:warm]:
            for engine, batch in zip(engines, row, strict=True):
                apply_plausible(engine.agg, batch, config.limits, ClosedBars())
        closed = [ClosedBars() for _ in range(groups)]
        started = time.perf_counter()
        for row in steps[warm:]:
            for engine, batch, out in zip(engines, row, closed, strict=True):
                apply_plausible(engine.agg, batch, config.limits, out)
        took = time.perf_counter() - started
        best[groups] = min(best.get(groups, math.inf), took)
        bars[groups] = sum(len(out) for out in closed)
    assert bars[1] == bars[BOUNDARY_PARTITIONS]
    one, many = best[1] / seconds * 1e3, best[BOUNDARY_PARTITIONS] / seconds * 1e3
    print(
        f"boundary load, bar aggregation alone ({bars[1]:,} bars in {seconds} s): one step a "
        f"second over {BOUNDARY_PARTITIONS * BOUNDARY_SYMBOLS:,} series {one:.2f} ms per second "
        f"({one / many:.2f}x) | baseline {BOUNDARY_PARTITIONS} steps of {BOUNDARY_SYMBOLS} "
        f"series, as the partitions apply them: {many:.2f} ms"
    )


def main() -> None:
    bench_boundary(_boundary, "boundary load")
    bench_aggregation_steps()
    # The boundary load's CPU per closed bar: Python's default GC vs the worker's tuning.
    bench_boundary(_boundary_gc, "boundary load GC")
    bench_throughput(2_000.0)
    bench_throughput(50.0)
    bench_through_redis()
    bench_checkpoint()


if __name__ == "__main__":
    main()
