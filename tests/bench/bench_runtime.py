"""Runtime overhead: entries/s through ``StreamWorker`` (read + no-op handler + ack) on the
project's client (``redis_from_settings``, as the services run) next to a raw loop on redis-py's
stock client doing the same XREADGROUP COUNT 100 + XACK, on the same stream in the same run (two
consumer groups over one set of entries). Also pipelined XADD, for scale, and the client CPU per
command of pipelined XADDs and of a signals-sized EVALSHA on the project's client (commands
packed by hiredis) next to redis-py's stock asyncio client (packed in Python), and per round
trip of one awaited XADD (the project's connections send without a task per write)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid

import redis.asyncio as aioredis

from common.logging import configure_logging
from common.redis import redis_from_settings
from common.settings import CommonSettings
from common.stream_worker import Entry, StreamWorker

BATCH = 100
PIPELINE = 1000
ECHO_LUA = "return #ARGV"


async def _xadd(client: aioredis.Redis, stream: str, n: int) -> float:
    payload = {b"v": b"1", b"d": b"x" * 120}
    started = time.perf_counter()
    for base in range(0, n, 1000):
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(min(1000, n - base)):
                pipe.xadd(stream, payload)
            await pipe.execute()
    return n / (time.perf_counter() - started)


def _evalsha_args(stream: str) -> tuple[object, ...]:
    """Shaped like ``SignalAppender.append`` with 4 signals: 4 header arguments, then 4 per
    signal (id, open time, version, ~400 B of JSON), all but the header as bytes."""
    header: list[object] = [259_200_000, 0, 17, 1_700_000_000_000]
    per_signal = [b"binance:BTCUSDT:1m:1700000000000:hammer", b"1700000000000", b"1", b"j" * 400]
    return (stream, f"{stream}:ids", *header, *(per_signal * 4))


async def _cpu_per_command(client: aioredis.Redis, stream: str, n: int) -> tuple[float, float]:
    """Client CPU (process time) per pipelined XADD and per EVALSHA, in µs."""
    payload = {b"v": b"1", b"d": b"x" * 120}
    started = time.process_time()
    for base in range(0, n, PIPELINE):
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(min(PIPELINE, n - base)):
                pipe.xadd(stream, payload)
            await pipe.execute()
    xadd_us = (time.process_time() - started) / n * 1e6
    sha = await client.script_load(ECHO_LUA)
    args = _evalsha_args(stream)
    calls = n // 10
    started = time.process_time()
    for base in range(0, calls, 100):
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(min(100, calls - base)):
                pipe.evalsha(sha, 2, *args)
            await pipe.execute()
    return xadd_us, (time.process_time() - started) / calls * 1e6


async def _cpu_per_round_trip(client: aioredis.Redis, stream: str, n: int) -> float:
    """Client CPU (process time) per awaited XADD, one at a time, in µs."""
    payload = {b"v": b"1"}
    started = time.process_time()
    for _ in range(n):
        await client.xadd(stream, payload, maxlen=100, approximate=False)
    return (time.process_time() - started) / n * 1e6


def _pack_us(client: aioredis.Redis, args: tuple[object, ...], n: int) -> float:
    """µs to pack one command on a connection of ``client``'s pool (no I/O: packing alone)."""
    conn = client.connection_pool.make_connection()
    started = time.perf_counter()
    for _ in range(n):
        conn.pack_command(*args)
    return (time.perf_counter() - started) / n * 1e6


async def _raw(client: aioredis.Redis, stream: str, group: str, n: int) -> float:
    await client.xgroup_create(stream, group, id="0")
    done = 0
    started = time.perf_counter()
    while done < n:
        reply = await client.xreadgroup(group, "c", {stream: ">"}, count=BATCH, block=100)
        for _, items in reply:
            ids = [i for i, _ in items]
            await client.xack(stream, group, *ids)
            done += len(ids)
    return n / (time.perf_counter() - started)


async def _worker(
    client: aioredis.Redis, settings: CommonSettings, stream: str, group: str, n: int
) -> float:
    seen = 0
    finished = 0.0

    async def noop(batch: list[Entry]) -> None:
        nonlocal seen, finished
        seen += len(batch)
        finished = time.perf_counter()

    worker = StreamWorker(
        settings, group=group, streams=[stream], handler=noop, redis=client, burst=True
    )
    async with worker:
        started = time.perf_counter()
        await worker.run()
    assert seen == n, (seen, n)
    # Timed up to the end of the last batch's handler: its XACK (one round trip) and burst's
    # final empty BLOCK wait, fixed costs unrelated to throughput, are left out.
    return n / (finished - started)


