"""Test support for the sink: the two databases, a private schema per test, and stream data.

Every sink test runs against plain PostgreSQL (``DATABASE_URL``) and TimescaleDB
(``TIMESCALE_URL``, provisioned by ``make provision``). Each test gets its own schema, put
first on the connection's ``search_path`` through the URL, so concurrent runs never collide;
the schema is dropped afterwards. A missing server fails the test.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from common.contracts import Bar, PatternEvent, Tick, TickBatch
from common.names import Keys
from common.settings import CommonSettings
from sink.settings import SinkSettings

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = 1_723_161_240_000  # 2024-08-08T23:54:00Z
MINUTE = 60_000

DB_PARAMS = [
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
    pytest.param("timescale", marks=pytest.mark.timescale, id="timescale"),
]


def server_url(kind: str) -> str:
    """The URL of the server of ``kind``; fails the test when TimescaleDB is not configured."""
    if kind == "postgres":
        return DATABASE_URL
    url = os.environ.get("TIMESCALE_URL")
    if not url:
        pytest.fail(
            "TIMESCALE_URL is not set: run `make provision` (deploy/timescale-chroot.sh up) "
            "and export TIMESCALE_URL=$(bash deploy/timescale-chroot.sh url), or use `make test`"
        )
    return url


def with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}search_path={schema},public"


@dataclass(frozen=True, slots=True)
class Db:
    """One test's database: ``url`` puts ``schema`` first on the search_path."""

    kind: str
    server: str
    schema: str
    url: str

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.url)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await self.connect()
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def count(self, table: str) -> tuple[int, int]:
        """(rows, distinct unique keys) of ``table``."""
        key = {
            "ticks": "exchange, symbol, trade_id, time",
            "bars": "exchange, symbol, timeframe, open_time",
            "patterns": "exchange, symbol, timeframe, open_time, pattern",
            "signals": "id, time",
        }[table]
        rows = await self.fetch(
            f"SELECT count(*) AS n, (SELECT count(*) FROM (SELECT DISTINCT {key} FROM {table}) d)"
            f" AS k FROM {table}"
        )
        return int(rows[0]["n"]), int(rows[0]["k"])


async def make_db(kind: str, server: str | None = None) -> AsyncIterator[Db]:
    """A fresh schema on the server of ``kind`` (or on ``server``), dropped afterwards."""
    base = server or server_url(kind)
    schema = f"sink_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(base, timeout=10)
    except (OSError, asyncpg.PostgresError) as e:  # a broken environment: fail, never skip
        pytest.fail(f"{kind} is required at {base}: {e!r}")
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield Db(kind, base, schema, with_search_path(base, schema))
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


def sink_settings(db_url: str, keys: Keys, **overrides: Any) -> SinkSettings:
    """Sink settings for a test: its Redis namespace, its schema, quick batches."""
    common = CommonSettings(
        redis_url=REDIS_URL,
        partitions=keys.partitions,
        namespace=keys.namespace,
        metrics_port=0,
        block_ms=50,
        claim_idle_ms=200,
        trim_interval_s=0,
    )
    values: dict[str, Any] = {
        "common": common,
        "database_url": db_url,
        "store_ticks": True,
        "batch_rows": 500,
        "flush_ms": 50,
        "retention_s": {},
    }
    values.update(overrides)
    return SinkSettings(**values)


def sink_env(db_url: str, keys: Keys, **extra: str) -> dict[str, str]:
    """Environment of a ``python -m sink`` subprocess for a test."""
    env = dict(os.environ)
    env.update(
        REDIS_URL=REDIS_URL,
        DATABASE_URL=db_url,
        NAMESPACE=keys.namespace,
        PARTITIONS=str(keys.partitions),
        STORE_TICKS="1",
        METRICS_PORT="0",
        BLOCK_MS="50",
        CLAIM_IDLE_MS="200",
        TRIM_INTERVAL_S="0",
        SINK_FLUSH_MS="50",
        RETENTION_TICKS="0",  # the test data is from 2024: the default 7d would drop it
        LOG_FORMAT="console",
    )
    env.update(extra)
    return env


