"""A sink SIGKILLed between its commit and its ack: the redelivery stores nothing twice.

The first run is ``tests.integration.sink_killed_before_ack`` (the sink with the crash
injected by the test tree), the second the real ``python -m sink``."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from common.names import GROUP_SINK, Keys
from tests.sink_support import Db, log_tail, make_bar, make_ticks, sink_env

pytestmark = pytest.mark.redis


async def pending(redis: aioredis.Redis, stream: str) -> int:
    return int((await redis.xpending(stream, GROUP_SINK))["pending"])


REPO = Path(__file__).resolve().parents[2]


async def run_sink_process(env: dict[str, str], log: Path, module: str = "sink") -> int:
    """``python -m <module> --burst`` to completion (bounded); its log goes to ``log``."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, "--burst", env=env, stdout=out, stderr=out, cwd=REPO
        )
        try:
            return await asyncio.wait_for(proc.wait(), 90)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            pytest.fail(f"the sink did not finish; log:\n{log_tail(log)}")


async def test_sigkill_between_commit_and_ack_stores_nothing_twice(
    db: Db, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    for start in range(0, 400, 100):
        await redis_client.xadd(keys.ticks(2), make_ticks(start, 100).encode())  # type: ignore[arg-type]
    for i in range(10):
        await redis_client.xadd(keys.bars, make_bar(i).encode())  # type: ignore[arg-type]
    log = tmp_path / "sink.log"

    # 1st run: commits its first batch, then dies by SIGKILL before acking anything.
    env = sink_env(db.url, keys, SINK_BATCH_ROWS="100000")
    code = await run_sink_process(env, log, "tests.integration.sink_killed_before_ack")
    assert code == -signal.SIGKILL, log_tail(log)
    ticks_after_kill, _ = await db.count("ticks")
    bars_after_kill, _ = await db.count("bars")
    assert ticks_after_kill + bars_after_kill > 0  # the commit happened...
    unacked = [await pending(redis_client, s) for s in (keys.ticks(2), keys.bars)]
    assert unacked == [4, 10]  # ...and nothing was acked: every entry is redelivered

    # 2nd run: claims the dead consumer's entries, writes them again, acks.
    code = await run_sink_process(sink_env(db.url, keys), log)
    assert code == 0, log_tail(log)
    assert await db.count("ticks") == (400, 400)
    assert await db.count("bars") == (10, 10)
    for s in (keys.ticks(2), keys.bars):
        assert await pending(redis_client, s) == 0
        assert await redis_client.xlen(keys.dlq(s)) == 0
