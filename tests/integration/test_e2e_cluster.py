"""The pipeline on a local 3-master Redis Cluster stores exactly what ``alphapulse replay``
computes.

The test starts three ``redis-server --cluster-enabled yes`` processes on free ports (temp
dirs), joins them with ``redis-cli --cluster create --cluster-replicas 0`` and waits for
``cluster_state:ok``. Every stage then runs with ``REDIS_URL=redis+cluster://`` one node: the
``ticks:{p}`` streams, leases, epochs and checkpoints of the partitions hash to slots on all
three masters (checked with ``CLUSTER KEYSLOT`` and ``CLUSTER NODES``), and BTC and ETH are
consumed from different masters. The first 150 s of the recorded BTC+ETH sessions go
through simulator -> ingest -> two detectors -> signals -> sink (a private PostgreSQL
schema); the ``bars``, ``patterns`` and ``signals`` tables must equal replay's.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from common.names import Keys, partition_of
from tests.integration.e2e_support import (
    RedisNode,
    Supervised,
    drain_and_compare,
    replay_rows,
    stage_env,
    start_stages,
)
from tests.integration.runtime_support import _need
from tests.integration.test_e2e_pipeline import PARTITIONS, write_closed_subset
from tests.sink_support import Db, make_db

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

NAMESPACE = "cluster:"
NODE_ARGS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", "5000", "--appendonly", "no")  # fmt: skip


@pytest.fixture
async def db() -> AsyncIterator[Db]:
    async for d in make_db("postgres"):
        yield d


def cli(port: int, *args: str) -> str:
    done = subprocess.run(
        [_need("redis-cli"), "-p", str(port), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"redis-cli {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture
def cluster() -> Iterator[list[RedisNode]]:
    """Three masters sharing the 16384 slots, ``cluster_state:ok`` on each."""
    nodes = [RedisNode(*NODE_ARGS) for _ in range(3)]
    try:
        for n in nodes:
            n.start()
        addrs = [f"127.0.0.1:{n.port}" for n in nodes]
        cli(nodes[0].port, "--cluster", "create", *addrs, "--cluster-replicas", "0",
            "--cluster-yes")  # fmt: skip
        for n in nodes:
            for _ in range(200):
                if "cluster_state:ok" in cli(n.port, "cluster", "info"):
                    break
                subprocess.run(["sleep", "0.1"], check=True, timeout=5)
            else:
                pytest.fail(f"cluster not ok on {n.port}: {cli(n.port, 'cluster', 'info')}")
        yield nodes
    finally:
        for n in nodes:
            n.destroy()


def master_of(port: int, key: str) -> str:
    """The address of the master serving ``key``'s slot (from CLUSTER NODES)."""
    slot = int(cli(port, "cluster", "keyslot", key))
    for line in cli(port, "cluster", "nodes").splitlines():
        fields = line.split()
        if "master" not in fields[2]:
            continue
        for rng in fields[8:]:
            lo, _, hi = rng.partition("-")
            if int(lo) <= slot <= int(hi or lo):
                return fields[1].split("@")[0]
    raise AssertionError(f"slot {slot} of {key} has no master")


async def test_cluster_pipeline_stores_exactly_what_replay_computes(
    cluster: list[RedisNode], db: Db, tmp_path: Path
) -> None:
    port = cluster[0].port
    keys = Keys(namespace=NAMESPACE, partitions=PARTITIONS)
    owners = {p: master_of(port, keys.ticks(p)) for p in range(PARTITIONS)}
    assert len(set(owners.values())) == 3, owners
    btc, eth = (partition_of("binance", s, PARTITIONS) for s in ("BTCUSDT", "ETHUSDT"))
    assert owners[btc] != owners[eth], owners

    csv_path = tmp_path / "ticks.csv"
    through_ms = write_closed_subset(csv_path)  # bars close by event time, as in replay
    env = stage_env(f"redis+cluster://127.0.0.1:{port}", NAMESPACE, PARTITIONS, idle_close_ms=0)
    want = await replay_rows(csv_path, tmp_path / "replay", env, PARTITIONS, through_ms)
    assert len(want[2]) >= 5
    pipe = Supervised(tmp_path, env)
    try:
        start_stages(pipe, db.url, csv_path, "--speed", "10")
        await asyncio.sleep(1)
        pipe.check_alive()
        await drain_and_compare(pipe, db, want, env, 120)
        pipe.check_alive()
        assert pipe.restarts == []
    except BaseException:
        print("\n".join(f"redis {n.port}:\n{n.log_tail()}" for n in cluster))
        raise
    finally:
        pipe.close()
