"""The console in a real headless Chromium (Debian's ``chromium``, installed by
deploy/browser.sh; Playwright drives the system browser, it downloads none) against a console
on real TimescaleDB and Redis with seeded rows (tests/console_support.py): login and logout, a
viewer kept out of the admin page, the outcome columns, paging the chart back through history,
the Overview refreshing itself, the Patterns and Export pages, a bad API parameter's 400, an
admin changing and rolling back the live configuration on the Admin page.
A live signal and the chart's candles and markers are checked against the whole pipeline in
test_console_pipeline.py. With ``CONSOLE_SCREENSHOTS=DIR`` each page is also saved as
``DIR/<page>.png``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser

from common.configstore import load_versions
from common.names import Keys
from signals.console.server import ConsoleServer
from signals.liveconfig import propose, seed_document
from signals.model import Model
from tests.console_support import (
    MINUTE,
    chromium,
    console_settings,
    insert_signals,
    load_seed,
    logged_in,
    make_seed,
    run_console,
    shot,
)
from tests.sink_support import make_db

pytestmark = [pytest.mark.timescale, pytest.mark.redis, pytest.mark.slow]
SEED = make_seed(600)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async for b in chromium():
        yield b


@pytest.fixture
async def console(keys: Keys, redis_client: Any) -> AsyncIterator[ConsoleServer]:
    async for db in make_db("timescale"):
        await load_seed(db.url, SEED)
        async for server in run_console(console_settings(db, keys)):
            yield server


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


async def test_chart_pans_back_through_pages(browser: Browser, console: ConsoleServer) -> None:
    page = await logged_in(browser, console, "ada")
    await page.goto(
        f"http://127.0.0.1:{console.port}/chart?exchange=binance&symbol=BTCUSDT&timeframe=1m"
        "&limit=200"
    )
    await page.wait_for_function("window.chartState && window.chartState.ready")
    assert await page.evaluate("window.chartState.pages[0]") == 200
    # Panning to the left edge loads the older pages, 200 bars at a time, until the start
    # (the first draw shows the whole first page, so the second may already be loading;
    # bounded at 30 s: a loaded CI machine can take seconds per page).
    for _ in range(100):
        if await page.evaluate("window.chartState.candles") == len(SEED.bars):
            break
        await page.evaluate(
            "window.consoleChart.timeScale().setVisibleLogicalRange({from: 0, to: 150})"
        )
        await page.wait_for_timeout(300)
    assert await page.evaluate("window.chartState.candles") == len(SEED.bars)
    assert await page.evaluate("window.chartState.loads") == 3
    assert await page.evaluate("window.chartState.pages") == [200, 200, 200]


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


async def test_a_signal_stored_after_its_bar_appears_on_an_open_chart(
    browser: Browser, keys: Keys, redis_client: Any
) -> None:
    # Live, a signal is stored after its bar (signals score what the detectors wrote), and
    # later bars may already be on the chart: its poll must still pick the signal up.
    async for db in make_db("timescale"):
        await load_seed(db.url, SEED)
        async for console in run_console(console_settings(db, keys)):
            page = await logged_in(browser, console, "ada")
            await page.goto(
                f"http://127.0.0.1:{console.port}/chart?exchange=binance&symbol=BTCUSDT"
                "&timeframe=1m&limit=200"
            )
            await page.wait_for_function("window.chartState && window.chartState.ready")
            late_ms = round(SEED.bars[-10][3].timestamp() * 1000)  # 9 bars before the newest
            late = SEED.signals[-1] | {
                "id": f"binance:BTCUSDT:1m:{late_ms}:long",
                "open_time_ms": late_ms,
                "direction": "long",
            }
            conn = await asyncpg.connect(db.url)
            try:
                await insert_signals(conn, [late])
            finally:
                await conn.close()
            # read back from the chart's marker series (older pages may load meanwhile)
            await page.wait_for_function(
                "id => window.consoleSeries.markers.markers().some(m => m.id === id)",
                arg=late["id"],
            )
