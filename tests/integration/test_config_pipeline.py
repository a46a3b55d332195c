"""A configuration change in the middle of a live run, through real worker processes.

* The whole pipeline as processes (simulator, ingest, detectors, signals, sink on real Redis
  and PostgreSQL): ``alphapulse config set threshold=…`` while the feed plays; the signals
  before the new version's ``effective_from`` carry version 1, those after it version 2, and
  the stored run equals ``alphapulse replay --config-history`` of the exported history.
* A signals worker process SIGKILLed right after a change, then restarted: the stream equals
  the history's scoring of every event, each signal once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from common.configstore import load_versions, scored_through
from common.names import Keys
from signals.liveconfig import apply_assignments, propose
from signals.versions import ModelHistory
from tests.integration.runtime_support import free_port
from tests.integration.test_config_live import stream_models
from tests.integration.test_e2e_pipeline import (
    PARTITIONS,
    WAIT_S,
    Pipeline,
    _env,
    db,
    expected_rows,
    run_cli,
    stored_rows,
    write_closed_subset,
)
from tests.integration.test_signals_service import _worker_env, write_events
from tests.signals_factory import MINUTE, T0, event_mix
from tests.sink_support import Db

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]
__all__ = ["db"]  # the PostgreSQL fixture, used by name


async def test_a_threshold_change_mid_run_equals_replay_with_the_history(
    redis_client: aioredis.Redis, keys: Keys, namespace: str, db: Db, tmp_path: Path
) -> None:
    csv_path = tmp_path / "ticks.csv"
    through_ms = write_closed_subset(csv_path)
    env = dict(_env(namespace))
    pipeline = Pipeline(tmp_path, env)
    try:
        pipeline.start("sink", "-m", "sink", DATABASE_URL=db.url)
        pipeline.start("signals", "-m", "signals")
        pipeline.start("detectors", "-m", "detectors")
        port = free_port()
        url = f"ws://127.0.0.1:{port}/binance/stream"
        pipeline.start(
            "ingest", "-m", "ingest", EXCHANGES="binance:BTCUSDT,ETHUSDT", INGEST_URL_BINANCE=url
        )
        sim = ["-m", "common.cli", "simulate", "--port", str(port), "--speed", "5"]
        pipeline.start("simulator", *sim, "--feed", f"binance={csv_path}")

        deadline = time.monotonic() + WAIT_S
        while await scored_through(redis_client, keys) is None:  # the run is under way
            pipeline.check_alive()
            assert time.monotonic() < deadline, pipeline.log_tail()
            await asyncio.sleep(0.1)
        change = [sys.executable, "-m", "common.cli", "config", "set", "threshold=0.4"]
        done = await run_cli([*change, "--comment", "mid-run"], env)
        assert done.returncode == 0, done.stderr

        # Let the feed finish and every group drain, then export the history as an operator
        # would and replay the same ticks with it.
        status = [sys.executable, "-m", "common.cli", "status", "--wait-idle", "--timeout", "90"]
        await asyncio.sleep(2)
        idle = await run_cli(status, env, 120)
        assert idle.returncode == 0, idle.stdout + idle.stderr + pipeline.log_tail().encode()
        exported = await run_cli(
            [sys.executable, "-m", "common.cli", "config", "history", "--json"], env
        )
        history_file = tmp_path / "history.json"
        history_file.write_bytes(exported.stdout)
        out = tmp_path / "replay"
        replay = [sys.executable, "-m", "common.cli", "replay", "--ticks", str(csv_path)]
        replay += ["--partitions", str(PARTITIONS), "--config-history", str(history_file)]
        done = await run_cli([*replay, "--out", str(out)], env)
        assert done.returncode == 0, done.stderr
        want_bars, want_patterns, want_signals = expected_rows(out, through_ms)

        while True:
            bars, patterns, signals, unstamped = await stored_rows(db)
            if len(signals) >= len(want_signals) and len(bars) >= len(want_bars):
                break
            pipeline.check_alive()
            assert time.monotonic() < deadline + WAIT_S, pipeline.log_tail()
            await asyncio.sleep(0.5)
        assert bars == want_bars
        assert patterns == want_patterns
        assert signals == want_signals
        assert unstamped == 0

        v1, v2 = (await load_versions(redis_client, keys))[:2]
        assert json.loads(history_file.read_text())[1]["comment"] == "mid-run"
        before = {s["model"] for s in signals if s["open_time_ms"] < v2.effective_from}
        after = {s["model"] for s in signals if s["open_time_ms"] >= v2.effective_from}
        assert before <= {f"v1:{ModelHistory.from_config([v1]).newest.model.fingerprint}"}
        assert after == {ModelHistory.from_config([v1, v2]).newest.name}, (
            "no signal after the change: the feed ended before effective_from"
        )
        assert before, "no signal before the change"
    finally:
        pipeline.close()


async def test_a_signals_worker_killed_right_after_a_change_gives_the_same_signals(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    events = event_mix(3000, symbols=100)  # bars of T0 .. T0 + 29 min
    first = [e for e in events if e.bar.open_time < T0 + 5 * MINUTE]
    await write_events(redis_client, keys, first)
    cmd = [sys.executable, "-m", "signals"]
    proc = await asyncio.create_subprocess_exec(*cmd, env=_worker_env(namespace))
    try:
        for _ in range(3000):  # up to 60 s for the worker to start and score the first part
            if await scored_through(redis_client, keys) == T0 + 4 * MINUTE:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the signals worker never scored the first events")
        await write_events(redis_client, keys, [e for e in events if e not in first])
        (v1,) = await load_versions(redis_client, keys)
        v2 = await propose(
            redis_client,
            keys,
            apply_assignments(v1.doc, ["threshold=0.3"]),
            who="t",
            expected_version=1,
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
    assert v2.effective_from < T0 + 29 * MINUTE, "the worker scored everything before the change"
    restart = await asyncio.create_subprocess_exec(*cmd, "--burst", env=_worker_env(namespace))
    assert await asyncio.wait_for(restart.wait(), 120) == 0

    history = ModelHistory.from_config(await load_versions(redis_client, keys))
    want = {s.id: (s.open_time_ms, s.model) for e in events for s in history.score(e)}
    got = await stream_models(redis_client, keys)  # also checks that no id appears twice
    assert got == want
    assert {m for t, m in got.values() if t >= v2.effective_from} == {history.newest.name}
