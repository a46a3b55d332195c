"""A worker outlives its Redis: readiness drops while the server is gone, and once a new
server answers on the same address the worker recreates its group and consumes again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from common.settings import CommonSettings
from common.stream_worker import Entry, StreamWorker
from tests.integration.runtime_support import free_port, redis_server
from tests.polling import until

pytestmark = [pytest.mark.redis, pytest.mark.slow]


async def test_worker_survives_a_redis_restart(tmp_path: Path) -> None:
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1"]
    ping = {"host": "127.0.0.1", "port": port}
    settings = CommonSettings(
        redis_url=f"redis://127.0.0.1:{port}/0", metrics_port=0, block_ms=50,
        redis_socket_timeout=2, redis_connect_timeout=1,
    )  # fmt: skip
    stream = settings.keys().bars
    seen: list[bytes] = []

    async def handler(batch: list[Entry]) -> None:
        seen.extend(e.fields[b"n"] for e in batch)

    worker = StreamWorker(settings, group="g", streams=[stream], handler=handler)
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        with redis_server(args, tmp_path, ping):
            await worker.start()
            task = asyncio.create_task(worker.run())
            await client.xadd(stream, {"n": "1"})
            await until(lambda: seen == [b"1"], "first entry handled", interval_s=0.02)
            assert worker.readiness.ready
        await until(
            lambda: not worker.readiness.ready, "readiness drops without Redis", interval_s=0.02
        )
        with redis_server(args, tmp_path, ping):  # a fresh, empty server (no persistence)
            await client.xadd(stream, {"n": "2"})
            await until(
                lambda: seen == [b"1", b"2"], "entry handled after the restart", interval_s=0.02
            )
            # Readiness comes back when that step returns, an ack after the handler ran.
            await until(
                lambda: worker.readiness.ready, "ready again after the restart", interval_s=0.02
            )
            worker.request_stop()
            await asyncio.wait_for(task, 30)
            assert (await client.xpending(stream, "g"))["pending"] == 0
    finally:
        await worker.stop()
        await client.aclose()
