"""The sink's database shell: idempotent batch writes over one asyncpg connection.

A flush writes the rows of every table in **one transaction**, idempotently: writing the
same rows again (a redelivery after a crash between commit and ack) changes nothing. Methods:

* ``staging`` — binary ``COPY`` into a temporary staging table (``LIKE`` the target, no
  CHECKs, emptied at commit), then ``INSERT INTO t SELECT … FROM staging ON CONFLICT DO
  NOTHING``;
* ``unnest`` — one ``INSERT … SELECT * FROM unnest($1::type[], …) ON CONFLICT DO NOTHING``
  with one array parameter per column;
* ``copy`` (the default) — binary ``COPY`` straight into the table under a savepoint: the
  common case (no row stored before, none bad) at the speed of COPY. If the COPY fails on a
  duplicate key (a replay) or a bad row, the savepoint is rolled back and the rows go through
  the ``staging`` path, whose ``ON CONFLICT DO NOTHING`` skips what is already stored.

Ticks come as ``TickRows``: their COPY data is built column-wise (``sink.tickcopy``) instead of
asyncpg encoding a tuple per tick (``copy_rows``); the bisecting path below takes their tuples.

``tests/bench/bench_sink.py`` measures all three against plain COPY and ``executemany``: the
ON CONFLICT paths run at 40-60 % of COPY on plain PostgreSQL, the ``copy`` path at COPY's speed.

A row the database rejects for a reason other than a duplicate (a CHECK, NOT NULL or range
violation: SQLSTATE classes 22, 23, 54), or that asyncpg cannot encode for its column (an
``OverflowError`` for a pattern value outside int4, a ``TypeError``/``ValueError`` for a value
of the wrong kind, an ``IndexError`` for a short row: raised client-side, in the middle of a
binary COPY, the connection stays usable) fails its whole statement. The table's rows are then
split in halves, each tried under its own savepoint, down to the single rows that fail; those
are returned with their errors (to be dead-lettered) and everything else is committed.
Any other error (connection lost, server shutting down…) propagates: the caller retries the
whole batch later, and nothing of it was committed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
from asyncpg.exceptions import _base as asyncpg_base

from sink import tickcopy
from sink.migrate import Flavor, detect_flavor, migrate
from sink.rows import TABLES, Row, TableSpec, TickRows
from sink.settings import WRITE_METHODS

# Errors that belong to a row, not to the connection or the server.
REJECTED: tuple[type[BaseException], ...] = (
    asyncpg.DataError,  # class 22: out of range, invalid text, NUL byte…
    asyncpg.IntegrityConstraintViolationError,  # class 23: CHECK, NOT NULL
    asyncpg.ProgramLimitExceededError,  # class 54: e.g. a key too large for its index
    asyncpg_base.DataError,  # asyncpg could not encode a value of the row
    # ... and what binary COPY raises for the same while encoding a record client-side:
    OverflowError,  # e.g. 2**31 into an int4 column
    TypeError,  # a value of the wrong kind (a str for a number)
    ValueError,
    IndexError,  # a row shorter than the column list
)
METHODS = WRITE_METHODS
Rejected = list[tuple[int, BaseException]]


def staging_name(spec: TableSpec) -> str:
    return f"alphapulse_stage_{spec.name}"


def insert_from_staging_sql(spec: TableSpec) -> str:
    cols = spec.column_list()
    return (
        f"INSERT INTO {spec.name} ({cols}) SELECT {cols} FROM {staging_name(spec)} "
        "ON CONFLICT DO NOTHING"
    )


def insert_unnest_sql(spec: TableSpec) -> str:
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(spec.types, start=1))
    return (
        f"INSERT INTO {spec.name} ({spec.column_list()}) SELECT * FROM unnest({arrays}) "
        "ON CONFLICT DO NOTHING"
    )


def insert_values_sql(spec: TableSpec) -> str:
    """The naive one-row INSERT (``executemany``): only the benchmark's baseline uses it."""
    params = ", ".join(f"${i}" for i in range(1, len(spec.columns) + 1))
    return (
        f"INSERT INTO {spec.name} ({spec.column_list()}) VALUES ({params}) ON CONFLICT DO NOTHING"
    )


