"""Sink write path: rows/s into ``ticks`` and ``bars`` next to plain binary COPY (the ceiling)
and ``executemany`` (the naive path), on the same table in the same run.

Every method writes the same rows in batches of ``SINK_BATCH_ROWS`` (5000), one transaction
per batch as the sink does, into the freshly truncated table of a private schema:

* ``sink copy``    — the sink's default ``Store.write``: COPY straight into the table under a
  savepoint, falling back to the staging path on a duplicate or a bad row;
* ``sink copy, columns`` — the same for ticks as the sink holds them (``TickRows``): the
  COPY data built column-wise from the decoded batches (``sink.tickcopy``), inside the timing;
* ``sink staging`` — COPY into a staging table, then ``INSERT … SELECT … ON CONFLICT DO
  NOTHING`` (what ``sink copy`` does for a replayed batch: see ``sink replay``);
* ``sink unnest``  — one ``INSERT … SELECT * FROM unnest($1::t[], …) ON CONFLICT DO NOTHING``;
* ``COPY``        — ``copy_records_to_table`` straight into the table (not idempotent);
* ``executemany`` — ``INSERT … VALUES ($1…) ON CONFLICT DO NOTHING`` row by row (pipelined).

Also: the sink path again over rows already stored (a replay: all duplicates), the whole
sink worker from Redis entries to committed rows, and the pure entry-to-row mapping.
Runs on TimescaleDB (``TIMESCALE_URL``) when set, and on PostgreSQL (``DATABASE_URL``).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from unittest import mock

import asyncpg
import redis.asyncio as aioredis

from common.contracts import Fields, TickBatch
from common.logging import configure_logging
from common.names import Keys
from common.settings import CommonSettings
from sink.rows import DECODERS, TABLES, Row, TickRows, bar_row, tick_rows
from sink.service import SinkService
from sink.store import Store, insert_values_sql
from tests.sink_support import REDIS_URL, make_bar, make_ticks, sink_settings, with_search_path

BATCH = 5000
ENTRY_TICKS = 500  # ticks per ``ticks:{p}`` entry of the tick rounds


def _batches(rows: Sequence[Row]) -> list[Sequence[Row]]:
    return [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]


def _tick_rows(n: int) -> tuple[list[Row], list[TickBatch]]:
    batches = [
        make_ticks(start, ENTRY_TICKS, symbol=f"S{start % 7}") for start in range(0, n, ENTRY_TICKS)
    ]
    return [r for b in batches for r in tick_rows(b)], batches


def _bar_rows(n: int) -> list[Row]:
    return [bar_row(make_bar(i, symbol=f"S{i % 50}")) for i in range(n)]


def _tick_chunks(batches: list[TickBatch]) -> list[Sequence[Row]]:
    """The batches as the sink's ``TickRows``, ``BATCH`` rows a chunk."""
    per = BATCH // ENTRY_TICKS
    return [TickRows(batches[i : i + per]) for i in range(0, len(batches), per)]


async def _timed(
    write: Callable[[Sequence[Row]], Awaitable[object]], chunks: Sequence[Sequence[Row]]
) -> float:
    started = time.perf_counter()
    for chunk in chunks:
        await write(chunk)
    return sum(len(c) for c in chunks) / (time.perf_counter() - started)


