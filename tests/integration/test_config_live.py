"""Live configuration on real Redis: compare-and-set, refusals, per-event versions, rollback,
a worker that missed a version, the CLI, the WebSocket limits and the follower's latency."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from common.cli import main
from common.configstore import (
    ConfigFollower,
    ConfigRefused,
    load_versions,
    scored_through,
)
from common.metrics import CONFIG_METRICS
from common.names import Keys
from signals.contract import decode_entry
from signals.liveconfig import apply_assignments, propose, rollback, seed_document
from signals.metrics import SIGNALS_METRICS
from signals.model import Model
from signals.service import SignalsService
from signals.versions import ModelHistory
from tests.conftest import REDIS_URL
from tests.integration.runtime_support import ROOT
from tests.integration.test_signals_service import settings_for, write_events
from tests.signals_factory import MINUTE, T0, event_mix

pytestmark = pytest.mark.redis


async def snapshot(r: aioredis.Redis, keys: Keys) -> Any:
    """Everything the configuration consists of, to show that a refusal moved nothing."""
    return (
        await r.xrange(keys.config_history),
        await r.hgetall(keys.config_current),
        await r.get(keys.config_scored),
    )


def cli_process(namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``alphapulse config ARGS`` as its own process (exit code, stderr lines)."""
    env = {**os.environ, "REDIS_URL": REDIS_URL, "NAMESPACE": namespace}
    cmd = [sys.executable, "-m", "common.cli", "config", *args]
    kwargs: dict[str, Any] = {"env": env, "cwd": ROOT, "capture_output": True, "text": True}
    return subprocess.run(cmd, check=False, timeout=60, **kwargs)


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, namespace: str) -> Callable[..., Awaitable[Done]]:
    """``alphapulse config ARGS`` in this process (a thread: the CLI runs its own loop);
    the process start of the whole CLI costs seconds on a busy machine."""
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("NAMESPACE", namespace)

    async def run(*args: str) -> Done:
        out, err = io.StringIO(), io.StringIO()

        def call() -> int:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                return main(["config", *args])

        code = await asyncio.to_thread(call)
        return Done(code, out.getvalue(), err.getvalue())

    return run


async def run_burst(r: aioredis.Redis, namespace: str) -> SignalsService:
    async with SignalsService(settings_for(namespace), redis=r, burst=True) as w:
        await w.run()
    return w


async def stream_models(r: aioredis.Redis, keys: Keys) -> dict[str, tuple[int, str]]:
    out = {}
    for _, fields in await r.xrange(keys.signals):
        s = decode_entry(fields)
        assert s.id not in out, "a signal appears twice"
        out[s.id] = (s.open_time_ms, s.model)
    return out


