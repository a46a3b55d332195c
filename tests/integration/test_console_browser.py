"""The console in a real headless Chromium (Debian's ``chromium``, installed by
deploy/browser.sh; Playwright drives the system browser, it downloads none) against a console
on real TimescaleDB and Redis: login and logout, a viewer kept out of the admin page, a live
signal appearing without a reload, the chart drawing the right candles and markers (read back
from the page's data, not from pixels), the Overview refreshing itself, a bad API parameter's
400, an admin changing and rolling back the live configuration on the Admin page. With
``CONSOLE_SCREENSHOTS=DIR`` each page is also saved as ``DIR/<page>.png``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.async_api import Browser, Page, async_playwright

from common.configstore import load_versions
from common.names import Keys
from signals.console.server import ConsoleServer
from signals.liveconfig import propose, seed_document
from signals.model import Model
from tests.console_support import (
    MINUTE,
    PASSWORDS,
    console_settings,
    load_seed,
    make_seed,
    run_console,
)
from tests.sink_support import Db, make_db

pytestmark = [pytest.mark.timescale, pytest.mark.redis, pytest.mark.slow]
SEED = make_seed(600)
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 30_000


def chromium_path() -> str:
    path = shutil.which(CHROMIUM) or CHROMIUM
    if not Path(path).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `bash deploy/browser.sh` (make test does)")
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def console(keys: Keys, redis_client: Any) -> AsyncIterator[ConsoleServer]:
    async for db in make_db("timescale"):
        await load_seed(db.url, SEED)
        async for server in run_console(console_settings(db, keys)):
            yield server


async def logged_in(browser: Browser, console: ConsoleServer, user: str) -> Page:
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
    target = os.environ.get("CONSOLE_SCREENSHOTS")
    if target:
        os.makedirs(target, exist_ok=True)
        await page.screenshot(path=str(Path(target) / f"{name}.png"))


async def test_login_and_logout(browser: Browser, console: ConsoleServer) -> None:
    page = await logged_in(browser, console, "ada")
    assert "/signals" in page.url
    assert await page.text_content("#who") == "ada (viewer)"
    await page.click("#logout")
    await page.wait_for_url("**/login")
    await page.goto(f"http://127.0.0.1:{console.port}/overview")
    assert "/login" in page.url


async def test_viewer_cannot_reach_admin(browser: Browser, console: ConsoleServer) -> None:
    page = await logged_in(browser, console, "ada")
    assert await page.query_selector("#nav-admin") is None
    response = await page.goto(f"http://127.0.0.1:{console.port}/admin")
    assert response is not None and response.status == 403
    admin = await logged_in(browser, console, "root")
    response = await admin.goto(f"http://127.0.0.1:{console.port}/admin")
    assert response is not None and response.status == 200
    await admin.wait_for_function("document.getElementById('admin').textContent.length > 0")


async def test_outcome_columns_show_the_reached_horizons(
    browser: Browser, console: ConsoleServer
) -> None:
    page = await logged_in(browser, console, "ada")
    await page.wait_for_function("window.signalsState && window.signalsState.ids.length > 0")
    reached = {(o[1], o[8]): o for o in SEED.outcomes if o[0] == "signal"}
    newest = max(SEED.signals, key=lambda s: s["open_time_ms"])
    oldest = min(SEED.signals, key=lambda s: s["open_time_ms"])
    for sig in (newest, oldest):
        cells = await page.eval_on_selector_all(
            f"[id='sig-{sig['id']}'] td[data-h]", "tds => tds.map(td => td.textContent)"
        )
        for h, text in zip(("1", "5", "10", "20"), cells, strict=True):
            o = reached.get((sig["id"], int(h)))
            assert text == (f"{100 * o[9]:.2f}%" if o else "…"), (sig["id"], h)
    assert (oldest["id"], 5) in reached and (newest["id"], 20) not in reached


async def test_a_live_signal_appears_without_reload(
    browser: Browser, console: ConsoleServer, keys: Keys, redis_client: Any
) -> None:
    page = await logged_in(browser, console, "ada")
    await page.wait_for_function("window.signalsState && window.signalsState.subscribed")
    rows_before = await page.evaluate("window.signalsState.ids.length")
    assert rows_before == min(100, len(SEED.signals))
    doc = dict(SEED.signals[0])
    t = SEED.signals[-1]["open_time_ms"] + 10 * MINUTE
    doc.update(id=f"binance:BTCUSDT:1m:{t}:long", open_time_ms=t, score=0.99)
    await redis_client.xadd(
        keys.signals, {"v": b"1", "id": doc["id"].encode(), "d": orjson.dumps(doc)}
    )
    row = await page.wait_for_selector(f"[id='sig-{doc['id']}']")
    assert row is not None
    assert await page.evaluate("window.signalsState.ids[0]") == doc["id"]
    assert await page.evaluate("window.signalsState.live") == 1
    await shot(page, "signals")


async def test_chart_draws_the_candles_and_markers(
    browser: Browser, console: ConsoleServer
) -> None:
    page = await logged_in(browser, console, "ada")
    await page.goto(
        f"http://127.0.0.1:{console.port}/chart?exchange=binance&symbol=BTCUSDT&timeframe=1m"
        "&limit=600"
    )
    await page.wait_for_function("window.chartState && window.chartState.ready")
    state = await page.evaluate("window.chartState")
    bars_with_patterns = {p[3] for p in SEED.patterns}
    assert state["candles"] == len(SEED.bars)
    assert state["patternMarkers"] == len(bars_with_patterns)
    assert state["signalMarkers"] == len(SEED.signals)
    assert state["markers"] == len(bars_with_patterns) + len(SEED.signals)
    await shot(page, "chart")


async def test_chart_pans_back_through_pages(browser: Browser, console: ConsoleServer) -> None:
    page = await logged_in(browser, console, "ada")
    await page.goto(
        f"http://127.0.0.1:{console.port}/chart?exchange=binance&symbol=BTCUSDT&timeframe=1m"
        "&limit=200"
    )
    await page.wait_for_function("window.chartState && window.chartState.ready")
    assert await page.evaluate("window.chartState.candles") == 200
    # Panning to the left edge loads the older pages, 200 bars at a time, until the start
    # (bounded at 30 s: a loaded CI machine can take seconds per page).
    for _ in range(100):
        if await page.evaluate("window.chartState.candles") == len(SEED.bars):
            break
        await page.evaluate(
            "window.consoleChart.timeScale().setVisibleLogicalRange({from: 0, to: 150})"
        )
        await page.wait_for_timeout(300)
    assert await page.evaluate("window.chartState.candles") == len(SEED.bars)
    assert await page.evaluate("window.chartState.loads") == 3


async def test_overview_refreshes_itself(browser: Browser, console: ConsoleServer) -> None:
    page = await logged_in(browser, console, "ada")
    await page.goto(f"http://127.0.0.1:{console.port}/overview")
    await page.wait_for_function("window.overviewState && window.overviewState.updates >= 2")
    last = await page.evaluate("window.overviewState.last")
    assert {s["stream"] for s in last["streams"]} >= {"bars", "patterns", "signals"}
    await shot(page, "overview")


async def test_patterns_and_export_pages(browser: Browser, console: ConsoleServer) -> None:
    page = await logged_in(browser, console, "ada")
    await page.goto(f"http://127.0.0.1:{console.port}/patterns?horizon=5")
    await page.wait_for_function("window.patternsState && window.patternsState.loaded")
    assert await page.evaluate("window.patternsState.rows") == 3
    await page.click("a.drill")
    await page.wait_for_selector("#drill a")
    await shot(page, "patterns")
    await page.goto(f"http://127.0.0.1:{console.port}/export?direction=short")
    href = await page.get_attribute("#signals-csv", "href")
    assert href == "/export/signals.csv?direction=short"
    await shot(page, "export")


async def test_a_bad_api_parameter_gets_its_400(browser: Browser, console: ConsoleServer) -> None:
    page = await logged_in(browser, console, "ada")
    status, body = await page.evaluate(
        """async () => {
            const r = await fetch('/api/bars?exchange=binance&symbol=BTCUSDT&timeframe=1m&limit=0');
            return [r.status, await r.json()];
        }"""
    )
    assert status == 400
    assert body == {"error": "limit: expected 1..10000, got 0"}


async def test_admin_changes_and_rolls_back_the_configuration(
    browser: Browser, console: ConsoleServer, keys: Keys, redis_client: Any
) -> None:
    url = f"http://127.0.0.1:{console.port}"
    v1 = await propose(
        redis_client, keys, seed_document({}, Model()), who="signals", expected_version=0
    )
    scored = round(SEED.bars[-1][3].timestamp() * 1000)  # the signals stage scored up to here
    await redis_client.set(keys.config_scored, scored)
    viewer = await logged_in(browser, console, "ada")
    response = await viewer.goto(f"{url}/admin")
    assert response is not None and response.status == 403
    assert await viewer.evaluate("fetch('/api/admin/config').then(r => r.status)") == 403

    page = await logged_in(browser, console, "root")
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))  # the rollback's confirm()
    await page.goto(f"{url}/admin")
    await page.wait_for_function("window.adminState.loaded")
    assert await page.text_content("#cfg-version") == "v1"
    await page.fill("#change-set", "threshold=0.8")
    await page.fill("#change-comment", "fewer, stronger")
    await page.click("#change-submit")
    await page.wait_for_function(
        "window.adminState.version === 2 && window.adminState.diff.b === 2"
    )
    state = await page.evaluate("window.adminState")
    assert [(v["version"], v["who"]) for v in state["history"]] == [
        (1, "signals"),
        (2, "console:root"),
    ]
    assert state["diff"]["lines"] == [f"model.threshold: {v1.doc['model']['threshold']} -> 0.8"]
    assert await page.text_content("#v-2") is not None
    assert "fewer, stronger" in (await page.text_content("#v-2") or "")
    assert await page.eval_on_selector_all(
        "#diff tr.change td", "tds => tds.map(t => t.textContent)"
    ) == [
        "model.threshold",
        str(v1.doc["model"]["threshold"]),
        "0.8",
    ]
    stored = await load_versions(redis_client, keys)
    assert stored[-1].doc["model"]["threshold"] == 0.8 and stored[-1].who == "console:root"
    assert stored[-1].effective_from == (scored // MINUTE + 1) * MINUTE  # the next minute
    await shot(page, "admin")

    await page.fill("#change-set", "threshold=2")  # invalid: shown inline, nothing written
    await page.click("#change-submit")
    await page.wait_for_function("window.adminState.errors.change")
    assert (await page.text_content("#change-error") or "").startswith("invalid model: threshold")
    assert len(await load_versions(redis_client, keys)) == 2

    await page.click("button.rollback[data-v='1']")
    await page.wait_for_function(
        "window.adminState.version === 3 && window.adminState.diff.b === 3"
    )
    stored = await load_versions(redis_client, keys)
    assert stored[-1].doc == v1.doc and stored[-1].comment == "rollback to version 1"
    assert await page.evaluate("window.adminState.diff.lines") == [
        f"model.threshold: 0.8 -> {v1.doc['model']['threshold']}"
    ]


_ = Db
