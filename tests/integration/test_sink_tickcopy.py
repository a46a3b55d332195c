"""Ticks as binary COPY data built column-wise (``sink.tickcopy``), against a real server:
what it stores equals what asyncpg's record encoder stores from ``tick_rows``, value for value."""

from __future__ import annotations

import math

import asyncpg

from common.contracts import Tick
from sink import tickcopy
from sink.rows import TICKS, Row, TickRows, tick_rows
from sink.store import copy_rows
from tests.sink_support import Db, decoded_batch, odd_tick_batches

# The ticks table's columns without its constraints: NaN, infinities and odd sides go in.
_TABLE = (
    "(time timestamptz NOT NULL, exchange text NOT NULL, symbol text NOT NULL, "
    "trade_id text NOT NULL, price float8 NOT NULL, qty float8 NOT NULL, side text NOT NULL, "
    "recv_time timestamptz NOT NULL)"
)


async def _stored(conn: asyncpg.Connection, table: str) -> list[Row]:
    rows = await conn.fetch(f"SELECT {TICKS.column_list()} FROM {table}")
    return sorted((tuple(r) for r in rows), key=repr)


async def test_copy_data_stores_exactly_what_the_record_encoder_stores(db: Db) -> None:
    t0 = 1_700_000_000_000_000_000
    many = decoded_batch(
        [Tick("binance", f"S{i % 13}", f"s{i % 13}", str(i), 100 + i / 7, i / 3,
              "buy" if i % 3 else "sell", t0 + i * 1_001, t0 + i * 997)
         for i in range(2_000)]
    )  # fmt: skip
    batches = [*odd_tick_batches(), decoded_batch([]), many]
    rows = TickRows(batches)
    expected = [r for b in batches for r in tick_rows(b)]
    assert len(rows) == len(expected) == 2_006
    conn = await db.connect()
    try:
        await conn.execute(f"CREATE TEMP TABLE by_records {_TABLE}")
        await conn.execute(f"CREATE TEMP TABLE by_columns {_TABLE}")
        await conn.copy_records_to_table("by_records", records=expected, columns=TICKS.columns)
        await copy_rows(conn, "by_columns", TICKS, rows)
        by_records = await _stored(conn, "by_records")
        by_columns = await _stored(conn, "by_columns")
    finally:
        await conn.close()
    assert len(by_columns) == 2_006
    # NaN != NaN: compare the reprs (each row's float fields print the same way).
    assert [repr(r) for r in by_columns] == [repr(r) for r in by_records]
    odd = {r[3]: r for r in by_columns}
    assert odd[""][0].isoformat() == "1969-12-31T23:59:59.999998+00:00"  # -1,999 ns, floored
    assert odd["tid-ünïcode-✓"][1:3] == ("kraken", "XBT/€")
    assert odd["7"][6] == "buy"
    assert math.isnan(odd["tid-ünïcode-✓"][4]) and math.copysign(1, odd["tid-ünïcode-✓"][5]) < 0


async def test_an_empty_copy_stores_nothing(db: Db) -> None:
    assert tickcopy.copy_data([]) == tickcopy.HEADER + tickcopy.TRAILER
    conn = await db.connect()
    try:
        await conn.execute(f"CREATE TEMP TABLE empty_copy {_TABLE}")
        await copy_rows(conn, "empty_copy", TICKS, TickRows([decoded_batch([])]))
        assert await conn.fetchval("SELECT count(*) FROM empty_copy") == 0
    finally:
        await conn.close()