def columns_of(rows: Sequence[Row], width: int) -> list[list[Any]]:
    """Rows to per-column lists (the ``unnest`` parameters)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


async def copy_rows(
    conn: asyncpg.Connection, target: str, spec: TableSpec, rows: Sequence[Row]
) -> None:
    """Binary COPY of ``rows`` (of ``spec``'s table) into ``target``: ``TickRows`` as the
    COPY data they build column-wise, other rows through asyncpg's record encoder."""
    if isinstance(rows, TickRows):
        # A memoryview: asyncpg takes ``bytes`` for a file name, a buffer for the data.
        data = memoryview(rows.copy_data())
        await conn.copy_to_table(target, source=data, columns=tickcopy.COLUMNS, format="binary")
    else:
        await conn.copy_records_to_table(target, records=rows, columns=spec.columns)


class Store:
    """Writes batches of rows; owns one connection (reconnected by ``connect``)."""

    def __init__(
        self,
        url: str,
        *,
        method: str = "copy",
        migrate: bool = True,
        server_settings: Mapping[str, str] | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown write method {method!r}")
        self.url = url
        self.method = method
        self.migrate = migrate
        self.server_settings = dict(server_settings or {})
        self.conn: asyncpg.Connection | None = None
        self.flavor = Flavor.PLAIN
        self._dirty: set[str] = set()
        self.fallbacks = 0  # COPY fast path attempts that fell back to ON CONFLICT
        self.last_fallback: BaseException | None = None

    async def connect(self, connect_timeout_s: float = 10.0) -> asyncpg.Connection:
        """(Re)open the connection, apply migrations (when asked) and prepare staging tables."""
        await self.close()
        conn = await asyncpg.connect(
            self.url, timeout=connect_timeout_s, server_settings=self.server_settings or None
        )
        try:
            if self.migrate:
                self.flavor = await migrate(conn)
                self.migrate = False  # once per process; a reconnect need not repeat it
            else:
                self.flavor = await detect_flavor(conn, create=False)
            if self.method in ("copy", "staging"):
                for spec in TABLES.values():
                    await conn.execute(
                        f"CREATE TEMP TABLE IF NOT EXISTS {staging_name(spec)} "
                        f"(LIKE {spec.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                    )
        except BaseException:
            await conn.close(timeout=2)
            raise
        self.conn = conn
        return conn

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.is_closed()

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=2)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()

    def _live(self) -> asyncpg.Connection:
        if self.conn is None or self.conn.is_closed():
            raise ConnectionError("not connected to PostgreSQL")
        return self.conn

    async def write(self, batch: Mapping[str, Sequence[Row]]) -> dict[str, Rejected]:
        """Write every table's rows in one transaction; return the rows rejected, by table.

        Rejected rows are given by their index in ``batch[table]``.
        """
        conn = self._live()
        rejected: dict[str, Rejected] = {}
        self._dirty.clear()
        async with conn.transaction():
            for table, rows in batch.items():
                if rows and not (self.method == "copy" and await self._copy_direct(table, rows)):
                    bad = await self._isolating(TABLES[table], rows, 0)
                    if bad:
                        rejected[table] = bad
        return rejected

    async def _copy_direct(self, table: str, rows: Sequence[Row]) -> bool:
        """The fast path: COPY into the table itself under a savepoint. False (and nothing
        written) when a row is a duplicate or is rejected: the caller takes the slow path."""
        conn = self._live()
        try:
            async with conn.transaction():
                await copy_rows(conn, table, TABLES[table], rows)
        except REJECTED as e:
            self.fallbacks += 1
            self.last_fallback = e
            return False
        return True

    async def _isolating(self, spec: TableSpec, rows: Sequence[Row], offset: int) -> Rejected:
        """Insert ``rows`` under a savepoint; on a row error, bisect to the bad rows."""
        conn = self._live()
        try:
            async with conn.transaction():  # nested: a savepoint
                await self.insert(spec, rows)
            return []
        except REJECTED as e:
            if len(rows) == 1:
                return [(offset, e)]
            mid = len(rows) // 2
            left = await self._isolating(spec, rows[:mid], offset)
            return left + await self._isolating(spec, rows[mid:], offset + mid)

    async def insert(self, spec: TableSpec, rows: Sequence[Row]) -> None:
        """Insert ``rows`` idempotently with the configured method (no transaction of its own)."""
        conn = self._live()
        if self.method == "unnest":
            await conn.execute(insert_unnest_sql(spec), *columns_of(rows, len(spec.columns)))
            return
        stage = staging_name(spec)
        if stage in self._dirty:  # an earlier part of this transaction left rows there
            await conn.execute(f"TRUNCATE {stage}")
        await copy_rows(conn, stage, spec, rows)
        await conn.execute(insert_from_staging_sql(spec))
        self._dirty.add(stage)

    async def refresh_outcome_stats(self) -> None:
        """Recompute the pre-aggregated outcome statistics (migration 0005's function)."""
        await self._live().execute("SELECT refresh_outcome_stats()")

    # --- retention ---------------------------------------------------------------------
    async def drop_old(self, spec: TableSpec, older_than_s: int, hypertable: bool) -> int:
        """Delete ``spec``'s rows older than ``older_than_s``: ``drop_chunks`` on a hypertable
        (whole chunks, cheap), a plain ``DELETE`` otherwise. Returns chunks or rows removed."""
        conn = self._live()
        age = timedelta(seconds=older_than_s)
        if hypertable:
            n = await conn.fetchval(
                "SELECT count(*) FROM drop_chunks($1::text::regclass, older_than => $2::interval)",
                spec.name,
                age,
            )
            return int(n)
        status = await conn.execute(
            f"DELETE FROM {spec.name} WHERE {spec.time_column} < now() - $1::interval", age
        )
        return int(status.split()[-1])

    async def set_retention_policy(self, spec: TableSpec, older_than_s: int) -> None:
        """Timescale-licensed edition: let TimescaleDB's job scheduler apply retention."""
        conn = self._live()
        await conn.execute(
            "SELECT remove_retention_policy($1::text::regclass, if_exists => TRUE)", spec.name
        )
        if older_than_s > 0:
            await conn.execute(
                "SELECT add_retention_policy($1::text::regclass, $2::interval)",
                spec.name,
                timedelta(seconds=older_than_s),
            )
