"""Connection manager against the simulator and a real Redis: rotation, watchdog, DLQ.

Timings are shortened through the settings (connection age, ping periods, idle timeouts)
so each scenario takes a second or two; no assertion depends on how fast the box is.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from websockets.asyncio.server import ServerConnection, serve

from common.names import Keys
from common.settings import CommonSettings
from ingest import wsclient
from ingest.metrics import IngestMetrics
from ingest.offline.ticks import synthetic_ticks
from ingest.service import IngestService
from ingest.settings import IngestSettings
from ingest.simulator.market import Faults, Feed
from ingest.simulator.server import Simulator
from ingest.simulator.venues import get_server
from tests.conftest import REDIS_URL
from tests.integration.ingest_support import (
    FaultyRedis,
    run_until_delivered,
    sim_settings,
    stored_ticks,
)
from tests.polling import until

pytestmark = [pytest.mark.redis, pytest.mark.slow]


async def _stored_ids(redis: aioredis.Redis, keys: Keys) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in await stored_ticks(redis, keys):
        out.setdefault(t.native_symbol, []).append(t.trade_id)
    return out


async def test_rotation_opens_the_replacement_first_and_dedupes_the_overlap(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    # 1.5 s of trades at 1000/s in real time; connections rotate every 0.3 s
    feed = Feed.build("binance", synthetic_ticks("binance", 2, 1000.0, seed=3, count=1500))
    metrics = IngestMetrics(CollectorRegistry())
    async with Simulator({"binance": feed}, speed=1.0, overlap=40) as sim:
        settings = sim_settings(keys, sim, max_connection_age_s=0.3)
        await run_until_delivered(sim, settings, keys, metrics)
    stored = await _stored_ids(redis_client, keys)
    for native, stream in feed.symbols.items():
        assert stored[native] == [t.trade_id for t in stream.ticks]  # once each, in order
    assert metrics.value("alphapulse_ingest_rotations_total", exchange="binance") >= 2
    assert metrics.value("alphapulse_ingest_duplicates_total", exchange="binance") > 0
    assert metrics.value("alphapulse_ingest_gaps_total", exchange="binance") == 0
    # a rotation is not a reconnect: nothing was lost or re-dialled after a failure
    assert sim.stats.connections == 1 + metrics.value(
        "alphapulse_ingest_rotations_total", exchange="binance"
    )
    assert metrics.value("alphapulse_ingest_connections", exchange="binance") == 0


async def test_rotation_hands_on_the_whole_backlog_of_the_old_session_first(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    # The old session is far behind when it is retired: Redis refuses writes, so its reader
    # waits for the writer with thousands of trades received and more still queued in the
    # socket, behind the exchange's answer to our close frame, and it stays held back after
    # the close. Every one of those trades must still be written, and before the
    # replacement's: in order, the overlap dropped as duplicates, no gap counted, however
    # long the writer held the reader (no timer may cut the drain short).
    backlog, overlap = wsclient._HIGH_WATER * 3, 40
    ticks = list(synthetic_ticks("binance", 1, 1000.0, seed=7, count=backlog + 500))
    exchange = get_server("binance")
    head = 0  # trades the exchange has sent (its market)
    retired = asyncio.Event()  # the exchange saw the first connection closed

    async def handler(ws: ServerConnection) -> None:
        # Binance's protocol (the simulator's server half), on a market paced by hand: the
        # first connection gets `backlog` trades at once, every later one the last `overlap`
        # trades again (a reconnect's overlap) and the rest.
        nonlocal head
        session = exchange.session()
        session.on_connect(ws.request.path if ws.request is not None else "/stream")
        async for message in ws:
            reply = session.handle(message)
            for frame in reply.frames:
                await ws.send(frame)
            if reply.subscribed:
                break
        start, end = max(0, head - overlap), backlog if head == 0 else len(ticks)
        for frame in session.render_trades(ticks[start:end]):
            await ws.send(frame)  # into its write buffer at once (write_limit below)
        head = max(head, end)
        await ws.wait_closed()
        if end == backlog:
            retired.set()

    metrics = IngestMetrics(CollectorRegistry())
    faulty = FaultyRedis(aioredis.Redis.from_url(REDIS_URL), down=True)
    async with serve(handler, "127.0.0.1", 0, compression=None, write_limit=1 << 30) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        settings = IngestSettings(
            common=CommonSettings(partitions=keys.partitions, namespace=keys.namespace),
            exchanges=(("binance", (ticks[0].native_symbol,)),),
            urls=(("binance", f"ws://127.0.0.1:{port}/stream"),),
            max_connection_age_s=0.2,
            batch_size=50,
            queue_bound=200,
            flush_ms=2.0,
        )
        service = IngestService(settings, faulty, metrics=metrics, keys=keys)
        async with service:
            run = asyncio.create_task(service.run())
            try:
                await asyncio.wait_for(retired.wait(), 30)
                waits = metrics.value("alphapulse_ingest_backpressure_waits_total")
                assert waits >= 1 and service.writer.written == 0  # the reader was held back
            finally:  # Redis comes back even when an assertion failed (else the exit waits)
                faulty.down = False
            await until(lambda: service.writer.written >= len(ticks), "every trade written")
            service.request_stop()
            await asyncio.wait_for(run, 10)
    stored = await _stored_ids(redis_client, keys)
    assert stored[ticks[0].native_symbol] == [t.trade_id for t in ticks]  # once each, in order
    assert metrics.value("alphapulse_ingest_gaps_total", exchange="binance") == 0
    assert metrics.value("alphapulse_ingest_duplicates_total", exchange="binance") >= overlap
    assert metrics.value("alphapulse_ingest_rotations_total", exchange="binance") >= 1


async def test_timed_drops_reconnect_with_backoff_and_lose_nothing(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    # Kraken (sequential ids), 1.2 s of trades in real time, every connection cut at 0.25 s.
    # The overlap (trades a new subscription gets again) must cover the trades in flight when a
    # connection is cut: sent by the simulator, not yet read by ingest. With 20 a loaded CI
    # machine once lagged by more (a real gap of 12 trades, counted, never backfilled here).
    feed = Feed.build("kraken", synthetic_ticks("kraken", 3, 500.0, seed=9, count=600))
    metrics = IngestMetrics(CollectorRegistry())
    faults = Faults(drop_every_s=0.25)
    async with Simulator({"kraken": feed}, speed=1.0, overlap=60, faults=faults) as sim:
        settings = sim_settings(keys, sim)
        await run_until_delivered(sim, settings, keys, metrics)
    stored = await _stored_ids(redis_client, keys)
    for native, stream in feed.symbols.items():
        assert stored[native] == [t.trade_id for t in stream.ticks]
    drops = metrics.value("alphapulse_ingest_reconnects_total", exchange="kraken", reason="dropped")
    assert drops >= 2 and sim.stats.drops >= drops
    assert metrics.value("alphapulse_ingest_gaps_total", exchange="kraken") == 0


async def test_quiet_symbol_is_kept_alive_by_pongs_not_trades(keys: Keys) -> None:
    # OKX: text pings; the symbol never trades; idle timeout well below the test's length
    feed = Feed.build("okx", synthetic_ticks("okx", 1, 10.0, count=5))
    metrics = IngestMetrics(CollectorRegistry())
    async with Simulator({"okx": feed}, speed=1.0) as sim:
        settings = sim_settings(
            keys, sim, exchanges=(("okx", ("DOGE-USDT",)),), ping_interval_s=0.1, idle_timeout_s=0.4
        )
        service = IngestService(
            settings, aioredis.Redis.from_url(REDIS_URL), metrics=metrics, keys=keys
        )
        async with service:
            run = asyncio.create_task(service.run())
            frames = "alphapulse_ingest_frames_total"
            conn = service.connections[0]

            def pongs() -> float:
                conn.publish_metrics()
                return metrics.value(frames, exchange="okx", kind="control")

            await until(lambda: pongs() >= 12, "a dozen acks/pongs")  # > 1 s of silence
            service.request_stop()
            await run
    assert sim.stats.connections == 1
    assert metrics.value("alphapulse_ingest_ticks_total", exchange="okx") == 0
    assert sum(metrics.value("alphapulse_ingest_reconnects_total", exchange="okx", reason=r)
               for r in ("silent", "dropped", "closed")) == 0  # fmt: skip


@pytest.mark.parametrize("exchange", ["okx", "binance"])
async def test_stalled_connection_is_replaced_and_nothing_is_lost(
    redis_client: aioredis.Redis, keys: Keys, exchange: str
) -> None:
    # The simulator hangs (no trades, no pongs, socket not read) 0.3 s into every
    # connection and cuts it 1 s later: the watchdog must give up on it first. OKX is
    # caught by the idle timeout on its text pongs, Binance (no text ping) by the
    # WebSocket keepalive's pong timeout.
    feed = Feed.build(exchange, synthetic_ticks(exchange, 2, 500.0, seed=5, count=600))
    metrics = IngestMetrics(CollectorRegistry())
    faults = Faults(stall_every_s=0.3, stall_for_s=1.0)
    async with Simulator({exchange: feed}, speed=1.0, overlap=30, faults=faults) as sim:
        kw = (
            {"ping_interval_s": 0.05, "idle_timeout_s": 0.3}
            if exchange == "okx"
            else {"ws_ping_interval_s": 0.05, "ws_ping_timeout_s": 0.3}
        )
        settings = sim_settings(keys, sim, **kw)
        await run_until_delivered(sim, settings, keys, metrics)
    stored = await _stored_ids(redis_client, keys)
    for native, stream in feed.symbols.items():
        assert stored[native] == [t.trade_id for t in stream.ticks]
    reason = "silent" if exchange == "okx" else "ping_timeout"
    assert (
        metrics.value("alphapulse_ingest_reconnects_total", exchange=exchange, reason=reason) >= 1
    )
    assert sim.stats.stalls >= 1


async def test_bad_frames_are_dead_lettered_with_their_reason(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    feed = Feed.build("binance", synthetic_ticks("binance", 1, 1000.0, count=60))
    metrics = IngestMetrics(CollectorRegistry())
    async with Simulator({"binance": feed}, speed=0, faults=Faults(malformed_every=20)) as sim:
        settings = sim_settings(keys, sim)
        await run_until_delivered(sim, settings, keys, metrics)
    entries = await redis_client.xrange(keys.dlq("ingest"))
    assert len(entries) == sim.stats.malformed_frames == 3
    reasons = sorted(fields[b"reason"] for _, fields in entries)
    assert reasons == [b"invalid_json", b"invalid_json", b"non_positive"]
    for _, fields in entries:
        assert fields[b"stream"] == b"ingest" and fields[b"exchange"] == b"binance"
        assert int(fields[b"frame_bytes"]) == len(fields[b"frame"])  # short: not truncated
        assert fields[b"error"]
    assert sum(len(v) for v in (await _stored_ids(redis_client, keys)).values()) == 60


class _BrokenPipelines:
    """A client whose pipelines fail with a bug (not a Redis error): nothing to retry."""

    def __init__(self, inner: aioredis.Redis) -> None:
        self.inner = inner

    def pipeline(self, transaction: bool = True) -> Any:
        raise TypeError("a bug in the write path")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_failing_writer_ends_the_service_with_its_error(keys: Keys) -> None:
    feed = Feed.build("binance", synthetic_ticks("binance", 1, 1000.0, count=50))
    async with Simulator({"binance": feed}, speed=0) as sim:
        settings = sim_settings(keys, sim)
        broken = _BrokenPipelines(aioredis.Redis.from_url(REDIS_URL))
        service = IngestService(settings, broken, metrics=IngestMetrics(CollectorRegistry()))
        async with service:
            with pytest.raises(ExceptionGroup) as err:
                await asyncio.wait_for(service.run(), 30)
    assert err.group_contains(TypeError, match="a bug in the write path")


async def test_redis_outage_pauses_the_sockets_and_loses_nothing(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    # Redis refuses writes until the writer's buffer (200 ticks) is full and readers wait;
    # then it comes back. Every trade must still arrive exactly once, in order.
    feed = Feed.build("binance", synthetic_ticks("binance", 2, 1000.0, seed=11, count=3000))
    metrics = IngestMetrics(CollectorRegistry())
    faulty = FaultyRedis(aioredis.Redis.from_url(REDIS_URL), down=True)
    async with Simulator({"binance": feed}, speed=0) as sim:
        settings = sim_settings(keys, sim, batch_size=50, queue_bound=200)
        service = IngestService(settings, faulty, metrics=metrics, keys=keys)
        async with service:
            run = asyncio.create_task(service.run())
            waits = "alphapulse_ingest_backpressure_waits_total"
            try:
                # both, in either order: the reader can fill the buffer before the first
                # flush is even tried
                await until(
                    lambda: metrics.value(waits) >= 1 and faulty.failures >= 1,
                    "a reader held back by a writer that failed to write",
                )
                assert service.writer.pending <= 200 + 1  # the bound, plus one frame's trades
                assert service.writer.written == 0
            finally:  # Redis comes back even when an assertion failed: else the exit waits
                faulty.down = False  # for the writer to drain, forever
            await asyncio.wait_for(sim.wait_finished(), 30)
            await until(lambda: service.writer.written >= 3000, "every trade written")
            service.request_stop()
            await asyncio.wait_for(run, 10)
    stored = await _stored_ids(redis_client, keys)
    for native, stream in feed.symbols.items():
        assert stored[native] == [t.trade_id for t in stream.ticks]
    assert metrics.value("alphapulse_ingest_writer_errors_total") >= 1
    assert metrics.value("alphapulse_ingest_backpressure_seconds_total") > 0
