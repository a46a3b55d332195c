"""The console in a real headless Chromium against the real pipeline (issue 13).

The first 150 s of the recorded Binance BTC and ETH sessions are served by ``alphapulse
simulate`` at 20x; ``python -m ingest``, one ``python -m detectors``, ``python -m signals``
and ``python -m sink`` (into a private TimescaleDB schema) run as processes on this test's
Redis namespace (tests/integration/e2e_support.py), and the console runs in-process on the
same schema and namespace. The timeframes are 1s and 5s, so signals fire within seconds.

A viewer opens the Signals page before the feed starts; every signal the pipeline produces
must appear on it without a reload. Once the database equals what ``alphapulse replay``
computes from the same ticks (and every group is drained), the chart of the first live
signal's series must have been given exactly that series' ``bars`` rows as candles, a
marker per bar with ``patterns`` rows and an arrow per ``signals`` row (read back from the
chart's series, not from pixels), and the Signals CSV export, fetched by the page with its
session, must equal the ``signals`` rows and their ``outcome_rows``.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.async_api import Browser, Page

from common.names import Keys
from sink.migrate import migrate
from tests.conftest import REDIS_URL
from tests.console_support import (
    chromium,
    console_settings,
    logged_in,
    run_console,
    shot,
)
from tests.integration.e2e_support import (
    Supervised,
    drain_and_compare,
    replay_rows,
    stage_env,
    start_stages,
)
from tests.integration.test_e2e_pipeline import PARTITIONS, write_closed_subset
from tests.sink_support import Db, make_db

pytestmark = [pytest.mark.redis, pytest.mark.timescale, pytest.mark.slow]

HORIZONS = ("1", "5", "10", "20")  # the export's default outcome columns


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async for b in chromium():
        yield b


@pytest.fixture
async def db() -> AsyncIterator[Db]:
    async for d in make_db("timescale"):
        conn = await d.connect()
        try:  # the console's pages read the tables before the sink has started
            await migrate(conn)
        finally:
            await conn.close()
        yield d


def sec(t: datetime) -> int:
    return int(t.timestamp())


async def check_chart(page: Page, port: int, db: Db, series: tuple[str, str, str]) -> None:
    exchange, symbol, timeframe = series
    await page.goto(
        f"http://127.0.0.1:{port}/chart?exchange={exchange}&symbol={symbol}&timeframe={timeframe}"
    )
    await page.wait_for_function("window.chartState && window.chartState.ready")
    drawn = await page.evaluate(
        """() => ({
            state: window.chartState,
            candles: window.consoleSeries.candles.data().map(d => d.time),
            markers: window.consoleSeries.markers.markers().map(m => [m.time, m.id]),
        })"""
    )
    where = "WHERE exchange = $1 AND symbol = $2 AND timeframe = $3"
    bars = [sec(r[0]) for r in await db.fetch(f"SELECT open_time FROM bars {where} "
                                              "ORDER BY open_time", *series)]  # fmt: skip
    pattern_bars = {
        sec(r[0]) for r in await db.fetch(f"SELECT open_time FROM patterns {where}", *series)
    }
    signals = {
        (sec(r[0]), r[1])
        for r in await db.fetch(f"SELECT open_time, id FROM signals {where}", *series)
    }
    assert len(bars) > 20 and pattern_bars and signals
    assert drawn["candles"] == bars
    state = drawn["state"]
    assert state["candles"] == len(bars)
    assert state["patternMarkers"] == len(pattern_bars)
    assert state["signalMarkers"] == len(signals)
    assert state["markers"] == len(pattern_bars) + len(signals)
    assert {t for t, mid in drawn["markers"] if mid.startswith("p")} == pattern_bars
    assert {(t, mid) for t, mid in drawn["markers"] if not mid.startswith("p")} == signals
    await shot(page, "chart")


async def check_export(page: Page, db: Db) -> None:
    text = await page.evaluate(
        """async () => {
            const r = await fetch('/export/signals.csv');
            if (!r.ok) throw new Error('export: ' + r.status);
            return await r.text();
        }"""
    )
    got = []
    for r in csv.DictReader(io.StringIO(text)):
        reached = {h: (float(r[f"ret_{h}"]), r[f"hit_{h}"]) for h in HORIZONS if r[f"ret_{h}"]}
        got.append(
            (r["id"], r["exchange"], r["symbol"], r["timeframe"], r["open_time"], r["direction"],
             float(r["score"]), orjson.loads(r["patterns"]), r["model"], r["emitted_at"], reached)
        )  # fmt: skip
    rows = await db.fetch(
        "SELECT id, exchange, symbol, timeframe, doc->>'open_time' AS open_time, direction, "
        "score, patterns::text AS patterns, model, doc->>'emitted_at' AS emitted_at "
        "FROM signals ORDER BY time DESC, id DESC"
    )
    outcomes: dict[str, dict[str, tuple[float, str]]] = {}
    for o in await db.fetch("SELECT id, horizon, ret, hit FROM outcome_rows WHERE kind = 'signal'"):
        if str(o["horizon"]) in HORIZONS:
            outcomes.setdefault(o["id"], {})[str(o["horizon"])] = (o["ret"], str(o["hit"]))
    want = [
        (r["id"], r["exchange"], r["symbol"], r["timeframe"], r["open_time"], r["direction"],
         r["score"], orjson.loads(r["patterns"]), r["model"], r["emitted_at"],
         outcomes.get(r["id"], {}))
        for r in rows
    ]  # fmt: skip
    assert any(w[-1] for w in want), "no signal has reached an outcome horizon"
    assert got == want


async def test_the_console_shows_what_the_pipeline_produces(
    browser: Browser, db: Db, keys: Keys, redis_client: Any, tmp_path: Path
) -> None:
    csv_path = tmp_path / "ticks.csv"
    through_ms = write_closed_subset(csv_path)  # bars close by event time, as in replay
    env = stage_env(REDIS_URL, keys.namespace, PARTITIONS, idle_close_ms=0)
    replay = asyncio.create_task(
        replay_rows(csv_path, tmp_path / "replay", env, PARTITIONS, through_ms)
    )
    async for console in run_console(console_settings(db, keys)):
        page = await logged_in(browser, console, "ada")
        await page.wait_for_function("window.signalsState && window.signalsState.subscribed")
        assert await page.evaluate("window.signalsState.ids.length") == 0
        await page.evaluate("window.loadedBeforeTheFeed = true")
        pipe = Supervised(tmp_path, env)
        try:
            start_stages(pipe, db.url, csv_path, "--speed", "20", detectors=1)
            await page.wait_for_function("window.signalsState.live > 0", timeout=90_000)
            want = await replay
            assert len(want[2]) >= 5
            await drain_and_compare(pipe, db, want, env, 120)
            assert pipe.restarts == [], pipe.log_tail()
        finally:
            pipe.close()
            replay.cancel()  # done unless the pipeline failed to start

        # Every signal arrived on the page live: the same document, no reload.
        ids = {r["id"] for r in await db.fetch("SELECT id FROM signals")}
        await page.wait_for_function(f"window.signalsState.live >= {len(ids)}")
        live = await page.evaluate("window.signalsState")
        assert await page.evaluate("window.loadedBeforeTheFeed") is True
        assert set(live["ids"]) == ids and live["live"] == len(ids)
        for sid in list(ids)[:3]:
            assert await page.query_selector(f"[id='sig-{sid}']") is not None
        await shot(page, "signals")

        first = live["ids"][-1]  # the oldest row: the first signal that arrived
        series = await db.fetch("SELECT exchange, symbol, timeframe FROM signals WHERE id = $1",
                                first)  # fmt: skip
        await check_export(page, db)
        await check_chart(page, console.port, db, tuple(series[0]))
