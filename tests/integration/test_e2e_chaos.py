"""Nothing lost, nothing twice under faults: the pipeline as processes, while a seeded chaos
driver SIGKILLs a random worker every few seconds (the test restarts it, as a process
manager would), the simulator cuts every connection every few seconds, the test's own
PostgreSQL restarts once and the test's own Redis (AOF, ``appendfsync always``) is
SIGKILLed and restarted once, still stores exactly the bars, patterns and signals
``alphapulse replay`` computes.

Nothing shared is touched: Redis is a private ``redis-server`` on a free port, PostgreSQL a
throwaway ``initdb`` server (as in ``test_sink_outage``). The feed is the first 150 s of the
recorded BTC+ETH sessions at 4x (about 40 s of chaos). Replay closes the bars still open at
the end of the file; the live detectors close them once a partition is idle, which can only
equal replay if no outage pauses a partition for longer than the allowed lateness: it is
20 s here (for replay too), far above the few seconds any fault here lasts.

Ingest is frozen (SIGSTOP) for ``INGEST_FREEZE_S``, then SIGKILLed, at each of
``INGEST_KILLS_AT`` (besides the random kills), once a ``ticks:{p}`` stream shows it writing:
it reconnects within 0.5 s after the simulator's cuts, but a freeze in between (or before a
slow start has connected it) would cost it nothing, as the simulator sends only to a
connection, and a CI run once saw no gap at all. The simulator keeps sending into its
socket meanwhile and re-sends only 10 trades to a new subscription (``--overlap 10``), so the
trades the killed ingest was sent but never wrote are a gap after its restart: the restarted
ingest finds it from the last ids it wrote (kept in Redis) and backfills it from the
simulator's REST history before its live trades. Nothing may be missing from what replay
computes.
``CHAOS_SEED`` picks the schedule (logged; the default is fixed so runs repeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from common.names import Keys
from tests.integration.e2e_support import (
    WORKERS,
    RedisNode,
    Supervised,
    drain_and_compare,
    replay_rows,
    stage_env,
    start_stages,
)
from tests.integration.test_e2e_pipeline import PARTITIONS, write_subset
from tests.integration.test_sink_outage import ThrowawayServer
from tests.sink_support import Db

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

SEED = int(os.environ.get("CHAOS_SEED", "20261123"))
SPEED = "4"
CHAOS_S = 36.0  # the feed lasts about 150 s / 4
PG_RESTART_AT, REDIS_RESTART_AT = 10.0, 22.0
OUTAGE_S = 2.0
LATENESS_MS = 20_000
INGEST_KILLS_AT, INGEST_FREEZE_S = (8.0, 26.0), 3.0  # ingest frozen, then SIGKILLed, here


def kill_schedule(rng: random.Random) -> list[tuple[float, str]]:
    """(time, worker) pairs: a SIGKILL every 2.5-4.5 s during the chaos window."""
    out, t = [], rng.uniform(1.5, 3.0)
    while t < CHAOS_S:
        out.append((t, rng.choice(WORKERS)))
        t += rng.uniform(2.5, 4.5)
    return sorted([*out, *((t, "ingest frozen") for t in INGEST_KILLS_AT)])


@pytest.fixture
async def pg() -> AsyncIterator[ThrowawayServer]:
    srv = ThrowawayServer("postgres")
    try:
        yield srv
    finally:
        await asyncio.to_thread(srv.destroy)


async def ingest_writing(redis_url: str, keys: Keys, timeout_s: float = 5.0) -> bool:
    """Whether ingest writes ticks now: a ``ticks:{p}`` stream gets a new entry within
    ``timeout_s`` (Redis may be down meanwhile). Freezing an ingest that is between the
    simulator's cuts loses it nothing: the simulator sends only to a connection, so there
    would be no gap to backfill."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=1.0)
    try:
        first: list[Any] | None = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError, OSError):
                async with client.pipeline(transaction=False) as pipe:
                    for stream in keys.all_ticks():
                        pipe.xrevrange(stream, count=1)
                    last = await pipe.execute()
                if first is None:
                    first = last
                elif last != first:
                    return True
            await asyncio.sleep(0.05)
        return False
    finally:
        await client.aclose()