async def test_the_first_worker_seeds_version_1_and_a_restart_changes_nothing(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    await run_burst(redis_client, namespace)
    (v1,) = await load_versions(redis_client, keys)
    assert (v1.version, v1.effective_from) == (1, 0)
    assert v1.doc == seed_document({}, Model())
    # A second worker with another SIGNALS_MODEL_FILE does not write a version: the
    # namespace's document rules, so every instance scores alike.
    other = settings_for(namespace)
    other = type(other)(common=other.common, model=Model(params=type(Model().params)(0.1)))
    async with SignalsService(other, redis=redis_client, burst=True) as w:
        await w.run()
        assert w.history.newest.name == f"v1:{Model().fingerprint}"
    assert len(await load_versions(redis_client, keys)) == 1


async def test_a_change_applies_from_its_effective_from_and_replays_exactly(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    events = event_mix(600, symbols=20)  # 30 minutes of bars from T0
    first = [e for e in events if e.bar.open_time < T0 + 10 * MINUTE]
    await write_events(redis_client, keys, first)
    await run_burst(redis_client, namespace)
    assert await scored_through(redis_client, keys) == T0 + 9 * MINUTE

    (v1,) = await load_versions(redis_client, keys)
    v2 = await propose(
        redis_client,
        keys,
        apply_assignments(v1.doc, ["threshold=0.3"]),
        who="test",
        comment="lower",
        expected_version=1,
    )
    assert v2.effective_from == T0 + 10 * MINUTE  # the next whole minute after the scored mark

    # Bars opened before effective_from whose events arrive after the change (a slower
    # symbol, a longer timeframe): the old version still covers them.
    late = event_mix(200, symbols=20, exchange="kraken")
    assert max(e.bar.open_time for e in late) < T0 + 10 * MINUTE
    rest = [e for e in events if e.bar.open_time >= T0 + 10 * MINUTE]
    await write_events(redis_client, keys, [*late, *rest])
    await run_burst(redis_client, namespace)

    models = await stream_models(redis_client, keys)
    assert {m for t, m in models.values() if t < v2.effective_from} == {f"v1:{Model().fingerprint}"}
    assert any(i.startswith("kraken:") for i in models)
    after = {m for t, m in models.values() if t >= v2.effective_from}
    assert after == {f"v2:{ModelHistory.from_config([v1, v2]).newest.model.fingerprint}"}
    # The whole run equals replay with the exported history (what config history --json is).
    exported = [v.to_dict() for v in await load_versions(redis_client, keys)]
    history = ModelHistory.from_export(json.loads(json.dumps(exported)))
    want = {
        s.id: (s.open_time_ms, s.model) for e in [*first, *late, *rest] for s in history.score(e)
    }
    assert models == want
    lowered = sum(1 for t, _ in models.values() if t >= v2.effective_from)
    assert lowered > sum(1 for e in rest for _ in ModelHistory.seed(Model()).score(e))


async def test_a_version_effective_before_the_scored_mark_is_refused(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    await write_events(redis_client, keys, event_mix(100, symbols=10))
    await run_burst(redis_client, namespace)
    scored = await scored_through(redis_client, keys)
    assert scored == T0 + 9 * MINUTE
    before = await snapshot(redis_client, keys)
    doc = apply_assignments((await load_versions(redis_client, keys))[0].doc, ["threshold=0.5"])
    for too_early in (scored, T0):
        with pytest.raises(ConfigRefused) as err:
            await propose(
                redis_client, keys, doc, who="t", effective_from=too_early, expected_version=1
            )
        assert err.value.reason == "past"
    assert await snapshot(redis_client, keys) == before
    v2 = await propose(
        redis_client, keys, doc, who="t", effective_from=scored + 1, expected_version=1
    )
    with pytest.raises(ConfigRefused) as order:  # versions apply in order of effective_from
        await propose(
            redis_client, keys, doc, who="t", effective_from=scored + 1 - 1, expected_version=2
        )
    assert order.value.reason in ("past", "order")
    assert v2.effective_from == scored + 1


async def test_two_concurrent_changes_one_wins_the_other_is_told(
    redis_client: aioredis.Redis, keys: Keys, cli: Callable[..., Awaitable[Done]]
) -> None:
    seed = seed_document({}, Model())
    await propose(redis_client, keys, seed, who="t", expected_version=0)
    a = apply_assignments(seed, ["threshold=0.7"])
    b = apply_assignments(seed, ["ws.max_connections=5"])
    results = await asyncio.gather(
        propose(redis_client, keys, a, who="a", expected_version=1),
        propose(redis_client, keys, b, who="b", expected_version=1),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, ConfigRefused)]
    assert len(won) == 1 and len(lost) == 1 and lost[0].reason == "conflict"
    history = await load_versions(redis_client, keys)
    assert [v.version for v in history] == [1, 2] and history[1].who == won[0].who
    # The CLI: a stale --expect-version is refused with one line, exit 1, nothing written.
    done = await cli("set", "threshold=0.8", "--expect-version", "1")
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "changed meanwhile" in done.stderr
    assert len(await load_versions(redis_client, keys)) == 2


async def test_an_invalid_change_is_refused_and_nothing_moves(
    redis_client: aioredis.Redis, keys: Keys, namespace: str, cli: Callable[..., Awaitable[Done]]
) -> None:
    assert (await cli("set", "threshold=0.7")).returncode == 0
    before = await snapshot(redis_client, keys)
    for args, key, own_process in (
        (("set", "threshold=abc"), "model", True),
        (("set", "ws.max_connections=-1"), "ws.max_connections", False),
        (("set", "timeframes=1m,5m"), "timeframes", True),
        (("set", "sink.retention_s.bars=forever"), "sink.retention_s.bars", False),
        (("load", "/nonexistent.json"), "FILE", False),
    ):
        done = cli_process(namespace, *args) if own_process else await cli(*args)
        assert done.returncode == 2, done.stderr
        line = done.stderr.strip()
        assert "\n" not in line and line.startswith(f"alphapulse config: invalid {key}:"), line
        assert await snapshot(redis_client, keys) == before
    assert "TIMEFRAMES" in (await cli("set", "timeframes=1m")).stderr


async def test_rollback_and_profiles_write_new_versions_with_old_documents(
    redis_client: aioredis.Redis,
    keys: Keys,
    namespace: str,
    tmp_path: Path,
    cli: Callable[..., Awaitable[Done]],
) -> None:
    assert (await cli("set", "threshold=0.7", "--comment", "first")).returncode == 0
    assert (await cli("profile", "save", "calm")).returncode == 0
    assert (await cli("set", "threshold=0.9", "ws.queue_size=10")).returncode == 0
    diff = (await cli("diff")).stdout.splitlines()
    assert diff == ["model.threshold: 0.7 -> 0.9", "ws.queue_size: 10000 -> 10"]
    done = await cli("rollback", "1")
    assert done.returncode == 0, done.stderr
    history = await load_versions(redis_client, keys)
    assert [v.version for v in history] == [1, 2, 3]
    assert history[2].doc == history[0].doc and history[2].fingerprint == history[0].fingerprint
    assert history[2].comment == "rollback to version 1"
    assert (await cli("diff", "1", "3")).stdout.strip().endswith("same document")
    model_file = tmp_path / "model.toml"  # the format of SIGNALS_MODEL_FILE / calibrate
    model_file.write_text(
        "threshold = 0.55\n[calibration]\nhorizon = 5\nx = [0.0, 1.0]\ny = [0.45, 0.6]\n"
    )
    assert (await cli("load", "--model", str(model_file))).returncode == 0
    loaded = (await load_versions(redis_client, keys))[-1].doc
    assert loaded["model"]["threshold"] == 0.55 and loaded["model"]["calibration"]["horizon"] == 5
    assert loaded["ws"] == history[2].doc["ws"]  # the other sections are kept
    assert (await cli("rollback", "3")).returncode == 0
    assert (await cli("profile", "load", "calm")).returncode == 0
    assert (await load_versions(redis_client, keys))[-1].doc == history[0].doc
    exported = tmp_path / "history.json"
    exported.write_text((await cli("history", "--json")).stdout)
    assert [
        v.version for v in ModelHistory.from_export(json.loads(exported.read_text())).versions
    ] == [1, 2, 3, 4, 5, 6]
    # A rollback of a version that does not exist: one line, nothing written.
    bad = await cli("rollback", "9")
    assert bad.returncode == 2 and "no version 9" in bad.stderr
    assert len(await load_versions(redis_client, keys)) == 6
    shown = (await cli("show")).stdout
    assert shown.startswith("v6\t") and "a change now would apply from" in shown
    assert (
        json.loads((await cli("show", "--version", "2", "--json")).stdout)["doc"] == history[1].doc
    )
    # A rolled-back threshold scores what comes next.
    await write_events(redis_client, keys, event_mix(40, symbols=10))
    w = await run_burst(redis_client, namespace)
    assert w.history.newest.version == 6
    assert {m for _, m in (await stream_models(redis_client, keys)).values()} == {
        f"v6:{w.history.newest.model.fingerprint}"
    }


async def test_a_worker_that_missed_a_version_scores_the_batch_again(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    worker = SignalsService(settings_for(namespace), redis=redis_client)
    await worker.start()
    try:
        # A new version lands while the worker is not following (as between two XREADs):
        (v1,) = await load_versions(redis_client, keys)
        doc = apply_assignments(v1.doc, ["threshold=0.3"])
        v2 = await propose(redis_client, keys, doc, who="t", effective_from=T0, expected_version=1)
        assert worker.history.newest.version == 1
        await write_events(redis_client, keys, event_mix(50, symbols=10))
        rescored = SIGNALS_METRICS.rescored._value.get()
        entries = await worker.consumer.read(block_ms=100)
        await worker.handle(entries)
        assert SIGNALS_METRICS.rescored._value.get() == rescored + 1
        models = {m for _, m in (await stream_models(redis_client, keys)).values()}
        assert models == {f"v2:{worker.history.newest.model.fingerprint}"}
        assert worker.history.newest.version == v2.version
    finally:
        await worker.stop()


async def test_followers_see_a_new_version_and_export_it(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    seen = asyncio.Event()
    follower = ConfigFollower(
        redis_client, keys, worker="test-follower", on_change=lambda _: seen.set(), block_ms=200
    )
    stop = asyncio.Event()
    async with follower.running(stop.is_set):
        await asyncio.sleep(0.1)
        await rollback_free_propose(redis_client, keys)
        await asyncio.wait_for(seen.wait(), 10)
    stop.set()
    assert CONFIG_METRICS.version.labels("test-follower")._value.get() == 1


async def rollback_free_propose(r: aioredis.Redis, keys: Keys) -> None:
    await propose(r, keys, seed_document({}, Model()), who="t", expected_version=0)


async def test_rollback_api_refuses_an_unknown_version(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    await rollback_free_propose(redis_client, keys)
    with pytest.raises(Exception, match="no version 7"):
        await rollback(redis_client, keys, 7, who="t")


async def test_followers_end_with_their_block_even_in_the_middle_of_a_read(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    """redis-py may turn the cancellation of a blocking XREAD into a ConnectionError; a
    follower must end anyway (one once retried for ever and hung a burst worker's return).
    Two followers share a client, as two workers of one process do."""
    for i in range(40):
        followers = [
            ConfigFollower(redis_client, keys, worker="test-stop", block_ms=300) for _ in "ab"
        ]

        async def cycle(delay: float, f: ConfigFollower) -> None:
            async with f.running(lambda: False):
                await asyncio.sleep(delay)

        delay = 0.01 * (i % 10)
        await asyncio.wait_for(asyncio.gather(*(cycle(delay, f) for f in followers)), 10)
