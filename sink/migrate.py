"""Versioned schema migrations: ``alphapulse migrate``, also run at every sink start.

Files live in ``sink/migrations`` as ``NNNN_name[.when].sql``. All files of one version are
applied together, in one transaction, and the version is then recorded in
``alphapulse_schema_version``; a version already recorded is never applied again. ``when`` says
on which database a file applies:

* no suffix — every database;
* ``.timescale`` — TimescaleDB of any edition (hypertables);
* ``.tsl`` — TimescaleDB's Timescale-licensed edition only (compression, policies,
  continuous aggregates: none of them exist in the Apache edition);
* ``.plain`` — PostgreSQL without TimescaleDB (BRIN time indexes instead of hypertables).

Concurrent runs (several sinks starting at once) are serialised by a session advisory lock, so
running migrations is always safe. TimescaleDB is used only when the extension is available
*and* preloaded: ``CREATE EXTENSION timescaledb`` without ``shared_preload_libraries`` makes the
server close the connection, so we look before we leap. Without it the same tables are made
and a warning is logged; the sink never fails for lack of TimescaleDB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import asyncpg

from common.errors import ServerError
from common.logging import configure_logging, get_logger
from common.settings import CommonSettings, exit_on_config_error
from sink.settings import database_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alphapulse_schema_version"
# One lock for every migration run on a database (the extension is database-wide).
ADVISORY_LOCK_KEY = 0x616C7068_61707573 & 0x7FFFFFFFFFFFFFFF  # "alphapus"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(timescale|tsl|plain))?\.sql$")


class Flavor(Enum):
    """What the database offers, from most to least capable."""

    TIMESCALE = "timescale"  # TimescaleDB, Timescale-licensed (community) edition
    APACHE = "apache"  # TimescaleDB, Apache edition (hypertables, no compression/policies)
    PLAIN = "plain"  # PostgreSQL without TimescaleDB

    @property
    def hypertables(self) -> bool:
        return self is not Flavor.PLAIN

    def applies(self, when: str | None) -> bool:
        """Whether a migration file with suffix ``when`` applies to this database."""
        if when is None:
            return True
        if when == "timescale":
            return self.hypertables
        if when == "tsl":
            return self is Flavor.TIMESCALE
        return self is Flavor.PLAIN  # "plain"


@dataclass(frozen=True, slots=True)
class MigrationFile:
    version: int
    name: str
    when: str | None
    path: Path


@dataclass(frozen=True, slots=True)
class Step:
    """One version to apply: its name and the SQL of the files that apply here, in order."""

    version: int
    name: str
    sql: tuple[str, ...]


def discover(directory: Path = MIGRATIONS_DIR) -> list[MigrationFile]:
    """Every migration file, sorted by version then suffix (the unsuffixed file first)."""
    files = []
    for path in directory.iterdir():
        m = _FILE_RE.match(path.name)
        if m is None:
            if path.suffix == ".sql":
                raise ValueError(f"badly named migration file {path.name}")
            continue
        files.append(MigrationFile(int(m[1]), m[2], m[3], path))
    return sorted(files, key=lambda f: (f.version, f.when or ""))


def plan(files: list[MigrationFile], applied: set[int], flavor: Flavor) -> list[Step]:
    """The versions still to apply on a database of ``flavor`` (pure: no I/O but reading)."""
    steps: list[Step] = []
    for version in sorted({f.version for f in files} - applied):
        group = [f for f in files if f.version == version]
        sql = tuple(f.path.read_text() for f in group if flavor.applies(f.when))
        steps.append(Step(version, group[0].name, sql))
    return steps


async def detect_flavor(conn: asyncpg.Connection, *, create: bool = True) -> Flavor:
    """Say what the database offers; with ``create``, create the timescaledb extension when
    it is available and preloaded (and only then: otherwise the server drops the connection)."""
    log = get_logger("sink.migrate")  # not at import: logging is configured in main()
    installed = await conn.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    )
    if installed is None and not create:
        return Flavor.PLAIN
    if installed is None:
        available = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
        )
        preload = str(await conn.fetchval("SELECT current_setting('shared_preload_libraries')"))
        preloaded = "timescaledb" in {p.strip() for p in preload.split(",")}
        if not (available and preloaded):
            log.warning(
                "timescaledb_unavailable",
                available=bool(available),
                preloaded=preloaded,
                consequence="plain PostgreSQL tables with BRIN time indexes",
            )
            return Flavor.PLAIN
        try:
            # In public, not in the first schema of search_path: the extension is per database.
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb SCHEMA public")
        except asyncpg.InsufficientPrivilegeError as e:
            log.warning("timescaledb_not_created", error=str(e), consequence="plain tables")
            return Flavor.PLAIN
    license_ = await conn.fetchval("SELECT current_setting('timescaledb.license', true)")
    # Debian's build is Apache-only and has no timescaledb.license setting at all.
    return Flavor.TIMESCALE if license_ == "timescale" else Flavor.APACHE


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> Flavor:
    """Apply every pending migration on ``conn`` (its search_path decides the schema)."""
    log = get_logger("sink.migrate")
    files = discover(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        flavor = await detect_flavor(conn)
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    flavor     text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch(f"SELECT version, flavor FROM {VERSION_TABLE}")
        applied = {int(r["version"]) for r in rows}
        earlier = {str(r["flavor"]) for r in rows}
        if earlier and flavor.value not in earlier:
            log.warning("flavor_changed", before=sorted(earlier), now=flavor.value)
        for step in plan(files, applied, flavor):
            async with conn.transaction():
                for sql in step.sql:
                    await conn.execute(sql)
                await conn.execute(
                    f"INSERT INTO {VERSION_TABLE} (version, name, flavor) VALUES ($1, $2, $3)",
                    step.version,
                    step.name,
                    flavor.value,
                )
            log.info("migration_applied", version=step.version, name=step.name, flavor=flavor.value)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
    return flavor


async def _migrate_url(url: str) -> Flavor:
    conn = await asyncpg.connect(url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


def _command(args: argparse.Namespace) -> int:
    with exit_on_config_error():
        configure_logging(CommonSettings.from_env(os.environ))
        given = {"DATABASE_URL": args.database_url} if args.database_url else {}
        url = database_url({**os.environ, **given})  # checked, its password registered
    try:
        flavor = asyncio.run(_migrate_url(url))
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as e:  # one line (common.cli)
        raise ServerError(f"{type(e).__name__}: {e}") from e
    print(f"schema up to date ({flavor.value})")
    return 0


def register(subparsers: Any) -> None:
    """``alphapulse migrate``: apply the sink's schema migrations to DATABASE_URL."""
    p = subparsers.add_parser("migrate", help="apply the database schema migrations")
    p.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL)")
    p.set_defaults(func=_command)
