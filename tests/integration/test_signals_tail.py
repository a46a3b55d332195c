"""``alphapulse tail signals`` against real Redis, as a subprocess (table and --json)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
import redis.asyncio as aioredis

from common.names import Keys
from signals.append import SignalAppender
from signals.model import Model
from signals.scoring import score_event
from signals.tail import table_header, table_row
from tests.conftest import REDIS_URL
from tests.signals_factory import event_mix, strong_event

pytestmark = pytest.mark.redis


async def start_tail(namespace: str, *args: str, block_ms: int = 100) -> asyncio.subprocess.Process:
    """``alphapulse tail signals ARGS`` as a subprocess on ``namespace``, stdout piped."""
    env = os.environ | {"REDIS_URL": REDIS_URL, "NAMESPACE": namespace, "BLOCK_MS": str(block_ms)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "common.cli", "tail", "signals", *args,
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def run_tail(namespace: str, *args: str) -> list[str]:
    proc = await start_tail(namespace, *args)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    return out.decode().splitlines()


async def test_tail_json_prints_the_stream_entries_exactly(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    model = Model()
    signals = [s.stamped() for e in event_mix(100) for s in score_event(e, model)]
    await SignalAppender(redis_client, keys).append(signals)
    lines = await run_tail(namespace, "--from", "beginning", "--count", "10", "--json")
    entries = await redis_client.xrange(keys.signals, count=10)
    assert lines == [f[b"d"].decode() for _, f in entries]


async def test_tail_table_follows_new_signals_after_a_cursor(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    appender = SignalAppender(redis_client, keys)
    model = Model()
    a, b, c = (
        score_event(strong_event(sym, 1_723_161_240_000, d), model)[0].stamped()
        for sym, d in (("AAA", 1), ("BBB", -1), ("CCC", 1))
    )
    (cursor,) = await appender.append([a])
    assert cursor is not None
    tail = asyncio.create_task(run_tail(namespace, "--from", cursor.decode(), "--count", "2"))
    await asyncio.sleep(0.5)  # usually the tail is blocked in XREAD by now; either way works
    await appender.append([b])
    await appender.append([c])
    assert await tail == [table_header(), table_row(b), table_row(c)]
    assert table_row(b).split()[1:6] == ["binance", "BBB", "1m", "short", f"{b.score:.3f}"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_tail_ends_with_exit_0_on_sigint_and_sigterm(
    sig: signal.Signals, namespace: str
) -> None:
    """``make run`` stops its tail with SIGINT (Ctrl-C) and expects a clean exit."""
    proc = await start_tail(namespace, block_ms=5000)
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 30)).startswith(b"open_time")
    await asyncio.sleep(0.3)  # blocked in XREAD by now, usually
    proc.send_signal(sig)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
