"""Every exchange's protocol end to end: simulator (the adapter's server side) → ingest
(its client side: URL, subscribe, heartbeat, parse) → ``ticks:{p}``, trade for trade."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.names import Keys
from ingest.metrics import IngestMetrics
from ingest.offline.ticks import synthetic_ticks
from ingest.simulator.market import Faults, Feed
from ingest.simulator.server import Simulator
from ingest.venues import EXCHANGES
from tests.integration.ingest_support import run_until_delivered, sim_settings, stored_ticks

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_exchange_round_trip(exchange: str, redis_client: aioredis.Redis, keys: Keys) -> None:
    ticks = list(synthetic_ticks(exchange, 3, 1000.0, seed=21, count=400))
    feed = Feed.build(exchange, ticks)
    metrics = IngestMetrics(CollectorRegistry())
    # one cut per connection after 40 frames: every protocol also goes through a reconnect
    async with Simulator({exchange: feed}, speed=0, batch=7, overlap=10,
                         faults=Faults(drop_after_frames=40)) as sim:  # fmt: skip
        await run_until_delivered(sim, sim_settings(keys, sim), keys, metrics)
    stored = await stored_ticks(redis_client, keys)
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
