"""The batch path (``Connection.offer_frames`` → ``parse_many`` → deduper runs →
``TickWriter.offer_columns``) against a real Redis stores exactly what the per-frame path
(``handle_frame`` → ``offer``) stores: same ticks, same partitions, same order per symbol,
same counts of duplicates, gaps and bad frames."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.contracts import Tick, TickBatch
from common.names import Keys, partition_of
from ingest.connection import Connection
from ingest.deadletter import DeadLetters
from ingest.metrics import IngestMetrics
from ingest.offline.ticks import synthetic_ticks
from ingest.sequence import TradeDeduper
from ingest.simulator.market import Feed
from ingest.simulator.server import Simulator
from ingest.venues import get_adapter
from ingest.writer import TickWriter
from tests.ingest_samples import BINANCE_TRADE_SELL
from tests.integration.ingest_support import run_until_delivered, sim_settings, stored_ticks

pytestmark = pytest.mark.redis

#: A receive time after every recorded trade (a trade ahead of its receipt is implausible).
_RECV = 1_800_000_000_000_000_000


def _trade(native: str, tid: int) -> str:
    doc = orjson.loads(BINANCE_TRADE_SELL)
    doc["stream"] = native.lower() + "@trade"
    doc["data"] |= {"s": native, "t": tid, "m": tid % 3 == 0, "p": f"{100 + tid % 17}.5"}
    return orjson.dumps(doc).decode()


def _frames() -> list[list[str]]:
    """Batches as a reader would hand them: clean runs of two symbols, then a duplicate, a
    gap, a late fill, a bad frame and an ack mixed in, then clean again."""
    btc, eth = iter(range(1000, 2000)), iter(range(50, 999))
    clean = [[_trade("BTCUSDT" if i % 3 else "ETHUSDT", next(btc) if i % 3 else next(eth))
              for i in range(40)] for _ in range(5)]  # fmt: skip
    b = next(btc)
    messy = [_trade("BTCUSDT", b), _trade("BTCUSDT", b), _trade("BTCUSDT", b + 3),
             '{"result":null,"id":1}', "{broken", _trade("BTCUSDT", b + 1),
             _trade("BTCUSDT", b + 2), _trade("ETHUSDT", next(eth))]  # fmt: skip
    btc = iter(range(b + 4, 2000))
    return [*clean, messy, [_trade("BTCUSDT", next(btc)) for _ in range(30)], clean[0]]


async def _run(redis: Any, keys: Keys, batched: bool) -> tuple[IngestMetrics, int, int]:
    metrics = IngestMetrics(CollectorRegistry())
    adapter = get_adapter("binance")
    dlq = DeadLetters(redis, keys, consumer="t", dropped=metrics.dlq_dropped)
    async with TickWriter(redis, keys, metrics, batch_size=16, max_pending=64) as w:
        conn = Connection(
            adapter,
            ["BTCUSDT", "ETHUSDT"],
            writer=w,
            deduper=TradeDeduper(window=100, sequential_key=adapter.trade_id_key),
            metrics=metrics,
            dead_letters=dlq,
        )
        columns_offers = 0
        offer_columns = w.offer_columns

        def counting(cols: Any) -> bool:
            nonlocal columns_offers
            columns_offers += 1
            return offer_columns(cols)

        w.offer_columns = counting  # type: ignore[method-assign]
        for batch in _frames():
            if batched:
                if not conn.offer_frames(batch, _RECV):
                    await w.wait_for_space()
            else:
                for frame in batch:
                    await w.put(conn.handle_frame(frame, _RECV))
        conn.publish_metrics()
    return metrics, dlq.pending, columns_offers


async def _stored(redis: Any, keys: Keys) -> dict[int, list[Tick]]:
    out: dict[int, list[Tick]] = {}
    for p in range(keys.partitions):
        entries = await redis.xrange(keys.ticks(p))
        batches = [TickBatch.decode(fields) for _, fields in entries]
        assert all(1 <= len(b) <= 16 for b in batches)
        assert all(len(b.symbols) == len({t.symbol for t in b}) for b in batches)
        out[p] = [t for b in batches for t in b]
    return out


async def test_batch_path_stores_what_the_per_frame_path_stores(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    one, many = Keys(4, namespace + "one:"), Keys(4, namespace + "many:")
    m1, dlq1, _ = await _run(redis_client, one, batched=False)
    m2, dlq2, columns_offers = await _run(redis_client, many, batched=True)
    # Every batch parse_many gave in columns went on in columns: the clean ones accepted
    # by the deduper as runs, the first (it sets the ids' baseline) judged trade by trade
    # yet still in columns; the repeated one, all duplicates, offers nothing; the messy one
    # (an ack, a bad frame) took the exact path frame by frame.
    assert columns_offers == 6
    expected, got = await _stored(redis_client, one), await _stored(redis_client, many)
    assert got == expected
    ticks = [t for p, ts in got.items() for t in ts]
    assert {t.symbol for t in ticks} == {"BTC-USDT", "ETH-USDT"}
    assert all(partition_of("binance", t.symbol, 4) == p for p, ts in got.items() for t in ts)
    btc = [int(t.trade_id) for t in ticks if t.symbol == "BTC-USDT"]
    assert len(btc) == len(set(btc))  # the repeated clean batch and the duplicate: dropped
    for name, labels in [
        ("alphapulse_ingest_frames_total", {"kind": "trade"}),
        ("alphapulse_ingest_frames_total", {"kind": "control"}),
        ("alphapulse_ingest_ticks_total", {}),
        ("alphapulse_ingest_duplicates_total", {}),
        ("alphapulse_ingest_gaps_total", {}),
        ("alphapulse_ingest_missing_trades_total", {}),
        ("alphapulse_ingest_bad_frames_total", {"reason": "invalid_json"}),
    ]:
        assert m2.value(name, exchange="binance", **labels) == m1.value(
            name, exchange="binance", **labels
        ), name
    assert m2.value("alphapulse_ingest_gaps_total", exchange="binance") == 1
    assert m2.value("alphapulse_ingest_duplicates_total", exchange="binance") == 41
    assert dlq1 == dlq2 == 1
    assert m2.value("alphapulse_ingest_written_ticks_total") == len(ticks)


async def test_the_websocket_reader_batches_queued_frames(
    redis_client: aioredis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At speed 0 frames queue up in the socket: the reader takes them as batches (so the
    websockets version in use still exposes its receive queue), and every trade still
    arrives exactly once, in order."""
    feed = Feed.build("binance", synthetic_ticks("binance", 2, 1000.0, seed=5, count=4000))
    calls: list[int] = []
    offer_frames = Connection.offer_frames

    def counting(self: Connection, frames: Any, recv_ts: int) -> bool:
        calls.append(len(frames))
        return offer_frames(self, frames, recv_ts)

    monkeypatch.setattr(Connection, "offer_frames", counting)
    async with Simulator({"binance": feed}, speed=0) as sim:
        metrics = IngestMetrics(CollectorRegistry())
        await run_until_delivered(sim, sim_settings(keys, sim), keys, metrics)
    assert calls and max(calls) > 1
    stored: dict[str, list[str]] = {}
    for t in await stored_ticks(redis_client, keys):
        stored.setdefault(t.native_symbol, []).append(t.trade_id)
    assert stored == {n: [t.trade_id for t in s.ticks] for n, s in feed.symbols.items()}
