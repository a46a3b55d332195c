"""Test support for the web console: a migrated TimescaleDB schema with seeded bars, patterns,
signals (and, when asked, rows shaped like the outcomes stage's ``outcome_rows`` view), and a
console server on a free port against it and a Redis namespace.

The seed is deterministic (a fixed random walk), so tests compute what the pages must show
from the same rows. ``outcome_rows`` is the outcomes stage's view (docs, OUTCOMES_CONTRACT);
here it is a plain table of the contract's columns in the test's private schema, so the
console is tested against the contract without that stage's migration.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from common.names import Keys
from common.settings import CommonSettings
from signals.console.auth import ApiToken, User, hash_password
from signals.console.server import ConsoleServer
from signals.console.settings import ConsoleSettings
from sink.migrate import migrate
from tests.sink_support import REDIS_URL, Db

T0 = 1_723_161_240_000  # 2024-08-08T23:54:00Z
MINUTE = 60_000
PASSWORDS = {"ada": "viewer-pass", "root": "admin-pass"}
API_TOKEN = "script-token-123"
WS_TOKEN = "dev-token"
USERS = (
    User("ada", "viewer", hash_password(PASSWORDS["ada"])),
    User("root", "admin", hash_password(PASSWORDS["root"])),
)
PATTERN_NAMES = ("CDLHAMMER", "CDLDOJI", "CDLENGULFING")


def ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class Seed:
    bars: list[tuple[Any, ...]]
    patterns: list[tuple[Any, ...]]
    signals: list[dict[str, Any]]
    outcomes: list[tuple[Any, ...]]


def make_seed(
    n_bars: int,
    *,
    pattern_every: int = 5,
    signal_every: int = 25,
    symbol: str = "BTCUSDT",
    exchange: str = "binance",
    timeframe: str = "1m",
    seed: int = 7,
) -> Seed:
    rnd = random.Random(seed)
    price = 100.0
    bars, patterns, signals, outcomes = [], [], [], []
    closes: list[float] = []
    for i in range(n_bars):
        o = price
        c = max(1.0, o * (1 + rnd.gauss(0, 0.002)))
        h, lo = max(o, c) * 1.001, min(o, c) * 0.999
        vol = round(rnd.uniform(1, 20), 3)
        t = T0 + i * MINUTE
        bars.append((exchange, symbol, timeframe, ts(t), o, h, lo, c, vol, vol * c, 10, vol / 2, c))
        closes.append(c)
        price = c
    for i in range(0, n_bars, pattern_every):
        t = T0 + i * MINUTE
        names = PATTERN_NAMES[: 1 + (i // pattern_every) % 3]
        for k, name in enumerate(names):
            patterns.append((exchange, symbol, timeframe, ts(t), name, 100 if k % 2 == 0 else -100))
    for i in range(0, n_bars, signal_every):
        t = T0 + i * MINUTE
        direction = "long" if (i // signal_every) % 2 == 0 else "short"
        sid = f"{exchange}:{symbol}:{timeframe}:{t}:{direction}"
        signals.append(
            {
                "v": 1,
                "id": sid,
                "exchange": exchange,
                "symbol": symbol,
                "timeframe": timeframe,
                "open_time": ts(t).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "open_time_ms": t,
                "direction": direction,
                "score": round(0.3 + 0.7 * rnd.random(), 4),
                "patterns": {"CDLHAMMER": 100},
                "supporting": ["CDLHAMMER"],
                "features": {"rsi": 30.0, "trend": -1},
                "model": "m1",
                "emitted_at": "2024-08-09T00:00:00.000Z",
            }
        )
    d_of = {"long": 1, "short": -1}
    for kind, ident, t_i, pattern, direction, score in [
        *[
            (
                "pattern",
                f"{p[0]}:{p[1]}:{p[2]}:{round(p[3].timestamp() * 1000)}",
                round((p[3].timestamp() * 1000 - T0) / MINUTE),
                p[4],
                "long" if p[5] > 0 else "short",
                None,
            )
            for p in patterns
        ],
        *[
            (
                "signal",
                s["id"],
                (s["open_time_ms"] - T0) // MINUTE,
                None,
                s["direction"],
                s["score"],
            )
            for s in signals
        ],
    ]:
        for h in (1, 5):
            if t_i + h >= n_bars:
                continue
            r = d_of[direction] * (closes[t_i + h] / closes[t_i] - 1)
            outcomes.append(
                (kind, ident, exchange, symbol, timeframe, ts(T0 + t_i * MINUTE), pattern,
                 direction, h, r, abs(r), -abs(r), r > 0, score, float(rnd.choice((-1, 0, 1))),
                 0.01, 1.0)
            )  # fmt: skip
    return Seed(bars, patterns, signals, outcomes)


OUTCOME_ROWS_DDL = """CREATE TABLE outcome_rows (
    kind text, id text, exchange text, symbol text, timeframe text, open_time timestamptz,
    pattern text, direction text, horizon integer, ret double precision,
    mfe double precision, mae double precision, hit boolean, score double precision,
    trend double precision, atr_ratio double precision, volume_ratio double precision)"""


async def load_seed(url: str, seed: Seed, *, outcomes: bool = True) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await conn.copy_records_to_table(
            "bars", records=seed.bars,
            columns=["exchange", "symbol", "timeframe", "open_time", "open", "high", "low",
                     "close", "volume", "quote_volume", "trades", "taker_buy_volume", "vwap"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "patterns",
            records=seed.patterns,
            columns=["exchange", "symbol", "timeframe", "open_time", "pattern", "value"],
        )
        await insert_signals(conn, seed.signals)
        if outcomes:
            await conn.execute(OUTCOME_ROWS_DDL)
            await conn.copy_records_to_table("outcome_rows", records=seed.outcomes)
    finally:
        await conn.close()


async def insert_signals(conn: asyncpg.Connection, signals: list[dict[str, Any]]) -> None:
    await conn.executemany(
        "INSERT INTO signals (id, time, exchange, symbol, timeframe, open_time, direction, "
        "score, patterns, features, model, emitted_at, doc) "
        "VALUES ($1, $2, $3, $4, $5, $2, $6, $7, $8::jsonb, $9::jsonb, $10, now(), $11::jsonb)",
        [
            (s["id"], ts(s["open_time_ms"]), s["exchange"], s["symbol"], s["timeframe"],
             s["direction"], s["score"], orjson.dumps(s["patterns"]).decode(),
             orjson.dumps(s["features"]).decode(), s["model"], orjson.dumps(s).decode())
            for s in signals
        ],
    )  # fmt: skip


def console_settings(db: Db, keys: Keys, **overrides: Any) -> ConsoleSettings:
    values: dict[str, Any] = {
        "common": CommonSettings(
            redis_url=REDIS_URL, partitions=keys.partitions, namespace=keys.namespace,
            metrics_port=0, block_ms=50,
        ),
        "users": USERS,
        "tokens": (ApiToken.of("script", "viewer", API_TOKEN), ApiToken.viewer(WS_TOKEN)),
        "database_url": db.url,
        "host": "127.0.0.1",
        "port": 0,
    }  # fmt: skip
    values.update(overrides)
    return ConsoleSettings(**values)


async def run_console(settings: ConsoleSettings) -> AsyncIterator[ConsoleServer]:
    server = ConsoleServer(settings)
    await server.start()
    task = asyncio.create_task(server.run())
    try:
        yield server
    finally:
        await server.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
