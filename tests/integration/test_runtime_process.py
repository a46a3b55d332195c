"""The runtime as real worker processes on real Redis: crash, graceful stop, grace expiry,
bad settings, and the health endpoints of a running worker."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest
import redis.asyncio as aioredis

from common.names import Keys
from tests.integration.runtime_support import (
    finish,
    free_port,
    http_get,
    spawn_worker,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

N = 30


async def _fill(client: aioredis.Redis, keys: Keys, n: int = N) -> list[str]:
    ids = []
    for i in range(n):
        ids.append((await client.xadd(keys.bars, {"n": str(i)})).decode())
    return ids


async def _outputs(client: aioredis.Redis, keys: Keys) -> list[str]:
    return [f[b"src"].decode() for _, f in await client.xrange(keys.signals)]


async def _signal_when_paused(
    proc: subprocess.Popen[bytes], sig: signal.Signals, client: aioredis.Redis, namespace: str
) -> tuple[int, str]:
    """Send ``sig`` once the test worker has paused mid-batch; its exit code and stderr."""
    try:
        await wait_for(f"{namespace}paused", client)
        proc.send_signal(sig)
        return finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_sigkill_mid_batch_redelivers_and_effects_apply_once(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    ids = await _fill(redis_client, keys)
    # A: takes a batch of 10, applies 4 effects, then hangs: killed there, nothing acked.
    a = spawn_worker(
        worker_env(namespace, BATCH_COUNT="10", TEST_PAUSE_AFTER="4", TEST_PAUSE_S="120")
    )
    try:
        victim = await wait_for(f"{namespace}paused", redis_client)
        a.send_signal(signal.SIGKILL)
        code, _ = finish(a)
    finally:
        if a.poll() is None:
            a.kill()
    assert code == -signal.SIGKILL
    pending = await redis_client.xpending(keys.bars, "g")
    assert pending["pending"] == 10  # the killed consumer's whole batch is still pending
    assert len(await _outputs(redis_client, keys)) == 4

    # B: claims A's entries once idle, reads the rest, returns when drained (burst).
    b = spawn_worker(worker_env(namespace, CLAIM_IDLE_MS="300", TEST_BURST="1"))
    code, err = finish(b)
    assert code == 0, err

    outputs = await _outputs(redis_client, keys)
    assert sorted(outputs) == sorted(ids)  # every input's effect, each exactly once
    assert len(outputs) == len(set(outputs)) == N
    attempts = [int(await redis_client.get(f"{namespace}attempts:{i}")) for i in ids]
    assert attempts[:4] == [2, 2, 2, 2]  # applied by A, redelivered to B, not applied again
    assert set(attempts[4:]) == {1}
    by = {f[b"src"].decode(): f[b"by"] for _, f in await redis_client.xrange(keys.signals)}
    assert {by[i] for i in ids[:4]} == {victim}
    assert victim not in {by[i] for i in ids[4:]}
    assert (await redis_client.xpending(keys.bars, "g"))["pending"] == 0
    assert '"redis_unavailable"' not in err


async def test_sigterm_finishes_and_acks_the_inflight_batch_then_exits_0(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    ids = await _fill(redis_client, keys)
    proc = spawn_worker(
        worker_env(
            namespace,
            BATCH_COUNT="10",
            TEST_PAUSE_AFTER="5",
            TEST_PAUSE_S="1",
            GRACE_SECONDS="30",
            LOG_LEVEL="DEBUG",  # a routine stop is logged at DEBUG
        )
    )
    code, err = await _signal_when_paused(proc, signal.SIGTERM, redis_client, namespace)
    assert code == 0, err
    assert sorted(await _outputs(redis_client, keys)) == sorted(ids[:10])
    assert (await redis_client.xpending(keys.bars, "g"))["pending"] == 0
    (group,) = await redis_client.xinfo_groups(keys.bars)
    assert group["lag"] == N - 10  # it stopped reading: the rest was never delivered
    assert '"stop_requested"' in err and '"signal":"SIGTERM"' in err


async def test_grace_expiry_cancels_and_leaves_entries_pending(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    await _fill(redis_client, keys, 5)
    proc = spawn_worker(
        worker_env(namespace, TEST_PAUSE_AFTER="2", TEST_PAUSE_S="120", GRACE_SECONDS="0.5")
    )
    code, err = await _signal_when_paused(proc, signal.SIGINT, redis_client, namespace)
    assert code == 1, err
    assert '"grace_expired"' in err
    assert (await redis_client.xpending(keys.bars, "g"))["pending"] == 5


@pytest.mark.parametrize(
    ("variable", "value", "accepts"),
    [
        ("PARTITIONS", "x", "expected an integer 1..4096, got 'x'"),
        ("LOG_FORMAT", "xml", "expected one of json|console, got 'xml'"),
        ("BLOCK_MS", "20000", "below REDIS_SOCKET_TIMEOUT"),
        ("REDIS_URL", "http://u:hunter2@h/0", "expected a redis|rediss"),
    ],
)
def test_bad_setting_is_one_line_and_exit_code_2(
    namespace: str, variable: str, value: str, accepts: str
) -> None:
    proc = spawn_worker(worker_env(namespace, **{variable: value}))
    code, err = finish(proc)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"alphapulse: invalid setting {variable}: ")
    assert accepts in lines[0]
    assert "hunter2" not in err


async def test_running_worker_serves_metrics_healthz_readyz(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    await _fill(redis_client, keys, 3)
    port = free_port()
    proc = spawn_worker(worker_env(namespace, METRICS_PORT=str(port), METRICS_HOST="127.0.0.1"))
    try:
        line = f'alphapulse_runtime_entries_total{{group="g",outcome="acked",stream="{keys.bars}"}}'
        for _ in range(500):  # until the three entries are acked (bounded, ~10 s)
            try:
                status, body = await http_get(port, "/metrics")
            except ConnectionError:  # not listening yet
                await asyncio.sleep(0.02)
                continue
            if f"{line} 3.0" in body.decode():
                break
            await asyncio.sleep(0.02)
        assert status == 200
        assert f"{line} 3.0" in body.decode()
        assert "alphapulse_runtime_batch_seconds_bucket" in body.decode()
        status, _ = await http_get(port, "/healthz")
        assert status == 200
        status, body = await http_get(port, "/readyz")
        assert (status, body) == (200, b"ready\n")
        status, _ = await http_get(port, "/nope")
        assert status == 404
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
        assert code == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
