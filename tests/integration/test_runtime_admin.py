"""``alphapulse streams`` / ``alphapulse dlq`` on real Redis, through the installed CLI."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from common.names import Keys
from common.settings import CommonSettings
from common.stream_worker import BatchResult, Entry, StreamWorker
from tests.integration.runtime_support import run_cli, worker_env

pytestmark = pytest.mark.redis


def _cli(namespace: str, *args: str) -> str:
    done = run_cli(worker_env(namespace), *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_status_show_and_replay_dead_letters(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    good = (await redis_client.xadd(keys.bars, {"ok": "1"})).decode()
    bad = (await redis_client.xadd(keys.bars, {"bad": b"\x00\x01"})).decode()
    handled: list[str] = []

    async def handler(batch: list[Entry]) -> BatchResult:
        result = BatchResult()
        for e in batch:
            if b"bad" in e.fields:
                result.fail(e, ValueError("not today"))
            else:
                handled.append(e.id)
        return result

    settings = CommonSettings(namespace=namespace, max_deliveries=1, metrics_port=0, block_ms=20)
    async with StreamWorker(
        settings, group="g", streams=[keys.bars], handler=handler, redis=redis_client, burst=True
    ) as worker:
        await worker.run()
    assert handled == [good]

    out = _cli(namespace, "streams", "bars")
    assert f"{keys.bars}\tlength=2\tdlq=1\tsafe_minid=" in out
    assert "g(lag=0,pending=0)" in out
    out = _cli(namespace, "dlq", "show", "bars")
    assert f"id={bad}\treason=max_deliveries\tdeliveries=1\terror=ValueError: not today" in out

    assert "replayed 1 dead letters" in _cli(namespace, "dlq", "replay", "bars")
    assert await redis_client.xlen(keys.dlq(keys.bars)) == 0
    last = await redis_client.xrevrange(keys.bars, count=1)
    assert last[0][1] == {b"bad": b"\x00\x01"}  # the original bytes, as a new entry
