"""The tick writer on a local 3-master Redis Cluster: every entry and its symbols' last
written ids land through ``append.lua`` (sent with EVALSHA in a cluster pipeline), and what
is remembered is each symbol's last trade of what was written, also for an entry holding
many interleaved symbols (one packed last-id argument).

Independent of the end-to-end cluster test, which also needs the offline replay to pass."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio.cluster import RedisCluster

from common.contracts import Tick, TickBatch
from common.names import Keys
from ingest.lastwritten import load_last_written
from ingest.metrics import IngestMetrics
from ingest.writer import TickWriter
from tests.integration.e2e_support import RedisNode
from tests.integration.test_e2e_cluster import cluster, master_of

pytestmark = [pytest.mark.redis, pytest.mark.slow]
__all__ = ["cluster"]  # the fixture, imported for its use below

SYMBOLS = [f"S{i:03d}-USDT" for i in range(200)]


async def test_cluster_writer_remembers_each_symbols_last_written_id(
    cluster: list[RedisNode],
) -> None:
    port = cluster[0].port
    keys = Keys(namespace="wcluster:", partitions=6)
    assert len({master_of(port, keys.ticks(p)) for p in range(6)}) == 3
    redis = RedisCluster(host="127.0.0.1", port=port)
    metrics = IngestMetrics(CollectorRegistry())
    ticks = [
        Tick("binance", s, s.replace("-", ""), str(100 + r), 1.0, 1.0, "buy", r * 1000 + i, 0)
        for r in range(12)
        for i, s in enumerate(SYMBOLS)
    ]
    try:
        async with TickWriter(redis, keys, metrics, batch_size=500,
                              sequential=frozenset({"binance"})) as w:  # fmt: skip
            await w.put(ticks)
        written: dict[str, Tick] = {}
        for p in range(keys.partitions):
            for _, fields in await redis.xrange(keys.ticks(p)):
                for t in TickBatch.decode(fields):
                    written[t.symbol] = t  # in order: the last one written wins
        assert len(written) == len(SYMBOLS)
        got = await load_last_written(redis, keys, "binance", SYMBOLS)
        assert {s: (v.trade_id, v.ts) for s, v in got.items()} == {
            s: (int(t.trade_id), t.ts) for s, t in written.items()
        }
        assert all(v.trade_id == 111 for v in got.values())
    finally:
        await redis.aclose()
