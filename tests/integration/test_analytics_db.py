"""``signals.analytics.db.pattern_table`` (the SQL views of migration 0005) equals the file
path's table for the same replay, on plain PostgreSQL and on TimescaleDB."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from common.names import Keys
from detectors.outcomes import OutcomeConfig
from detectors.partition import EngineConfig
from detectors.timeframes import parse_timeframes
from signals.analytics.db import pattern_table, refresh
from signals.analytics.files import stats_of_records
from signals.analytics.stats import StatsOptions
from signals.analytics.table import Filters
from sink.service import SinkService
from tests.outcomes_support import replay_outcomes, write_streams
from tests.sink_support import Db, sink_settings

pytestmark = pytest.mark.redis

CONFIG = EngineConfig(
    timeframes=parse_timeframes("1s,5s"),
    allowed_lateness_ms=1000,
    outcomes=OutcomeConfig((1, 3), cost_bps=0.5),
)
KEYS = ("n", "hits", "hit_rate", "ci_low", "ci_high", "mean_ret", "median_ret", "mean_mfe",
        "mean_mae", "too_few", "base_n", "base_hit_rate", "base_mean_ret", "lift")  # fmt: skip


async def test_sql_pattern_table_equals_the_file_table(
    db: Db, redis_client: aioredis.Redis, keys: Keys
) -> None:
    replayed = replay_outcomes(CONFIG, rate=4.0, seed=8, count=6_000)
    await write_streams(redis_client, keys, replayed)
    # The sink's own refresh off here, so the test sees what an unrefreshed database gives.
    settings = sink_settings(db.url, keys, stats_refresh_s=0)
    worker = SinkService(settings, redis=redis_client, burst=True)
    async with worker:
        await worker.run()

    opts = StatsOptions(min_n=15, cost=0.5 / 1e4, pvalues=False)
    expected = {
        (r["pattern"], r["direction"], r["timeframe"], r["horizon"]): r
        for r in stats_of_records(replayed.lines, replayed.bar_rows, opts)["patterns"]
    }
    conn = await db.connect()
    try:
        stale = await pattern_table(conn, Filters(), opts)  # aggregates not refreshed yet
        await refresh(conn)
        got = await pattern_table(conn, Filters(), opts, fresh=True)
        agg = await pattern_table(conn, Filters(), opts)
        short_1s = await pattern_table(conn, Filters(direction="short", timeframe="1s"), opts)
        by = await pattern_table(conn, Filters(), StatsOptions(by=("exchange", "symbol")))
    finally:
        await conn.close()
    assert stale == []
    assert len(got) == len(agg) == len(expected) > 20
    for source, rows in (("fresh", got), ("aggregated", agg)):
        for row in rows:
            want = expected[(row["pattern"], row["direction"], row["timeframe"], row["horizon"])]
            for k in KEYS:
                if k == "median_ret" and source == "aggregated":
                    assert row[k] is None
                    continue
                assert row[k] == pytest.approx(want[k], rel=1e-9, abs=1e-15), (source, k)
            assert (row["rank"] is None) == (want["rank"] is None)
    assert {(r["exchange"], r["symbol"]) for r in by} == {
        ("binance", "BTC-USDT"),
        ("binance", "ETH-USDT"),
    }
    assert sum(r["n"] for r in by) == sum(r["n"] for r in agg)
    assert short_1s and all(r["direction"] == "short" and r["timeframe"] == "1s" for r in short_1s)
    assert {r["pattern"] for r in short_1s} == {
        k[0] for k in expected if k[1] == "short" and k[2] == "1s"
    }


async def test_the_sink_refreshes_the_aggregates_every_interval(
    db: Db, redis_client: aioredis.Redis, keys: Keys
) -> None:
    """SINK_STATS_REFRESH_S: the sink recomputes the pre-aggregated statistics itself, so the
    console's Patterns page and `stats --db` do not read empty tables (0 turns it off)."""

    async def run_sink(refresh_s: int) -> None:
        settings = sink_settings(db.url, keys, stats_refresh_s=refresh_s)
        async with SinkService(settings, redis=redis_client, burst=True) as worker:
            await worker.run()

    await run_sink(0)  # migrates this test's schema
    conn = await db.connect()
    try:
        await conn.execute(
            "INSERT INTO bars (exchange, symbol, timeframe, open_time, open, high, low, close,"
            " volume, quote_volume, trades, taker_buy_volume, vwap) SELECT 'x', 's', '1m',"
            " to_timestamp(i * 60), 1, 1, 1, 1, 1, 1, 1, 1, 1 FROM generate_series(1, 30) AS i"
        )
        await conn.execute(  # one stored outcome: the baseline covers the horizons stored
            "INSERT INTO outcomes (id, exchange, symbol, timeframe, open_time, horizon, close,"
            " ret, mfe, mae, cost_bps) VALUES ('x:s:1m:60000', 'x', 's', '1m', to_timestamp(60),"
            " 1, 1, 0, 0, 0, 0)"
        )
        for refresh_s, refreshed in ((0, False), (300, True)):
            await run_sink(refresh_s)
            rows = await conn.fetchval("SELECT count(*) FROM baseline_stats_agg")
            assert (rows > 0) is refreshed, (refresh_s, rows)
    finally:
        await conn.close()
