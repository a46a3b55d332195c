"""``alphapulse status`` on real Redis: lengths, lag, pending, dead letters, owners, wait-idle."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
import redis.asyncio as aioredis

from common.names import Keys
from common.status import collect_status, empty_namespace_hint, namespaces_with_data, wait_idle
from tests.integration.runtime_support import ROOT, worker_env

pytestmark = pytest.mark.redis


def _cli(namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "common.cli", "status", *args],
        env=worker_env(namespace, PARTITIONS=str(4)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _busy_pipeline(r: aioredis.Redis, keys: Keys) -> list[bytes]:
    """ticks:{1} with 3 entries, group ``detectors`` read 2 (acked 1); one dead letter; leases."""
    ids = [await r.xadd(keys.ticks(1), {"n": str(i)}) for i in range(3)]
    await r.xgroup_create(keys.ticks(1), "detectors", id="0")
    await r.xreadgroup("detectors", "c1", {keys.ticks(1): ">"}, count=2)
    await r.xack(keys.ticks(1), "detectors", ids[0])
    await r.xadd(keys.dlq(keys.ticks(1)), {"reason": "bad"})
    await r.set(keys.lease(0), "det-a")
    await r.set(keys.lease(1), "det-a")
    await r.set(keys.lease(3), "det-b")
    return ids


async def test_status_reports_lengths_lag_pending_dead_letters_and_owners(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    await _busy_pipeline(redis_client, keys)
    status = await collect_status(redis_client, keys)
    by_name = {s.stream: s for s in status.streams}
    ticks1 = by_name[keys.ticks(1)]
    assert (ticks1.length, ticks1.dead_letters) == (3, 1)
    ((group),) = ticks1.groups
    assert (group.name, group.lag, group.pending) == ("detectors", 1, 1)
    assert by_name[keys.bars].length == 0 and by_name[keys.bars].groups == ()
    assert status.owners == {0: "det-a", 1: "det-a", 2: None, 3: "det-b"}
    assert not status.idle

    done = _cli(namespace, "--json")
    assert done.returncode == 0, done.stderr
    doc = orjson.loads(done.stdout)
    assert doc["idle"] is False
    assert doc["owners"] == {"0": "det-a", "1": "det-a", "2": None, "3": "det-b"}
    row = next(s for s in doc["streams"] if s["stream"] == keys.ticks(1))
    assert row == {
        "stream": keys.ticks(1),
        "length": 3,
        "dead_letters": 1,
        "groups": [{"group": "detectors", "lag": 1, "pending": 1}],
    }
    text = _cli(namespace).stdout
    assert "ticks:{1}\tlength=3\tdlq=1\tdetectors(lag=1,pending=1)" in text
    assert "owner det-a\tpartitions=0,1" in text and "unowned\tpartitions=2" in text


async def test_wait_idle_times_out_while_busy_and_returns_once_all_is_acked(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    ids = await _busy_pipeline(redis_client, keys)
    busy = _cli(namespace, "--wait-idle", "--timeout", "0.5")
    assert busy.returncode == 1 and "not idle" in busy.stderr

    # Read but unacked is not idle either: lag 0, pending 2.
    await redis_client.xreadgroup("detectors", "c1", {keys.ticks(1): ">"})
    ok, status = await wait_idle(redis_client, keys, timeout_s=0.5, poll_s=0.05)
    assert not ok and not status.idle

    await redis_client.xack(keys.ticks(1), "detectors", *ids[1:])
    await redis_client.xgroup_create(keys.signals, "sink", id="$", mkstream=True)
    done = _cli(namespace, "--wait-idle", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("idle: every consumer group has read and")


async def test_unknown_lag_counts_as_caught_up_at_the_last_id(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    ids = [await redis_client.xadd(keys.bars, {"n": str(i)}) for i in range(3)]
    await redis_client.xgroup_create(keys.bars, "sink", id="0")
    await redis_client.xdel(keys.bars, ids[1])  # Redis can no longer count the lag
    await redis_client.xreadgroup("sink", "c", {keys.bars: ">"}, count=1)
    status = await collect_status(redis_client, keys)
    (group,) = next(s for s in status.streams if s.stream == keys.bars).groups
    assert group.lag is None and not status.idle
    await redis_client.xreadgroup("sink", "c", {keys.bars: ">"})
    await redis_client.xack(keys.bars, "sink", ids[0], ids[2])
    ok, _ = await wait_idle(redis_client, keys, timeout_s=10, poll_s=0.05)
    assert ok


async def test_an_empty_namespace_names_the_namespaces_that_hold_data(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """``make run`` writes under ``run:``; ``status`` without that NAMESPACE used to show every
    stream empty with no hint (issue 16)."""
    run = Keys(partitions=4, namespace=f"{namespace}run:")
    for p in (0, 2):
        await redis_client.xadd(run.ticks(p), {"n": "1"})
    await redis_client.xadd(run.ticks(2), {"n": "2"})
    await redis_client.xadd(run.dlq(run.ticks(1)), {"reason": "bad"})  # not a namespace
    try:
        found = await namespaces_with_data(redis_client, limit=10**6)
        assert found[run.namespace] == 3
        assert f"{run.namespace}dlq:" not in found
        done = _cli(namespace)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        at = lines.index(f"namespace {namespace!r} is empty; namespaces holding ticks:")
        assert lines[at - 1].startswith("idle: every consumer group has read and acked")
        line = f"  {run.namespace}\t3 ticks\tNAMESPACE={run.namespace} alphapulse status"
        assert empty_namespace_hint(namespace, {run.namespace: 3})[1] == line
        if len(found) < 20:  # the CLI lists up to 20 namespaces (others' share this Redis)
            assert line in lines[at:]
    finally:
        await redis_client.delete(*(run.ticks(p) for p in (0, 2)), run.dlq(run.ticks(1)))
