"""Every exchange's protocol end to end: simulator (the adapter's server side) → ingest
(its client side: URL, subscribe, heartbeat, parse) → ``ticks:{p}``, trade for trade."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.contracts import TickBatch
from common.names import Keys
from common.settings import CommonSettings
from ingest.exchanges import EXCHANGES
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from ingest.settings import IngestSettings
from ingest.simfeed import Faults, Feed
from ingest.simulator import Simulator
from ingest.sources import synthetic_ticks
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_exchange_round_trip(exchange: str, redis_client: aioredis.Redis, keys: Keys) -> None:
    ticks = list(synthetic_ticks(exchange, 3, 1000.0, seed=21, count=400))
    feed = Feed.build(exchange, ticks)
    metrics = IngestMetrics(CollectorRegistry())
    # one cut per connection after 40 frames: every protocol also goes through a reconnect
    async with Simulator({exchange: feed}, speed=0, batch=7, overlap=10,
                         faults=Faults(drop_after_frames=40)) as sim:  # fmt: skip
        settings = IngestSettings(
            common=CommonSettings(partitions=keys.partitions, namespace=keys.namespace),
            exchanges=((exchange, tuple(feed.symbols)),),
            urls=((exchange, sim.url(exchange)),),
            backoff_base_s=0.01,
            backoff_max_s=0.05,
        )
        service = IngestService(
            settings, aioredis.Redis.from_url(REDIS_URL), metrics=metrics, keys=keys
        )
        async with service:
            run = asyncio.create_task(service.run())
            await asyncio.wait_for(sim.wait_finished(), 30)
            for _ in range(1000):
                if service.writer.written >= len(ticks):
                    break
                await asyncio.sleep(0.01)
            service.request_stop()
            await asyncio.wait_for(run, 10)
    stored = [
        t
        for stream in keys.all_ticks()
        for _, fields in await redis_client.xrange(stream)
        for t in TickBatch.decode(fields)
    ]
    for native, stream in feed.symbols.items():
        got = [t for t in stored if t.native_symbol == native]
        want = stream.ticks
        assert [(t.trade_id, t.price, t.qty, t.side, t.ts) for t in got] == [
            (t.trade_id, t.price, t.qty, t.side, t.ts) for t in want
        ], native
        assert {(t.exchange, t.symbol) for t in got} == {(exchange, want[0].symbol)}
    assert len(stored) == len(ticks)
    assert metrics.value("alphapulse_ingest_reconnects_total", exchange=exchange,
                         reason="dropped") >= 1  # fmt: skip
    assert (
        sum(
            metrics.value("alphapulse_ingest_bad_frames_total", exchange=exchange, reason=r)
            for r in ("invalid_json", "missing_field", "bad_type", "unknown_frame")
        )
        == 0
    )