async def _main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    n, rounds = (10_000, 3) if quick else (50_000, 5)
    settings = CommonSettings.from_env(
        {
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            "NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}:",
            "BATCH_COUNT": str(BATCH),
            "TRIM_INTERVAL_S": "0",
            "LOG_LEVEL": "WARNING",
        }
    )
    stream = settings.keys().bars
    client = aioredis.Redis.from_url(settings.redis_url)  # redis-py as it comes
    project = redis_from_settings(settings)
    assert isinstance(project, aioredis.Redis)
    adds, raws, workers = [], [], []
    stock_cpu: list[tuple[float, float]] = []
    project_cpu: list[tuple[float, float]] = []
    stock_trips: list[float] = []
    project_trips: list[float] = []
    try:
        # Rounds alternate which side goes first, so a noisy neighbour hurts both alike.
        for r in range(rounds):
            await client.delete(stream)
            adds.append(await _xadd(client, stream, n))
            if r % 2:
                workers.append(await _worker(project, settings, stream, "w", n))
                raws.append(await _raw(client, stream, "raw", n))
            else:
                raws.append(await _raw(client, stream, "raw", n))
                workers.append(await _worker(project, settings, stream, "w", n))
            sides = [(client, stock_cpu, stock_trips), (project, project_cpu, project_trips)]
            for c, into, trips in sides[:: -1 if r % 2 else 1]:
                await c.delete(stream)
                into.append(await _cpu_per_command(c, stream, n))
                trips.append(await _cpu_per_round_trip(c, stream, n // 5))
    finally:
        await client.delete(stream)
        await client.aclose()
        await project.aclose()
    add_rate, raw_rate, worker_rate = (statistics.median(x) for x in (adds, raws, workers))
    xadd_args = ("XADD", stream, "*", b"v", b"1", b"d", b"x" * 120)
    eval_args = ("EVALSHA", "0" * 40, 2, *_evalsha_args(stream))
    packing = [
        [min(_pack_us(c, a, n) for _ in range(rounds)) for c in (project, client)]
        for a in (xadd_args, eval_args)
    ]
    (stock_xadd, stock_eval), (ours_xadd, ours_eval) = (
        (statistics.median(x for x, _ in cpu), statistics.median(e for _, e in cpu))
        for cpu in (stock_cpu, project_cpu)
    )
    print(f"entries: {n} x {rounds} rounds (median), batch {BATCH}, 2 fields (~125 B)")
    print(f"pipelined XADD (1000/pipeline):              {add_rate:>10,.0f} entries/s")
    print(f"baseline raw XREADGROUP+XACK loop:           {raw_rate:>10,.0f} entries/s")
    print(
        f"StreamWorker read+no-op handle+ack:          {worker_rate:>10,.0f} entries/s"
        f"  ({worker_rate / raw_rate:.2f}x baseline)"
    )
    print(
        f"client CPU per pipelined XADD, project client: {ours_xadd:>6.2f} us"
        f"  redis-py stock: {stock_xadd:.2f} us  ({stock_xadd / ours_xadd:.2f}x)"
    )
    print(
        f"client CPU per EVALSHA (22 args, 4 signals):   {ours_eval:>6.2f} us"
        f"  redis-py stock: {stock_eval:.2f} us  ({stock_eval / ours_eval:.2f}x)"
    )
    ours_trip, stock_trip = statistics.median(project_trips), statistics.median(stock_trips)
    print(
        f"client CPU per round trip (one awaited XADD):  {ours_trip:>6.2f} us"
        f"  redis-py stock: {stock_trip:.2f} us  ({stock_trip / ours_trip:.2f}x)"
    )
    for what, (ours, stock) in zip(("XADD", "EVALSHA"), packing, strict=True):
        print(
            f"{f'packing alone, one {what}:':<47}{ours:>6.2f} us"
            f"  redis-py stock: {stock:.2f} us  ({stock / ours:.2f}x)"
        )


def main() -> None:
    configure_logging(level="WARNING")
    asyncio.run(_main())


if __name__ == "__main__":
    main()
