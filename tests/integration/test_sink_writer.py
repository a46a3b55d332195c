"""The sink against real PostgreSQL and real TimescaleDB: schema, idempotence, poison rows."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

import pytest
import redis.asyncio as aioredis

from common.columns import encode_bars, encode_events
from common.names import GROUP_SINK, Keys
from sink.migrate import VERSION_TABLE, discover, migrate
from sink.rows import Row, bar_row
from sink.service import SinkService
from sink.store import Rejected, Store
from tests.polling import until
from tests.sink_support import (
    MINUTE,
    Db,
    make_bar,
    make_event,
    make_signal,
    make_ticks,
    sink_settings,
)

pytestmark = pytest.mark.redis


async def run_sink(db: Db, redis: aioredis.Redis, keys: Keys, **overrides: object) -> SinkService:
    """Run a sink in burst mode until every stream is drained, committed and acked."""
    worker = SinkService(sink_settings(db.url, keys, **overrides), redis=redis, burst=True)
    async with worker:
        await worker.run()
    return worker


async def publish_all(redis: aioredis.Redis, keys: Keys) -> None:
    """Two tick partitions, bars, pattern events and signals: every table the sink fills."""
    await redis.xadd(keys.ticks(0), make_ticks(0, 300).encode())  # type: ignore[arg-type]
    await redis.xadd(keys.ticks(1), make_ticks(0, 200, symbol="ETHUSDT").encode())  # type: ignore[arg-type]
    for i in range(20):
        await redis.xadd(keys.bars, make_bar(i).encode())  # type: ignore[arg-type]
        await redis.xadd(keys.patterns, make_event(i).encode())  # type: ignore[arg-type]
        await redis.xadd(keys.signals, make_signal(i))  # type: ignore[arg-type]


async def dead_letters(redis: aioredis.Redis, stream: str) -> list[dict[bytes, bytes]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(stream)  # type: ignore[assignment]
    return [fields for _, fields in entries]


async def pending(redis: aioredis.Redis, stream: str) -> int:
    info = await redis.xpending(stream, GROUP_SINK)
    return int(info["pending"])


async def test_migrations_make_hypertables_only_on_timescaledb(db: Db) -> None:
    conn = await db.connect()
    try:
        assert (await migrate(conn)).hypertables == (db.kind == "timescale")
        await migrate(conn)  # safe to re-run: nothing applied twice
        versions = [r["version"] for r in await conn.fetch(f"SELECT version FROM {VERSION_TABLE}")]
        assert sorted(versions) == sorted({f.version for f in discover()})
        has_ts = await conn.fetchval(
            "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'"
        )
        if db.kind == "timescale":
            hyper = await conn.fetch(
                "SELECT hypertable_name FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = $1",
                db.schema,
            )
            assert {r["hypertable_name"] for r in hyper} == {
                "ticks", "bars", "patterns", "signals", "outcomes",
            }  # fmt: skip
        else:
            assert has_ts == 0
            brin = await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND indexdef LIKE '%brin%'",
                db.schema,
            )
            assert {r["indexname"] for r in brin} >= {"ticks_time_brin", "bars_open_time_brin"}
    finally:
        await conn.close()


async def test_migrate_command(db: Db) -> None:
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "common.cli", "migrate", "--database-url", db.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    flavor = "apache" if db.kind == "timescale" else "plain"
    assert f"schema up to date ({flavor})" in out.stdout
    assert len(await db.fetch(f"SELECT * FROM {VERSION_TABLE}")) == len(
        {f.version for f in discover()}
    )


async def test_v1_and_columnar_entries_of_the_same_records_store_each_row_once(
    db: Db, redis_client: aioredis.Redis, keys: Keys
) -> None:
    """An upgrade with v1 entries still in the streams, and a detector that crashed before its
    checkpoint and wrote the same records again, now columnar and grouped differently."""
    bars = [make_bar(i) for i in range(20)]
    events = [make_event(i) for i in range(20)]
    for bar, event in zip(bars[:12], events[:12], strict=True):
        await redis_client.xadd(keys.bars, bar.encode())  # type: ignore[arg-type]
        await redis_client.xadd(keys.patterns, event.encode())  # type: ignore[arg-type]
    for a, b in ((8, 15), (15, 20)):  # overlapping what v1 wrote, then the rest
        for fields in encode_bars(bars[a:b]):
            await redis_client.xadd(keys.bars, fields)  # type: ignore[arg-type]
        for fields in encode_events(events[a:b]):
            await redis_client.xadd(keys.patterns, fields)  # type: ignore[arg-type]
    worker = await run_sink(db, redis_client, keys)
    assert await db.count("bars") == (20, 20)
    assert await db.count("patterns") == (40, 40)
    for stream in worker.streams:
        assert await pending(redis_client, stream) == 0
    stored = await db.fetch("SELECT * FROM bars ORDER BY open_time")
    assert [tuple(r.values()) for r in stored] == [bar_row(b) for b in bars]


async def test_replaying_the_same_entries_stores_each_row_once(
    db: Db, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await publish_all(redis_client, keys)
    first = await run_sink(db, redis_client, keys)
    expected = {"ticks": 500, "bars": 20, "patterns": 40, "signals": 20}
    for table, n in expected.items():
        assert await db.count(table) == (n, n), table
    # The same entries again (a replay after a crash, a second producer run...).
    await publish_all(redis_client, keys)
    second = await run_sink(db, redis_client, keys)
    for table, n in expected.items():
        assert await db.count(table) == (n, n), table
    for stream in first.streams:
        assert await pending(redis_client, stream) == 0
    assert second.batches > 0
    bar = (await db.fetch("SELECT * FROM bars WHERE open_time = to_timestamp($1)", 1_723_161_240))[
        0
    ]
    assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["trades"]) == (
        100.0, 101.0, 99.0, 100.5, 40,
    )  # fmt: skip
    sig = (await db.fetch("SELECT * FROM signals ORDER BY time LIMIT 1"))[0]
    assert sig["direction"] == "long" and sig["score"] == 0.8 and sig["model"] == "abc123"


@pytest.mark.parametrize("method", ["copy", "staging", "unnest"])
async def test_poison_row_is_dead_lettered_and_the_rest_stored(
    db: Db, redis_client: aioredis.Redis, keys: Keys, method: str
) -> None:
    for i in range(10):
        # Bar 4 has low > high: it decodes, but violates bars_ohlc_check.
        await redis_client.xadd(keys.bars, make_bar(i, low=150.0 if i == 4 else 99.0).encode())  # type: ignore[arg-type]
    batch = make_ticks(0, 50)
    batch.records["price"][17] = -1.0  # one tick of the batch breaks ticks_price_check
    await redis_client.xadd(keys.ticks(0), batch.encode())  # type: ignore[arg-type]
    await redis_client.xadd(keys.signals, make_signal(1, score=7.5))  # type: ignore[arg-type]
    await redis_client.xadd(keys.signals, make_signal(2))  # type: ignore[arg-type]
    await redis_client.xadd(keys.bars, {b"v": b"1", b"d": b"not json"})  # does not decode

    await run_sink(db, redis_client, keys, write_method=method)

    assert await db.count("bars") == (9, 9)
    assert await db.count("ticks") == (49, 49)
    assert await db.count("signals") == (1, 1)
    assert not await db.fetch("SELECT 1 FROM ticks WHERE trade_id = '17'")
    dead_bars = await dead_letters(redis_client, keys.dlq(keys.bars))
    rejected = [f for f in dead_bars if f.get(b"reason") == b"rejected_row"]
    assert len(rejected) == 1 and b"bars_ohlc_check" in rejected[0][b"error"]
    assert b'"low":150.0' in rejected[0][b"row"]
    assert any(f[b"reason"] == b"bar" for f in dead_bars)  # the undecodable entry
    dead_ticks = await dead_letters(redis_client, keys.dlq(keys.ticks(0)))
    assert len(dead_ticks) == 1 and b'"trade_id":"17"' in dead_ticks[0][b"row"]
    dead_signals = await dead_letters(redis_client, keys.dlq(keys.signals))
    assert len(dead_signals) == 1 and b"signals_score_check" in dead_signals[0][b"error"]
    for stream in (keys.bars, keys.ticks(0), keys.signals):
        assert await pending(redis_client, stream) == 0


@pytest.mark.parametrize("method", ["copy", "staging", "unnest"])
async def test_a_row_that_cannot_be_encoded_is_dead_lettered_and_the_rest_stored(
    db: Db, redis_client: aioredis.Redis, keys: Keys, method: str
) -> None:
    # Issue 11 item 4: a pattern value beyond int4 made asyncpg raise OverflowError while
    # encoding the COPY — not a rejection the sink isolated — and the batch never committed.
    poison = {7: 2**31, 12: 1e300}  # beyond int4; beyond 64 bits once read as an integer
    for i in range(20):
        patterns = {"CDLHAMMER": poison.get(i, 100), "CDLDOJI": -100}
        await redis_client.xadd(keys.patterns, make_event(i, patterns).encode())  # type: ignore[arg-type]
        await redis_client.xadd(keys.bars, make_bar(i).encode())  # type: ignore[arg-type]
    await redis_client.xadd(keys.signals, make_signal(1))  # type: ignore[arg-type]

    await asyncio.wait_for(run_sink(db, redis_client, keys, write_method=method), 60)

    assert await db.count("patterns") == (38, 38)
    assert await db.count("bars") == (20, 20)
    assert await db.count("signals") == (1, 1)
    dead = await dead_letters(redis_client, keys.dlq(keys.patterns))
    assert [f[b"reason"] for f in dead] == [b"rejected_row"] * 2
    rows = sorted(f[b"row"] for f in dead)
    assert all(b"CDLHAMMER" in r for r in rows)
    assert any(b'"value":2147483648' in r for r in rows)
    # JSON cannot hold the second value as a number: the dead letter keeps it as text
    assert any(b'"value":"1000000000000000052504760255204420248704468' in r for r in rows)
    for stream in (keys.patterns, keys.bars, keys.signals):
        assert await pending(redis_client, stream) == 0


@pytest.mark.parametrize("method", ["copy", "staging", "unnest"])
async def test_store_is_idempotent_and_reports_rejected_rows_by_index(db: Db, method: str) -> None:
    store = Store(db.url, method=method)
    await store.connect()
    try:
        rows = [bar_row(make_bar(i, low=500.0 if i in (2, 5) else 99.0)) for i in range(8)]
        rejected = await store.write({"bars": rows})
        assert [i for i, _ in rejected["bars"]] == [2, 5]
        # The same rows again, plus two new ones: only the new ones are added.
        more = [bar_row(make_bar(i)) for i in range(6, 10)]
        rejected = await store.write(
            {"bars": [r for i, r in enumerate(rows) if i not in (2, 5)] + more}
        )
        assert rejected == {}
        assert store.fallbacks == (2 if method == "copy" else 0)
    finally:
        await store.close()
    assert await db.count("bars") == (8, 8)


async def test_retention_drops_only_old_rows(
    db: Db, redis_client: aioredis.Redis, keys: Keys
) -> None:
    """drop_chunks on TimescaleDB (Apache edition), DELETE on plain PostgreSQL."""
    now_ms = int(time.time() * 1000) // MINUTE * MINUTE
    recent = [make_bar(0), make_bar(1)]
    recent = [b._replace(open_time=now_ms - k * MINUTE) for k, b in enumerate(recent)]
    for bar in [make_bar(0), make_bar(1), *recent]:  # two from 2024, two from now
        await redis_client.xadd(keys.bars, bar.encode())  # type: ignore[arg-type]
    await run_sink(db, redis_client, keys)
    assert await db.count("bars") == (4, 4)
    worker = SinkService(
        sink_settings(db.url, keys, retention_s={"bars": 30 * 86_400}), redis=redis_client
    )
    async with worker:
        await worker.apply_retention()
    assert await db.count("bars") == (2, 2)
    left = await db.fetch("SELECT min(open_time) AS t FROM bars")
    assert left[0]["t"].timestamp() * 1000 >= now_ms - MINUTE


class BrokenAfterFirstWrite(Store):
    """A store whose database 'goes away' after its first committed batch."""

    writes = 0

    async def write(self, batch: Mapping[str, Sequence[Row]]) -> dict[str, Rejected]:
        self.writes += 1
        if self.writes > 1:
            raise ConnectionResetError("connection lost (simulated)")
        return await super().write(batch)


async def test_stop_during_an_outage_acks_nothing_unstored(
    db: Db, redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = BrokenAfterFirstWrite(db.url)
    settings = sink_settings(db.url, keys, batch_rows=5, retry_max_s=0.2)
    worker = SinkService(settings, redis=redis_client, store=store)
    for i in range(5):
        await redis_client.xadd(keys.bars, make_bar(i).encode())  # type: ignore[arg-type]
    await worker.start()
    run = asyncio.create_task(worker.run())
    await until(lambda: db_has(db, "bars", 5), "the first batch", timeout_s=90, interval_s=0.2)
    async with redis_client.pipeline(transaction=True) as pipe:  # all 7 visible at once
        for i in range(5, 12):
            pipe.xadd(keys.bars, make_bar(i).encode())  # type: ignore[arg-type]
        await pipe.execute()
    await until(
        lambda: has_retried(store, 3), "retries", timeout_s=90, interval_s=0.2
    )  # the outage: retried, not ready
    assert "database" in worker.readiness.unmet()
    for i in range(12, 15):  # arrive during the outage: must not be read
        await redis_client.xadd(keys.bars, make_bar(i).encode())  # type: ignore[arg-type]
    await until(lambda: has_retried(store, 5), "retries", timeout_s=90, interval_s=0.2)
    worker.request_stop()
    await asyncio.wait_for(run, 30)
    await worker.stop()
    assert await db.count("bars") == (5, 5)
    assert await pending(redis_client, keys.bars) == 7  # read once, never acked: redelivered
    groups = await redis_client.xinfo_groups(keys.bars)
    assert groups[0]["entries-read"] == 12  # nothing read past the pending batch


async def db_has(db: Db, table: str, n: int) -> bool:
    return await db.count(table) == (n, n)


async def has_retried(store: BrokenAfterFirstWrite, n: int) -> bool:
    return store.writes >= n
