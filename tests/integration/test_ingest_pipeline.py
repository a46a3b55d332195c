"""Simulator → ingest → real Redis, two exchanges at once, with faults injected.

Binance replays the recorded BTCUSDT session; Kraken replays a normalized trades CSV built
here from the recorded ETHUSDT session (re-spelled as Kraken's ``ETH/USDT``). The simulator
cuts every connection after a number of frames, injects malformed and duplicated frames and
removes trades (gaps). Every trade the simulator serves must land in ``ticks:{p}`` exactly
once, in order per symbol, and the gaps counted must be exactly the trades removed.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.contracts import Tick
from common.names import Keys
from ingest.metrics import IngestMetrics
from ingest.offline.ticks import as_exchange, read_ticks, write_trades_csv
from ingest.simulator.market import Faults, Feed
from ingest.simulator.server import Simulator
from tests.integration.ingest_support import run_until_delivered, sim_settings, stored_ticks

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BTC = DATA / "binance-spot-btcusdt-20240808.rec.gz"
ETH = DATA / "binance-spot-ethusdt-20240808.rec.gz"
N_BTC, N_ETH = 3000, 2000


def _feeds(tmp_path: Path, skip_every: int) -> dict[str, Feed]:
    btc = list(itertools.islice(read_ticks(BTC), N_BTC))
    csv_path = tmp_path / "kraken-ethusdt.csv"
    with open(csv_path, "w", encoding="utf-8") as f:
        eth = itertools.islice(read_ticks(ETH), N_ETH)
        write_trades_csv(as_exchange(eth, "kraken"), f)
    kraken = list(read_ticks(csv_path))
    assert len(btc) == N_BTC and len(kraken) == N_ETH
    assert {t.native_symbol for t in kraken} == {"ETH/USDT"}
    return {
        "binance": Feed.build("binance", btc, skip_every=skip_every),
        "kraken": Feed.build("kraken", kraken, skip_every=skip_every),
    }


def _same_trade(a: Tick, b: Tick) -> bool:
    return (a.exchange, a.symbol, a.native_symbol, a.trade_id, a.price, a.qty, a.side, a.ts) == (
        b.exchange, b.symbol, b.native_symbol, b.trade_id, b.price, b.qty, b.side, b.ts
    )  # fmt: skip


async def test_two_exchanges_with_faults_arrive_exactly_once(
    tmp_path: Path, redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    feeds = _feeds(tmp_path, skip_every=397)
    faults = Faults(drop_after_frames=150, malformed_every=101, duplicate_every=67, skip_every=397)
    expected_total = sum(f.total() for f in feeds.values())
    metrics = IngestMetrics(CollectorRegistry())
    async with Simulator(feeds, speed=0, overlap=50, faults=faults, batch=5) as sim:
        settings = sim_settings(keys, sim, batch_size=200)
        await run_until_delivered(sim, settings, keys, metrics)

    stored: dict[tuple[str, str], list[Tick]] = defaultdict(list)
    for t in await stored_ticks(redis_client, keys):
        stored[(t.exchange, t.symbol)].append(t)
    assert set(stored) == {("binance", "BTC-USDT"), ("kraken", "ETH-USDT")}
    assert metrics.value("alphapulse_ingest_written_ticks_total") == expected_total
    for name, feed in feeds.items():
        (native, stream), = feed.symbols.items()  # fmt: skip
        got = stored[(name, stream.ticks[0].symbol)]
        assert len(got) == len(stream.ticks), name
        assert all(_same_trade(a, b) for a, b in zip(got, stream.ticks, strict=True)), name
        ids = [int(t.trade_id) for t in got]
        assert ids == sorted(set(ids)), name  # in order, no repeats
        # every injected gap was counted, and nothing else was
        assert len(feed.skipped) == (N_BTC if name == "binance" else N_ETH) // 397
        assert metrics.value("alphapulse_ingest_gaps_total", exchange=name) == len(feed.skipped)
        assert metrics.value("alphapulse_ingest_missing_trades_total", exchange=name) == len(
            feed.skipped
        )
        assert metrics.value("alphapulse_ingest_reconnects_total", exchange=name,
                             reason="dropped") >= 2  # fmt: skip
        assert metrics.value("alphapulse_ingest_duplicates_total", exchange=name) > 0
        del native

    # every malformed frame was rejected as bad input and dead-lettered
    bad = sum(
        metrics.value("alphapulse_ingest_bad_frames_total", exchange=ex, reason=r)
        for ex in feeds
        for r in ("invalid_json", "non_positive", "missing_field", "bad_type", "unknown_frame")
    )
    assert sim.stats.malformed_frames > 0
    assert bad == sim.stats.malformed_frames
    assert await redis_client.xlen(keys.dlq("ingest")) == sim.stats.malformed_frames
    assert sim.stats.drops >= 4
