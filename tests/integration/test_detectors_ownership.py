"""Leases, fencing, fenced checkpoints and rebalancing on a real Redis."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.columns import decode_bars
from common.contracts import Tick, TickBatch
from common.names import GROUP_DETECTORS, Keys, partition_of
from common.settings import CommonSettings
from detectors.metrics import DetectorMetrics
from detectors.ownership import Ownership
from detectors.partition import EngineConfig
from detectors.service import ACQUIRE_RETRY_S, DetectorService
from detectors.settings import DetectorSettings
from detectors.timeframes import parse_timeframes
from tests.conftest import REDIS_URL
from tests.integration.detectors_support import count_bars
from tests.polling import until

pytestmark = pytest.mark.redis


async def test_lease_epoch_fences_a_stale_owner(redis_client: aioredis.Redis, keys: Keys) -> None:
    a = Ownership(redis_client, keys, "a", lease_ttl_ms=300)
    b = Ownership(redis_client, keys, "b", lease_ttl_ms=300)
    first = await a.acquire(0)
    assert first == 1
    assert await b.acquire(0) == 0
    assert await a.renew(0, first)
    assert not await b.renew(0, first)
    assert await a.write_checkpoint(0, first, b"state-a", [])

    async def expired() -> bool:
        return await redis_client.get(keys.lease(0)) is None

    await until(expired, "the lease to expire", timeout_s=20.0, interval_s=0.05)
    second = await b.acquire(0)
    assert second == 2
    # The paused old owner can no longer renew, release, checkpoint or ack.
    assert not await a.renew(0, first)
    assert not await a.release(0, first)
    assert not await a.write_checkpoint(0, first, b"stale", [])
    assert await redis_client.get(keys.checkpoint(0)) == b"state-a"
    assert await b.load_checkpoint(0) == b"state-a"
    assert await b.release(0, second)
    assert await redis_client.get(keys.lease(0)) is None


async def test_checkpoint_acks_what_it_covers(redis_client: aioredis.Redis, keys: Keys) -> None:
    own = Ownership(redis_client, keys, "a", lease_ttl_ms=5000)
    epoch = await own.acquire(2)
    stream = keys.ticks(2)
    await redis_client.xgroup_create(stream, GROUP_DETECTORS, id="0", mkstream=True)
    ids: list[str] = []
    for i in range(1200):
        entry_id: Any = await redis_client.xadd(stream, {b"x": b"%d" % i})
        ids.append(entry_id.decode())
    await redis_client.xreadgroup(GROUP_DETECTORS, "p2", {stream: ">"}, count=2000)
    assert await own.write_checkpoint(2, epoch, b"s", ids[:1100])
    pending: Any = await redis_client.xpending(stream, GROUP_DETECTORS)
    assert pending["pending"] == 100


async def test_membership_heartbeat(redis_client: aioredis.Redis, keys: Keys) -> None:
    a = Ownership(redis_client, keys, "a", lease_ttl_ms=300)
    b = Ownership(redis_client, keys, "b", lease_ttl_ms=300)
    assert await a.heartbeat() == ["a"]
    assert sorted(await b.heartbeat()) == ["a", "b"]
    assert await b.heartbeat(alive=False) == ["a"]
    await asyncio.sleep(0.35)
    assert await b.heartbeat() == ["b"]  # a stopped heartbeating: dropped after the TTL


def _settings(namespace: str, member: str) -> DetectorSettings:
    common = CommonSettings(
        redis_url=REDIS_URL, partitions=4, namespace=namespace, block_ms=50, metrics_port=0
    )
    engine = EngineConfig(
        timeframes=parse_timeframes("1m"), allowed_lateness_ms=0, patterns=("CDLDOJI",)
    )
    return DetectorSettings(
        common=common,
        engine=engine,
        idle_close_ms=0,
        lease_ttl_ms=1000,
        heartbeat_ms=100,
        checkpoint_interval_ms=0,
        detector_id=member,
    )


async def test_two_services_split_partitions_and_dead_letter_bad_entries(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    sym = "BTC-USDT"
    p = partition_of("binance", sym, 4)
    t0 = 1_723_161_600_000_000_000
    ticks = [
        Tick("binance", sym, "BTCUSDT", str(i), 100.0 + i, 1.0, "buy", t0 + i * 20 * 10**9, 0)
        for i in range(1, 10)
    ]
    await redis_client.xadd(keys.ticks(p), dict(TickBatch.from_ticks(ticks[:4]).encode().items()))
    await redis_client.xadd(keys.ticks(p), {b"v": b"1", b"n": b"zz"})
    await redis_client.xadd(keys.ticks(p), dict(TickBatch.from_ticks(ticks[4:]).encode().items()))
    registry = CollectorRegistry()
    metrics = DetectorMetrics(registry)
    services = [
        DetectorService(_settings(namespace, m), redis=redis_client, metrics=metrics)
        for m in ("m1", "m2")
    ]
    async with asyncio.TaskGroup() as tg:
        for s in services:
            await s.start()
            tg.create_task(s.run())

        async def balanced() -> bool:
            return sorted(len(s.runners) for s in services) == [2, 2]

        await until(balanced, "two runners on each service", timeout_s=20.0, interval_s=0.05)

        async def drained() -> bool:
            pending: Any = await redis_client.xpending(keys.ticks(p), GROUP_DETECTORS)
            bars = await count_bars(redis_client, keys.bars)
            return bool(pending["pending"] == 0 and bars == 3)

        await until(drained, "the partition drained into 3 bars", timeout_s=20.0, interval_s=0.05)
        # Everything is checkpointed and acked, and three partitions never saw a tick: a few
        # heartbeats later no partition may look behind on its checkpoint (an idle partition
        # writes none, which must not read as a stale one).
        await asyncio.sleep(0.5)
        assert registry.get_sample_value("alphapulse_detectors_checkpoint_age_seconds") == 0.0
        for s in services:
            s.request_stop()
    for s in services:
        await s.stop()
    dead: Any = await redis_client.xrange(keys.dlq(keys.ticks(p)))
    assert len(dead) == 1 and dead[0][1][b"reason"] == b"tick_batch"
    assert await redis_client.zcard(keys.detector_members) == 0
    sample = registry.get_sample_value
    assert sample("alphapulse_detectors_ticks_total") == 9
    assert sample("alphapulse_detectors_bars_closed_total", {"timeframe": "1m"}) == 3
    assert sample("alphapulse_detectors_bad_entries_total", {"reason": "tick_batch"}) == 1
    assert sample("alphapulse_detectors_detection_latency_seconds_count") == 3


async def test_idle_partition_closes_bars_by_extrapolated_event_time(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    settings = _settings(namespace, "solo")
    engine = EngineConfig(timeframes=parse_timeframes("1s"), allowed_lateness_ms=100)
    settings = DetectorSettings(
        common=settings.common,
        engine=engine,
        idle_close_ms=150,
        lease_ttl_ms=1000,
        heartbeat_ms=100,
        checkpoint_interval_ms=0,
        detector_id="solo",
    )
    sym = "ETH-USDT"
    p = partition_of("binance", sym, 4)
    t0 = 1_723_161_600_000_000_000
    tick = Tick("binance", sym, "ETHUSDT", "1", 2500.0, 1.0, "sell", t0 + 200_000_000, 0)
    await redis_client.xadd(keys.ticks(p), dict(TickBatch.from_ticks([tick]).encode().items()))
    service = DetectorService(settings, redis=redis_client)
    await service.start()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(service.run())

        async def closed() -> bool:
            return await count_bars(redis_client, keys.bars) == 1

        await until(closed, "the bar closed", timeout_s=20.0, interval_s=0.05)
        service.request_stop()
    await service.stop()
    entries: Any = await redis_client.xrange(keys.bars)
    assert decode_bars(entries[0][1])[0].id == f"binance:{sym}:1s:{t0 // 1_000_000}"


async def test_a_partition_still_held_elsewhere_is_retried_before_the_next_heartbeat(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    """The table gives "solo" every partition, but one lease is still held by its previous
    owner (handing over): the round reports it unsettled and the service retries every
    ACQUIRE_RETRY_S, so it takes the partition right after the release, not a heartbeat
    (here a minute) later."""
    previous = Ownership(redis_client, keys, "previous", lease_ttl_ms=60_000)
    epoch = await previous.acquire(2)
    settings = replace(_settings(namespace, "solo"), heartbeat_ms=60_000)
    service = DetectorService(settings, redis=redis_client)
    await service.start()
    async with asyncio.TaskGroup() as tg:
        assert await service._rebalance(tg) is False
        assert sorted(service.runners) == [0, 1, 3]
        service.readiness.reset()
        run = tg.create_task(service.run())

        async def first_round_done() -> bool:
            return service.readiness.snapshot()["membership"]

        # run() found partition 2 held too
        await until(first_round_done, "the first membership round", timeout_s=20.0, interval_s=0.05)
        assert await previous.release(2, epoch)

        async def taken() -> bool:
            return 2 in service.runners

        # a heartbeat-paced retry would need 60 s
        await until(taken, "partition 2 taken", timeout_s=20.0, interval_s=0.05)
        assert await service._rebalance(tg) is True
        service.request_stop()
        await run
    await service.stop()
    assert ACQUIRE_RETRY_S < 1.0