async def chaos(
    pipe: Supervised, redis_node: RedisNode, pg: ThrowawayServer, keys: Keys
) -> list[str]:
    """Run the seeded schedule; what happened, in order (for the failure message)."""
    rng = random.Random(SEED)
    kills = kill_schedule(rng)
    events: list[str] = []
    t0 = time.monotonic()
    pg_done = redis_done = False
    while (now := time.monotonic() - t0) < CHAOS_S:
        assert pipe.proc("simulator").poll() is None, pipe.log_tail()
        if kills and kills[0][0] <= now:
            _, name = kills.pop(0)
            if name == "ingest frozen":  # trades sent to it pile up unread, then it dies
                name = "ingest"
                if not await ingest_writing(f"redis://127.0.0.1:{redis_node.port}/0", keys):
                    events.append(f"{time.monotonic() - t0:.1f}s ingest not writing")
                pipe.proc(name).send_signal(signal.SIGSTOP)
                await asyncio.sleep(INGEST_FREEZE_S)
            pipe.kill(name)
            events.append(f"{now:.1f}s kill {name}")
        if not pg_done and now >= PG_RESTART_AT:
            pg_done = True
            await asyncio.to_thread(pg.stop)
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(pg.start)
            events.append(f"{now:.1f}s postgres restarted")
        if not redis_done and now >= REDIS_RESTART_AT:
            redis_done = True
            await asyncio.to_thread(redis_node.stop, True)  # SIGKILL
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(redis_node.start)
            events.append(f"{now:.1f}s redis killed and restarted")
        events.extend(f"{now:.1f}s restart {n}" for n in pipe.revive())
        await asyncio.sleep(0.2)
    return events


def history_served(log: Path) -> int:
    """Trades the simulator's REST history served (ingest's backfills), from its log: the
    simulator is never killed, while a SIGKILLed ingest loses the log lines it buffered."""
    found = re.findall(r"sim_history .* trades=(\d+)", log.read_text(errors="replace"))
    return sum(map(int, found))


async def test_faults_leave_exactly_what_replay_computes(
    pg: ThrowawayServer, tmp_path: Path
) -> None:
    print(f"chaos seed {SEED} (CHAOS_SEED)")
    csv_path = tmp_path / "ticks.csv"
    assert write_subset(csv_path) > 1000
    redis_node = RedisNode("--appendonly", "yes", "--appendfsync", "always")
    pipe: Supervised | None = None
    try:
        redis_node.start()
        env = stage_env(f"redis://127.0.0.1:{redis_node.port}/0", "chaos:", PARTITIONS, LATENESS_MS)
        env["INGEST_BACKOFF_MAX_S"] = "0.5"  # reconnect at once after the simulator's cuts
        want = await replay_rows(csv_path, tmp_path / "replay", env, PARTITIONS)
        assert len(want[2]) >= 5
        url = await asyncio.to_thread(pg.up)
        db = Db("postgres", url, "public", url)  # the whole throwaway server is this test's
        pipe = Supervised(tmp_path, env)
        sim = ("--speed", SPEED, "--drop-every", "5", "--overlap", "10")
        start_stages(pipe, db.url, csv_path, *sim)
        events = await chaos(pipe, redis_node, pg, Keys(PARTITIONS, "chaos:"))
        print("chaos:", "; ".join(events))
        assert sum(" kill " in e for e in events) >= 8
        assert sum(" kill ingest" in e for e in events) >= 1
        await drain_and_compare(pipe, db, want, env, 120)
        served = history_served(tmp_path / "simulator.log")
        print(f"the simulator's REST history served {served} trades to ingest's backfills")
        assert served > 0, "a killed ingest must have left a gap to backfill"
        cuts = (tmp_path / "simulator.log").read_text().count("sim_drop")
        assert cuts >= 3, "the simulator must have cut ingest's connections"
        print(f"simulator cut {cuts} connections")
        print("restarts (name, exit code):", pipe.restarts)
    except BaseException:
        print(f"chaos seed {SEED}; redis log:\n{redis_node.log_tail()}")
        if pipe is not None:
            print(pipe.log_tail())
        raise
    finally:
        try:
            if pipe is not None:
                pipe.close()
        finally:
            redis_node.destroy()
