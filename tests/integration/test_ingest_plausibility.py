"""Ingest against a scripted Binance-shaped server and a real Redis: implausible trades,
invalid UTF-8 and counter publishing (issue 11, items 3, 9, 10).

The server answers the subscribe, sends exactly the frames a test gives it and keeps the
socket open, so each test controls every byte ingest receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from websockets.asyncio.server import ServerConnection, serve

from common.names import Keys
from common.settings import CommonSettings
from ingest.metrics import IngestMetrics
from ingest.service import IngestService
from ingest.settings import IngestSettings
from tests.conftest import REDIS_URL
from tests.integration.ingest_support import stored_ticks
from tests.polling import until

pytestmark = pytest.mark.redis

T0_MS = 1_723_161_255_342  # 2024-08-09, a recorded session's time


def trade(tid: int, t_ms: int) -> bytes:
    return orjson.dumps(
        {
            "stream": "btcusdt@trade",
            "data": {"e": "trade", "E": t_ms, "s": "BTCUSDT", "t": tid, "p": "61837.63",
                     "q": "0.02", "T": t_ms, "m": tid % 2 == 0, "M": True},
        }
    )  # fmt: skip


class ScriptedExchange:
    """Sends ``frames`` (bytes, as text frames) after the subscribe; holds the socket."""

    def __init__(self, frames: Sequence[bytes]) -> None:
        self.frames = frames
        self.connections = 0
        self.release = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.recv()  # the subscribe
        await ws.send('{"result":null,"id":1}')
        for frame in self.frames:
            await ws.send(frame, text=True)
        await self.release.wait()


@asynccontextmanager
async def ingest(
    exchange: ScriptedExchange, keys: Keys, metrics: IngestMetrics
) -> AsyncIterator[IngestService]:
    async with serve(exchange.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        settings = IngestSettings(
            common=CommonSettings(partitions=keys.partitions, namespace=keys.namespace),
            exchanges=(("binance", ("BTCUSDT",)),),
            urls=(("binance", f"ws://127.0.0.1:{port}/stream"),),
            flush_ms=2.0,
        )
        service = IngestService(
            settings, aioredis.Redis.from_url(REDIS_URL), metrics=metrics, keys=keys
        )
        async with service:
            run = asyncio.create_task(service.run())
            try:
                yield service
            finally:
                exchange.release.set()
                service.request_stop()
                await asyncio.wait_for(run, 10)


async def test_implausible_trades_are_dead_lettered_and_move_nothing(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    frames = [trade(i, T0_MS + i) for i in range(1, 21)]
    frames.append(trade(10**15, T0_MS + 21))  # an id jump no elapsed time allows
    frames.append(trade(21, 4_070_908_800_000))  # 2099-01-01: far ahead of its receipt
    frames += [trade(i, T0_MS + i) for i in range(21, 61)]
    metrics = IngestMetrics(CollectorRegistry())
    async with ingest(ScriptedExchange(frames), keys, metrics) as service:
        await until(lambda: service.writer.written >= 60, "the 60 real trades written")
        await until(lambda: service.dead_letters.pending == 0, "dead letters flushed")
    stored = await stored_ticks(redis_client, keys)
    assert [t.trade_id for t in stored] == [str(i) for i in range(1, 61)]
    assert all(t.ts < 2_000_000_000_000_000_000 for t in stored)
    dlq = await redis_client.xrange(keys.dlq("ingest"))
    assert sorted(f[b"reason"] for _, f in dlq) == [b"id_jump", b"time_ahead"]
    for _, fields in dlq:
        tick = orjson.loads(fields[b"frame"])
        assert tick["trade_id"] in {str(10**15), "21"} and fields[b"exchange"] == b"binance"
    for reason in ("id_jump", "time_ahead"):
        assert (
            metrics.value(
                "alphapulse_ingest_implausible_ticks_total", exchange="binance", reason=reason
            )
            == 1
        )
    assert metrics.value("alphapulse_ingest_duplicates_total", exchange="binance") == 0
    assert metrics.value("alphapulse_ingest_missing_trades_total", exchange="binance") == 0
    assert metrics.value("alphapulse_ingest_ticks_total", exchange="binance") == 60


async def test_invalid_utf8_is_invalid_json_and_the_connection_goes_on(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    frames = [trade(i, T0_MS + i) for i in range(1, 51)]
    frames.append(b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"\xff\xfe"}}')
    frames += [trade(i, T0_MS + i) for i in range(51, 101)]
    exchange = ScriptedExchange(frames)
    metrics = IngestMetrics(CollectorRegistry())
    async with ingest(exchange, keys, metrics) as service:
        await until(lambda: service.writer.written >= 100, "all 100 trades written")
        await until(lambda: service.dead_letters.pending == 0, "dead letters flushed")
    assert len(await stored_ticks(redis_client, keys)) == 100
    dlq = await redis_client.xrange(keys.dlq("ingest"))
    assert [f[b"reason"] for _, f in dlq] == [b"invalid_json"]
    assert exchange.connections == 1
    assert (
        metrics.value("alphapulse_ingest_reconnects_total", exchange="binance", reason="dropped")
        == 0
    )


async def test_counters_are_published_while_the_socket_is_quiet(keys: Keys) -> None:
    frames = [trade(i, T0_MS + i) for i in range(1, 11)]
    metrics = IngestMetrics(CollectorRegistry())
    exchange = ScriptedExchange(frames)
    async with ingest(exchange, keys, metrics) as service:
        await until(lambda: service.writer.written >= 10, "the 10 trades written")
        # no further frame arrives: the count must still show up while the socket is open
        await until(
            lambda: metrics.value("alphapulse_ingest_ticks_total", exchange="binance") == 10,
            "ticks_total published without a next frame",
            timeout_s=5.0,
        )
        assert not exchange.release.is_set() and exchange.connections == 1
