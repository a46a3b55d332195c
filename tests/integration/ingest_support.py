"""Test doubles shared by the ingest integration tests."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from common.contracts import Tick, TickBatch
from common.names import Keys
from common.settings import CommonSettings
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from ingest.settings import IngestSettings
from ingest.simulator.server import Simulator
from tests.conftest import REDIS_URL
from tests.polling import until


class FaultyRedis:
    """Wraps a client. While ``down`` is set its pipelines fail without running (an outage);
    the next ``lost_replies`` pipelines run but their replies are lost (the connection died
    after Redis applied the commands, so the writer cannot know they landed)."""

    def __init__(self, inner: aioredis.Redis, *, down: bool = False, lost_replies: int = 0) -> None:
        self.inner = inner
        self.down = down
        self.lost_replies = lost_replies
        self.failures = 0

    def pipeline(self, transaction: bool = True) -> Any:
        pipe = self.inner.pipeline(transaction=transaction)
        run = pipe.execute
        applied = not self.down
        if self.down or self.lost_replies > 0:
            self.failures += 1
            self.lost_replies -= applied

            async def fail(raise_on_error: bool = True) -> list[Any]:
                if applied:
                    await run(raise_on_error)
                raise RedisConnectionError("simulated outage" if not applied else "reply lost")

            pipe.execute = fail  # type: ignore[method-assign]
        return pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def sim_settings(keys: Keys, sim: Simulator, **overrides: Any) -> IngestSettings:
    """Ingest settings for every feed of ``sim`` (all its symbols), fast reconnects."""
    fields: dict[str, Any] = {
        "common": CommonSettings(partitions=keys.partitions, namespace=keys.namespace),
        "exchanges": tuple((name, tuple(feed.symbols)) for name, feed in sim.feeds.items()),
        "urls": tuple((name, sim.url(name)) for name in sim.feeds),
        "flush_ms": 2.0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    return IngestSettings(**(fields | overrides))


async def run_until_delivered(
    sim: Simulator,
    settings: IngestSettings,
    keys: Keys,
    metrics: IngestMetrics,
    written: int | None = None,
) -> IngestService:
    """Run ingest until the simulator delivered every trade and ``written`` ticks (None:
    every trade it serves) are written."""
    total = sum(f.total() for f in sim.feeds.values()) if written is None else written
    service = IngestService(
        settings, aioredis.Redis.from_url(REDIS_URL), metrics=metrics, keys=keys
    )
    async with service:
        run = asyncio.create_task(service.run())
        await asyncio.wait_for(sim.wait_finished(), 50)
        # bounded: the last frames are still in flight when the simulator is "finished"
        await until(lambda: service.writer.written >= total, "every trade written")
        service.request_stop()
        await asyncio.wait_for(run, 10)
    return service


async def stored_ticks(redis: aioredis.Redis, keys: Keys) -> list[Tick]:
    """Every tick in the namespace's ``ticks:{p}`` streams, stream by stream."""
    return [
        t
        for stream in keys.all_ticks()
        for _, fields in await redis.xrange(stream)
        for t in TickBatch.decode(fields)
    ]