def log_tail(path: Path, chars: int = 3000) -> str:
    """The end of a subprocess log, for failure messages."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


# --- stream data -------------------------------------------------------------------------
def make_bar(i: int, symbol: str = "BTCUSDT", low: float = 99.0) -> Bar:
    return Bar("binance", symbol, "1m", T0 + i * MINUTE, 100.0, 101.0, low, 100.5, 12.0, 1200.0,
               40, 6.0, 100.2)  # fmt: skip


def make_ticks(start: int, n: int, symbol: str = "BTCUSDT", price: float = 100.0) -> TickBatch:
    ns = T0 * 1_000_000
    return TickBatch.from_ticks(
        Tick("binance", symbol, symbol, str(start + k), price + (start + k) % 7, 0.5,
             "buy" if k % 2 else "sell", ns + (start + k) * 1_000_000, ns + (start + k) * 1_000_001)
        for k in range(n)
    )  # fmt: skip


def decoded_batch(ticks: list[Tick]) -> TickBatch:
    """Ticks as the sink gets them: encoded by a writer, decoded from the entry."""
    return TickBatch.decode(TickBatch.from_ticks(ticks).encode())


def odd_tick_batches() -> list[TickBatch]:
    ns = 1_723_161_240_123_456_789
    first = decoded_batch(
        [
            Tick("binance", "BTCUSDT", "btcusdt", "1", 64_000.5, 0.25, "buy", ns, ns + 999),
            # before 1970 and before 2000 (floor division of negative nanoseconds)
            Tick(
                "binance",
                "BTCUSDT",
                "btcusdt",
                "",
                1e-12,
                0.0,
                "sell",
                -1_999,
                946_684_799_999_999_999,
            ),
            Tick("kraken", "XBT/€", "XBT/EUR", "tid-ünïcode-✓", math.nan, -0.0, "buy", 1, 2),
            Tick("okx", "ETH-USDT", "ETH-USDT-SWAP", "9" * 40, math.inf, 1e308, "sell", ns, ns),
        ]
    )
    # Another entry with its own symbol table: one symbol shared at another index.
    second = TickBatch.from_ticks(
        [
            Tick("okx", "ETH-USDT", "ETH-USDT-SWAP", "7", 3_000.0, 1.5, "buy", ns + 5, ns + 6),
            Tick("coinbase", "SOL-USD", "SOL-USD", "abc", -math.inf, 2.0, "sell", ns, ns + 1),
        ]
    )
    second.records["side"][0] = 2  # any non-zero side byte is a buy, as tick_rows reads it
    return [first, TickBatch.decode(second.encode())]


def make_event(i: int, patterns: dict[str, int] | None = None) -> PatternEvent:
    return PatternEvent(make_bar(i), patterns or {"CDLHAMMER": 100, "CDLDOJI": -100},
                        {"rsi": 30.0, "trend": -1})  # fmt: skip


def make_signal(i: int, score: float = 0.8) -> dict[bytes, bytes]:
    open_ms = T0 + i * MINUTE
    sid = f"binance:BTCUSDT:1m:{open_ms}:long"
    doc = {
        "v": 1,
        "id": sid,
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "timeframe": "1m",
        "open_time": "2024-08-08T23:54:00.000Z",
        "open_time_ms": open_ms,
        "direction": "long",
        "score": score,
        "patterns": {"CDLHAMMER": 100},
        "supporting": ["CDLHAMMER"],
        "features": {"rsi": 30.0},
        "model": "abc123",
        "emitted_at": "2024-08-08T23:55:00.012Z",
    }
    return {b"v": b"1", b"id": sid.encode(), b"d": orjson.dumps(doc)}
