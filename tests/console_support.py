"""Test support for the web console: a migrated TimescaleDB schema with seeded bars, patterns,
signals and the outcomes stage's ``outcomes`` rows (read back through its ``outcome_rows``
view), a console server on a free port against it and a Redis namespace, and the browser
tests' headless Chromium (Debian's, driven by Playwright) logged in to it.

The seed is deterministic (a fixed random walk), so tests compute what the pages must show
from the same rows (``Seed.outcomes``: what ``outcome_rows`` must show, per the contract).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from playwright.async_api import Browser, Page, async_playwright

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
    outcomes: list[tuple[Any, ...]]  # the rows outcome_rows must show
    stored: list[tuple[Any, ...]]  # the rows of the outcomes table


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
    stored_outcomes: list[tuple[Any, ...]] = []
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
    # The outcomes stage's table: one row per event bar (a pattern or a signal on it) and
    # reached horizon, in the long direction; the view outcome_rows turns each into the
    # firings' own directions. ``outcomes`` (expected view rows) is derived here the same way.
    d_of = {"long": 1, "short": -1}
    event_bars = sorted(
        {round((p[3].timestamp() * 1000 - T0) / MINUTE) for p in patterns}
        | {(s["open_time_ms"] - T0) // MINUTE for s in signals}
    )
    patterns_at: dict[int, list[tuple[Any, ...]]] = {}
    for p in patterns:
        patterns_at.setdefault(round(p[3].timestamp() * 1000), []).append(p)
    signals_at: dict[int, list[dict[str, Any]]] = {}
    for sg in signals:
        signals_at.setdefault(sg["open_time_ms"], []).append(sg)
    stored = []
    for t_i in event_bars:
        t = T0 + t_i * MINUTE
        trend = float(rnd.choice((-1, 0, 1)))
        for h in (1, 5):
            if t_i + h >= n_bars:
                continue
            c0 = closes[t_i]
            ret = closes[t_i + h] / c0 - 1
            mfe = max(b[5] for b in bars[t_i + 1 : t_i + h + 1]) / c0 - 1
            mae = min(b[6] for b in bars[t_i + 1 : t_i + h + 1]) / c0 - 1
            ident = f"{exchange}:{symbol}:{timeframe}:{t}"
            stored.append(
                (ident, exchange, symbol, timeframe, ts(t), h, c0, ret, mfe, mae, trend,
                 0.01, 1.0, 0.0)
            )  # fmt: skip
            firings = [
                ("pattern", ident, p[4], "long" if p[5] > 0 else "short", None)
                for p in patterns_at.get(t, [])
            ] + [("signal", sg["id"], None, sg["direction"], sg["score"])
                 for sg in signals_at.get(t, [])]  # fmt: skip
            for kind, fid, pattern, direction, score in firings:
                r = d_of[direction] * ret
                outcomes.append(
                    (kind, fid, exchange, symbol, timeframe, ts(t), pattern, direction, h, r,
                     None, None, r > 0, score, trend, 0.01, 1.0)
                )  # fmt: skip
    stored_outcomes.extend(stored)
    return Seed(bars, patterns, signals, outcomes, stored_outcomes)


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
            await conn.copy_records_to_table(
                "outcomes", records=seed.stored,
                columns=["id", "exchange", "symbol", "timeframe", "open_time", "horizon",
                         "close", "ret", "mfe", "mae", "trend", "atr_ratio", "volume_ratio",
                         "cost_bps"],
            )  # fmt: skip
            # What the sink does every SINK_STATS_REFRESH_S (the Patterns page reads these).
            await conn.execute("SELECT refresh_outcome_stats()")
        else:  # a database whose outcomes stage has not run its migration
            await conn.execute("DROP VIEW outcome_rows CASCADE")
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


def base(server: ConsoleServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def session() -> aiohttp.ClientSession:
    """A client keeping the console's cookies (127.0.0.1 is not a domain: ``unsafe``)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def login(http: aiohttp.ClientSession, url: str, user: str, password: str) -> int:
    """Log in through the form (its CSRF double-submit token included); the status."""
    async with http.get(f"{url}/login") as r:
        page = await r.text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    form = {"username": user, "password": password, "csrf": csrf[1], "next": "/signals"}
    async with http.post(f"{url}/login", data=form, allow_redirects=False) as r:
        return r.status


# --- the browser tests' headless Chromium ---------------------------------------------------
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 30_000


def chromium_path() -> str:
    path = shutil.which(CHROMIUM) or CHROMIUM
    if not Path(path).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `bash deploy/browser.sh` (make test does)")
    return path


async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (which downloads no browser)."""
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


async def logged_in(browser: Browser, console: ConsoleServer, user: str) -> Page:
    """A new page logged in as ``user`` through the login form (on the Signals page)."""
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(f"http://127.0.0.1:{console.port}/signals")
    assert "/login" in page.url  # nothing without a login
    await page.fill("#username", user)
    await page.fill("#password", PASSWORDS[user])
    await page.click("#submit")
    await page.wait_for_selector("#who")
    return page


async def shot(page: Page, name: str) -> None:
    """With ``CONSOLE_SCREENSHOTS=DIR``, save the page as ``DIR/<name>.png``."""
    target = os.environ.get("CONSOLE_SCREENSHOTS")
    if target:
        os.makedirs(target, exist_ok=True)
        await page.screenshot(path=str(Path(target) / f"{name}.png"))
