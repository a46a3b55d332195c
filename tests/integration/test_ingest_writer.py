"""The tick writer against a real Redis: partitioning, batching, order, backpressure."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.contracts import Tick, TickBatch
from common.names import Keys, partition_of
from ingest.metrics import IngestMetrics
from ingest.writer import TickWriter
from tests.integration.ingest_support import FaultyRedis

pytestmark = pytest.mark.redis


def _ticks(symbol: str, n: int, start: int = 0) -> list[Tick]:
    return [
        Tick("binance", symbol, symbol.replace("-", ""), str(i), 100.0 + i, 1.0, "buy", i, i)
        for i in range(start, start + n)
    ]


async def _read_all(redis: aioredis.Redis, keys: Keys) -> dict[int, list[TickBatch]]:
    out: dict[int, list[TickBatch]] = {}
    for p in range(keys.partitions):
        entries = await redis.xrange(keys.ticks(p))
        out[p] = [TickBatch.decode(fields) for _, fields in entries]
    return out


async def test_ticks_land_in_their_partition_in_order(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    metrics = IngestMetrics(CollectorRegistry())
    symbols = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT"]
    async with TickWriter(redis_client, keys, metrics, batch_size=7, max_pending=50) as w:
        for start in range(0, 40, 3):
            for s in symbols:
                await w.put(_ticks(s, 3, start))
    batches = await _read_all(redis_client, keys)
    seen: dict[str, list[str]] = {s: [] for s in symbols}
    for p, entries in batches.items():
        for b in entries:
            assert 1 <= len(b) <= 7
            for t in b:
                assert partition_of(t.exchange, t.symbol, keys.partitions) == p
                seen[t.symbol].append(t.trade_id)
    for s in symbols:
        assert seen[s] == [str(i) for i in range(42)]
    assert metrics.value("alphapulse_ingest_written_ticks_total") == 5 * 42
    assert w.pending == 0


async def test_latency_bound_flushes_a_partial_batch(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    metrics = IngestMetrics(CollectorRegistry())
    async with TickWriter(redis_client, keys, metrics, batch_size=1000, flush_interval=0.001) as w:
        await w.put(_ticks("BTC-USDT", 3))
        await w.drain()  # returns only because the latency bound fired, not a full batch
        p = partition_of("binance", "BTC-USDT", keys.partitions)
        assert await redis_client.xlen(keys.ticks(p)) == 1


async def test_a_tick_that_closes_bars_is_written_without_waiting_for_the_latency_bound(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    metrics = IngestMetrics(CollectorRegistry())
    second = 1_000_000_000
    p = partition_of("binance", "BTC-USDT", keys.partitions)
    async with TickWriter(
        redis_client, keys, metrics, batch_size=1000, flush_interval=3600, boundary_flush_ms=1000
    ) as w:
        first, closing = _ticks("BTC-USDT", 2)
        await w.put([first._replace(ts=5 * second)])
        await w.put([closing._replace(ts=6 * second)])  # the partition's first tick of second 6
        # Only the boundary flush can write it within the minute: the latency bound is an
        # hour away.
        read = await redis_client.xread({keys.ticks(p): "0-0"}, block=60_000)
        assert read, "nothing written: the boundary tick waited for the latency bound"
        ((_, [(_, fields)]),) = read
        assert [t.ts for t in TickBatch.decode(fields)] == [5 * second, 6 * second]


async def test_outage_blocks_producers_and_loses_nothing(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    metrics = IngestMetrics(CollectorRegistry())
    flaky = FaultyRedis(redis_client, down=True)
    writer = TickWriter(flaky, keys, metrics, batch_size=10, max_pending=30, retry_max_delay=0.01)
    async with writer:
        producer = asyncio.create_task(_produce(writer, 100))
        for _ in range(2000):  # bounded wait for the outage to fill the buffer
            if flaky.failures >= 3 and writer.pending >= 30:
                break
            await asyncio.sleep(0.005)
        assert not producer.done()  # held back: the buffer is at its bound
        assert writer.pending == 30
        assert metrics.value("alphapulse_ingest_writer_pending_ticks") == 30
        flaky.down = False
        await producer
    p = partition_of("binance", "BTC-USDT", keys.partitions)
    ids = [
        t.trade_id for _, f in await redis_client.xrange(keys.ticks(p)) for t in TickBatch.decode(f)
    ]
    assert ids == [str(i) for i in range(100)]
    assert metrics.value("alphapulse_ingest_backpressure_waits_total") >= 1
    assert metrics.value("alphapulse_ingest_writer_errors_total") >= 3


async def _produce(writer: TickWriter, n: int) -> None:
    for i in range(n):
        await writer.put(_ticks("BTC-USDT", 1, i))


async def test_retry_after_an_ambiguous_failure_does_not_append_twice(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    metrics = IngestMetrics(CollectorRegistry())
    lossy = FaultyRedis(redis_client, lost_replies=3)
    symbols = ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    async with TickWriter(lossy, keys, metrics, batch_size=5, retry_max_delay=0.01) as w:
        for start in range(0, 30, 10):
            for s in symbols:
                await w.put(_ticks(s, 10, start))
            await w.drain()
    assert lossy.lost_replies == 0 and metrics.value("alphapulse_ingest_writer_errors_total") == 3
    seen: dict[str, list[str]] = {s: [] for s in symbols}
    for entries in (await _read_all(redis_client, keys)).values():
        for b in entries:
            for t in b:
                seen[t.symbol].append(t.trade_id)
    assert seen == {s: [str(i) for i in range(30)] for s in symbols}
    assert w.written == 90
