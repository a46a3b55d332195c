"""The WebSocket server and the sink follow the live configuration without a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.protocol import State

from common.names import Keys
from signals.liveconfig import apply_assignments, propose, seed_document
from signals.model import Model
from sink.service import SinkService
from tests.integration.test_signals_ws import (
    auth,
    close_code,
    start_server,
    stop,
    subscribe,
    url,
)
from tests.integration.test_sink_writer import run_sink
from tests.polling import until
from tests.sink_support import Db, make_bar, make_db, sink_settings

pytestmark = pytest.mark.redis
MINUTE = 60_000


async def test_a_lower_connection_limit_applies_to_new_connections(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    srv = await start_server(redis_client, namespace, max_connections=5)
    try:
        async with connect(url(srv), additional_headers=auth()) as first:
            await subscribe(first)
            doc = apply_assignments(seed_document({}, Model()), ["ws.max_connections=1"])
            await propose(redis_client, keys, doc, who="t", expected_version=0)
            await until(
                lambda: srv.limits["max_connections"] == 1,
                "the server took the limit",
                timeout_s=10.0,
                interval_s=0.05,
            )
            async with connect(url(srv), additional_headers=auth()) as second:
                assert await close_code(second) == 1013  # the new limit
            # The connection that was there before the change stays.
            assert first.state is State.OPEN
    finally:
        await stop(srv)


@pytest.fixture
async def db() -> AsyncIterator[Db]:
    async for d in make_db("postgres"):
        yield d


@pytest.mark.postgres
async def test_retention_changed_live_applies_on_the_next_pass(
    db: Db, redis_client: aioredis.Redis, keys: Keys
) -> None:
    now_ms = int(time.time() * 1000) // MINUTE * MINUTE
    recent = make_bar(1)._replace(open_time=now_ms)
    for bar in [make_bar(0), recent]:  # one from 2024, one from now
        await redis_client.xadd(keys.bars, bar.encode())  # type: ignore[arg-type]
    await run_sink(db, redis_client, keys)
    worker = SinkService(sink_settings(db.url, keys, retention_s={"bars": 0}), redis=redis_client)
    async with worker:
        await worker.apply_retention()
        assert await db.count("bars") == (2, 2)  # retention off: nothing dropped
        doc = apply_assignments(seed_document({}, Model()), ["sink.retention_s.bars=30d"])
        await propose(redis_client, keys, doc, who="t", expected_version=0)
        task = asyncio.create_task(worker.run())
        try:
            await until(
                lambda: worker.retention_s["bars"] == 30 * 86_400,
                "sink took retention",
                timeout_s=10.0,
                interval_s=0.05,
            )
            await worker.apply_retention()  # the next pass
        finally:
            worker.request_stop()
            await task
    assert await db.count("bars") == (1, 1)