async def _bench_table(
    url: str, table: str, rows: list[Row], rounds: int, batches: list[TickBatch] | None = None
) -> None:
    """Each method over ``rows`` (for ticks also from the decoded ``batches`` as the sink
    holds them: ``TickRows``, whose COPY data is built inside the timing)."""
    spec = TABLES[table]
    stores = {m: Store(url, method=m, migrate=False) for m in ("copy", "staging", "unnest")}
    for store in stores.values():
        await store.connect()
    conn = await asyncpg.connect(url)
    values_sql = insert_values_sql(spec)
    naive_rows = rows[: max(BATCH, len(rows) // 5)]  # it is slow: a fifth of the rows is plenty

    async def copy(chunk: Sequence[Row]) -> None:
        await conn.copy_records_to_table(table, records=chunk, columns=spec.columns)

    async def executemany(chunk: Sequence[Row]) -> None:
        await conn.executemany(values_sql, chunk)

    def sink(method: str) -> Callable[[Sequence[Row]], Awaitable[object]]:
        return lambda chunk: stores[method].write({table: chunk})

    chunks = _batches(rows)
    Method = tuple[str, Callable[[Sequence[Row]], Awaitable[object]], Sequence[Sequence[Row]]]
    methods: list[Method] = [
        ("COPY (ceiling)", copy, chunks),
        ("sink copy", sink("copy"), chunks),
        ("sink staging", sink("staging"), chunks),
        ("sink unnest", sink("unnest"), chunks),
        ("executemany", executemany, _batches(naive_rows)),
    ]
    if batches is not None:
        methods.insert(2, ("sink copy, columns", sink("copy"), _tick_chunks(batches)))
    results: dict[str, list[float]] = {name: [] for name, _, _ in methods}
    replay: list[float] = []
    try:
        for r in range(rounds):
            for name, write, data in methods[r:] + methods[:r]:  # rotated: no order bias
                await conn.execute(f"TRUNCATE {table}")
                results[name].append(await _timed(write, data))
            replay.append(await _timed(sink("copy"), chunks))  # every row already there
    finally:
        await conn.close()
        for store in stores.values():
            await store.close()
    med = {name: statistics.median(v) for name, v in results.items()}
    ceiling, naive = med["COPY (ceiling)"], med["executemany"]
    print(f"  {table}: {len(rows)} rows, batches of {BATCH}, median of {rounds}")
    for name, rate in med.items():
        print(
            f"    {name:<18} {rate:>10,.0f} rows/s   {rate / ceiling:6.1%} of COPY   "
            f"{rate / naive:5.1f}x executemany"
        )
    print(f"    {'sink replay':<18} {statistics.median(replay):>10,.0f} rows/s   (all duplicates)")


def _record_path(fields: Fields) -> list[Row]:
    """The sink's ticks decoder before ``TickRows``: a tuple per tick, asyncpg's encoder."""
    return tick_rows(TickBatch.decode(fields))


async def _bench_worker(url: str, batches: list[TickBatch]) -> None:
    """The whole sink: tick entries in Redis -> SinkService (burst) -> committed and acked;
    then the same with the record path as the baseline."""
    rate = await _worker_rate(url, batches)
    with mock.patch.dict(DECODERS, {"ticks": _record_path}):
        baseline = await _worker_rate(url, batches)
    n = sum(len(b) for b in batches)
    print(
        f"  sink worker, Redis -> ticks, end to end: {rate:,.0f} rows/s ({n} rows; "
        f"{rate / baseline:.2f}x the record path: {baseline:,.0f})"
    )


async def _worker_rate(url: str, batches: list[TickBatch]) -> float:
    keys = Keys(partitions=1, namespace=f"bench-{uuid.uuid4().hex[:8]}:")
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        for start in range(0, len(batches), 100):
            async with redis.pipeline(transaction=False) as pipe:
                for b in batches[start : start + 100]:
                    pipe.xadd(keys.ticks(0), b.encode())  # type: ignore[arg-type]
                await pipe.execute()
        settings = sink_settings(url, keys, batch_rows=BATCH, flush_ms=500, migrate=False)
        worker = SinkService(settings, redis=redis, burst=True)
        async with worker:
            started = time.perf_counter()
            await worker.run()
            elapsed = time.perf_counter() - started
        conn = await asyncpg.connect(url)  # the next run stores the same rows again
        await conn.execute("TRUNCATE ticks")
        await conn.close()
        return sum(len(b) for b in batches) / elapsed
    finally:
        await redis.delete(keys.ticks(0))
        await redis.aclose()


def _bench_mapping(batches: list[TickBatch]) -> None:
    """Entries to what the sink sends, pure CPU: COPY data built column-wise (10 entries a
    flush) against the rows asyncpg's record encoder takes (the encoding itself is inside the
    COPY rounds above)."""
    encoded = [b.encode() for b in batches]
    n = sum(len(b) for b in batches)
    started = time.perf_counter()
    for fields in encoded:
        _record_path(fields)
    rows_rate = n / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(0, len(encoded), 10):
        TickRows([TickBatch.decode(f) for f in encoded[i : i + 10]]).copy_data()
    columns_rate = n / (time.perf_counter() - started)
    print(
        f"  entry -> COPY data (decode + column-wise build, pure CPU): {columns_rate:,.0f} "
        f"ticks/s ({columns_rate / rows_rate:.1f}x entry -> rows, decode + map: "
        f"{rows_rate:,.0f})"
    )


async def _bench_server(label: str, base_url: str, quick: bool) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    url = with_search_path(base_url, schema)
    try:
        flavor_store = Store(url)
        await flavor_store.connect()  # migrates the private schema
        flavor = flavor_store.flavor.value
        await flavor_store.close()
        print(f"\n### {label} ({flavor})")
        n_ticks, n_bars, rounds = (20_000, 10_000, 2) if quick else (200_000, 50_000, 3)
        ticks, batches = _tick_rows(n_ticks)
        await _bench_table(url, "ticks", ticks, rounds, batches)
        await _bench_table(url, "bars", _bar_rows(n_bars), rounds)
        await _bench_worker(url, batches)
        _bench_mapping(batches)
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def _main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    servers = [("TimescaleDB", os.environ.get("TIMESCALE_URL", ""))]
    servers.append(
        ("PostgreSQL", os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    )
    for label, url in servers:
        if url:
            await _bench_server(label, url, quick)
        else:
            print(f"\n### {label}: not configured (TIMESCALE_URL unset: run `make provision`)")


def main() -> None:
    configure_logging(CommonSettings.from_env({"LOG_LEVEL": "WARNING"}))
    asyncio.run(_main())


if __name__ == "__main__":
    main()
