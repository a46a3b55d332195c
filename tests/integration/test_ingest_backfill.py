"""Trades lost with a killed ingest are counted after the restart and backfilled from the
exchange's REST history (the simulator serves it), on real Redis.

Each test runs ingest twice on one namespace, as a process manager restarting it would: the
first run writes the first trades of a recorded session; the second starts with nothing in
memory but what Redis holds, against a simulator whose market has moved on by ``LOST``
trades the first run never wrote (they were in the killed process, or due while it was
down). Before the last-written ids were kept in Redis the second run took its first trade as
a new baseline: ``gaps_total`` stayed 0 and the trades were silently gone.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.contracts import Tick
from common.names import Keys
from ingest.metrics import IngestMetrics
from ingest.offline.ticks import as_exchange, read_ticks
from ingest.simulator.market import Faults, Feed
from ingest.simulator.server import Simulator
from tests.integration.ingest_support import run_until_delivered, sim_settings, stored_ticks

pytestmark = [pytest.mark.redis]

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BTC = DATA / "binance-spot-btcusdt-20240808.rec.gz"
FIRST, LOST, AFTER = 1000, 200, 800  # trades written, lost, then streamed after the restart


def _session(exchange: str) -> list[Tick]:
    ticks = list(itertools.islice(read_ticks(BTC), FIRST + LOST + AFTER))
    if exchange == "binance-futures":  # the same trades as the BTCUSDT perpetual
        return [Tick(exchange, "BTC-USDT-PERP", "BTCUSDT", *t[3:]) for t in ticks]
    return ticks if exchange == "binance" else list(as_exchange(ticks, exchange))


async def _run(
    feed: Feed, keys: Keys, metrics: IngestMetrics, expect_written: int, *, backfill: bool,
    faults: Faults | None = None, start_at: int = 0,
) -> None:  # fmt: skip
    """One ingest run against a simulator serving ``feed`` from trade ``start_at`` on (the
    market's head: trades before it are history only), until ``expect_written`` ticks."""
    for stream in feed.symbols.values():
        stream.head = start_at
    async with Simulator({feed.exchange: feed}, speed=0, overlap=0, faults=faults) as sim:
        rest = ((feed.exchange, sim.rest_url(feed.exchange)),) if backfill else ()
        settings = sim_settings(keys, sim, rest_urls=rest, backfill_timeout_s=20.0)
        await run_until_delivered(sim, settings, keys, metrics, expect_written)


async def _restarted(
    keys: Keys, feed: Feed, expect_written: int, *, backfill: bool, start_at: int,
    faults: Faults | None = None,
) -> IngestMetrics:  # fmt: skip
    """Ingest run twice on one namespace: the first writes the session's first ``FIRST``
    trades; the second (its metrics returned) serves ``feed`` from ``start_at`` on."""
    first = IngestMetrics(CollectorRegistry())
    await _run(_first_run_feed(feed.exchange), keys, first, FIRST, backfill=backfill)
    assert first.value("alphapulse_ingest_gaps_total", exchange=feed.exchange) == 0
    metrics = IngestMetrics(CollectorRegistry())
    await _run(feed, keys, metrics, expect_written, backfill=backfill, faults=faults,
               start_at=start_at)  # fmt: skip
    return metrics


def _first_run_feed(exchange: str) -> Feed:
    return Feed.build(exchange, _session(exchange)[:FIRST])


@pytest.mark.parametrize("exchange", ["binance", "binance-futures", "kraken"])
async def test_a_restart_counts_the_lost_trades_and_backfills_them(
    exchange: str, redis_client: aioredis.Redis, keys: Keys
) -> None:
    session = _session(exchange)
    feed = Feed.build(exchange, session)
    metrics = await _restarted(keys, feed, LOST + AFTER, backfill=True, start_at=FIRST + LOST)

    v = metrics.value
    assert v("alphapulse_ingest_gaps_total", exchange=exchange) == 1
    assert v("alphapulse_ingest_missing_trades_total", exchange=exchange) == LOST
    assert v("alphapulse_ingest_backfill_recovered_trades_total", exchange=exchange) == LOST
    assert v("alphapulse_ingest_backfill_unrecovered_trades_total", exchange=exchange) == 0
    assert v("alphapulse_ingest_backfill_requests_total", exchange=exchange) >= 1
    stored = await stored_ticks(redis_client, keys)
    assert [t.trade_id for t in stored] == [t.trade_id for t in session]  # all, in id order
    assert [(t.price, t.qty, t.side, t.ts) for t in stored] == [
        (t.price, t.qty, t.side, t.ts) for t in session
    ]


async def test_with_the_rest_endpoint_down_the_loss_is_counted_exactly(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    session = _session("binance")
    metrics = await _restarted(keys, Feed.build("binance", session), AFTER, backfill=True,
                               start_at=FIRST + LOST, faults=Faults(rest_down=True))  # fmt: skip

    v = metrics.value
    assert v("alphapulse_ingest_gaps_total", exchange="binance") == 1
    assert v("alphapulse_ingest_missing_trades_total", exchange="binance") == LOST
    assert v("alphapulse_ingest_backfill_recovered_trades_total", exchange="binance") == 0
    assert v("alphapulse_ingest_backfill_unrecovered_trades_total", exchange="binance") == LOST
    assert v("alphapulse_ingest_backfill_failures_total", exchange="binance", reason="http") == 1
    # the held live trades were released: everything but the lost trades is stored, in order
    stored = [t.trade_id for t in await stored_ticks(redis_client, keys)]
    assert stored == [t.trade_id for t in session[:FIRST] + session[FIRST + LOST :]]


async def test_without_backfill_a_restart_still_counts_the_gap(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    session = _session("binance")
    metrics = await _restarted(keys, Feed.build("binance", session), AFTER, backfill=False,
                               start_at=FIRST + LOST)  # fmt: skip
    v = metrics.value
    assert v("alphapulse_ingest_gaps_total", exchange="binance") == 1
    assert v("alphapulse_ingest_missing_trades_total", exchange="binance") == LOST
    assert v("alphapulse_ingest_backfill_unrecovered_trades_total", exchange="binance") == LOST
    assert v("alphapulse_ingest_backfill_requests_total", exchange="binance") == 0
    assert len(await stored_ticks(redis_client, keys)) == FIRST + AFTER


async def test_a_restart_drops_what_the_previous_run_wrote(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    """The new subscription repeats trades the killed run had written (an exchange's
    snapshot, a reconnect overlap): below the remembered id they are duplicates."""
    session = _session("binance")
    metrics = await _restarted(keys, Feed.build("binance", session[: FIRST + LOST]), LOST,
                               backfill=False, start_at=FIRST - 300)  # fmt: skip
    assert metrics.value("alphapulse_ingest_duplicates_total", exchange="binance") == 300
    assert metrics.value("alphapulse_ingest_gaps_total", exchange="binance") == 0
    stored = [t.trade_id for t in await stored_ticks(redis_client, keys)]
    assert stored == [t.trade_id for t in session[: FIRST + LOST]]
