"""The console's HTTP side against real TimescaleDB and Redis: login and logout, roles,
sessions, CSRF, API tokens, the login rate limit, ``/healthz``; the JSON API's answers,
paging and its 400s; the CSV export equal to the database."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from common.names import Keys
from signals.analytics.measures import wilson
from signals.console.server import ConsoleServer
from tests.console_support import (
    API_TOKEN,
    PASSWORDS,
    WS_TOKEN,
    Seed,
    base,
    console_settings,
    load_seed,
    login,
    make_seed,
    run_console,
    session,
)
from tests.sink_support import Db, make_db

pytestmark = [pytest.mark.timescale, pytest.mark.redis]
SEED = make_seed(600)


@pytest.fixture
async def db() -> AsyncIterator[Db]:
    async for d in make_db("timescale"):
        await load_seed(d.url, SEED)
        yield d


@pytest.fixture
async def console(db: Db, keys: Keys, redis_client: Any) -> AsyncIterator[ConsoleServer]:
    async for server in run_console(console_settings(db, keys, login_failures=3)):
        yield server


async def test_nothing_but_healthz_without_login(console: ConsoleServer) -> None:
    url = base(console)
    async with session() as http:
        async with http.get(f"{url}/healthz") as r:
            assert r.status == 200
        for path in ("/api/signals", "/api/bars", "/export/signals.csv", "/api/overview"):
            async with http.get(f"{url}{path}") as r:
                assert r.status == 401, path
        for path in ("/overview", "/signals", "/chart", "/admin", "/static/common.js"):
            async with http.get(f"{url}{path}", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"].startswith("/login"), path


async def test_login_cookie_logout_and_csrf(console: ConsoleServer) -> None:
    url = base(console)
    async with session() as http:
        assert await login(http, url, "ada", PASSWORDS["ada"]) == 302
        cookie = next(c for c in http.cookie_jar if c.key == "ap_session")
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        async with http.get(f"{url}/api/me") as r:
            me = await r.json()
        assert me["user"] == "ada" and me["role"] == "viewer" and me["csrf"]
        async with http.get(f"{url}/signals") as r:
            assert r.status == 200
        # A state-changing request without the CSRF token is refused; the session survives.
        async with http.post(f"{url}/logout", allow_redirects=False) as r:
            assert r.status == 403
        async with http.get(f"{url}/api/me") as r:
            assert r.status == 200
        headers = {"X-CSRF-Token": me["csrf"]}
        async with http.post(f"{url}/logout", headers=headers, allow_redirects=False) as r:
            assert r.status == 302
        async with http.get(f"{url}/api/me") as r:
            assert r.status == 401


@pytest.mark.parametrize("target", ["//evil.example/x", "/\\evil.example", "https://evil.example"])
async def test_login_never_redirects_off_site(console: ConsoleServer, target: str) -> None:
    url = base(console)
    async with session() as http:
        async with http.get(f"{url}/login") as r:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        assert csrf is not None
        form = {"username": "ada", "password": PASSWORDS["ada"], "csrf": csrf[1], "next": target}
        async with http.post(f"{url}/login", data=form, allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/overview"


async def test_login_without_the_form_token_is_refused(console: ConsoleServer) -> None:
    url = base(console)
    async with session() as http:
        form = {"username": "ada", "password": PASSWORDS["ada"], "csrf": "forged"}
        async with http.post(f"{url}/login", data=form, allow_redirects=False) as r:
            assert r.status == 403


async def test_viewer_cannot_reach_admin_routes(console: ConsoleServer) -> None:
    url = base(console)
    async with session() as http:
        await login(http, url, "ada", PASSWORDS["ada"])
        for path in ("/admin", "/api/admin/sessions"):
            async with http.get(f"{url}{path}") as r:
                assert r.status == 403, path
    async with session() as http:
        await login(http, url, "root", PASSWORDS["root"])
        async with http.get(f"{url}/api/admin/sessions") as r:
            assert r.status == 200
            assert (await r.json())["sessions"] == 2  # ada and root


async def test_failed_logins_are_rate_limited(console: ConsoleServer) -> None:
    url = base(console)
    async with session() as http:
        statuses = [await login(http, url, "ada", "wrong") for _ in range(3)]
        assert statuses == [401, 401, 401]
        # Past the limit even the right password waits: no guessing at full speed.
        assert await login(http, url, "ada", PASSWORDS["ada"]) == 429


async def test_api_tokens_and_signals_ws_tokens(console: ConsoleServer) -> None:
    url = base(console)
    async with aiohttp.ClientSession() as http:
        for token in (API_TOKEN, WS_TOKEN):
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{url}/api/health", headers=headers) as r:
                assert r.status == 200
                assert (await r.json())["status"] == "ok"
        async with http.get(f"{url}/api/health", headers={"Authorization": "Bearer no"}) as r:
            assert r.status == 401


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


async def get(url: str, **params: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, params=params, headers=auth()) as r,
    ):
        body = await r.read()
        return r.status, orjson.loads(body) if r.content_type == "application/json" else body


@pytest.mark.parametrize(
    ("path", "params", "reason"),
    [
        ("/api/bars", {"symbol": "BTCUSDT", "timeframe": "1m"}, "exchange: required"),
        ("/api/bars", {"exchange": "binance", "symbol": "BTCUSDT", "timeframe": "7x"},
         "timeframe: expected"),
        ("/api/bars", {"exchange": "binance", "symbol": "BTCUSDT", "timeframe": "1m",
                       "limit": "10001"}, "limit: expected 1..10000"),
        ("/api/bars", {"exchange": "binance", "symbol": "BTCUSDT", "timeframe": "1m",
                       "from": "yesterday"}, "from: expected epoch ms or ISO 8601"),
        ("/api/signals", {"min_score": "2"}, "min_score: expected 0.0..1.0"),
        ("/api/signals", {"direction": "up"}, "direction: expected one of long, short"),
        ("/api/signals", {"from": "2000", "to": "1000"}, "from: must be before to"),
        ("/api/signals", {"before": "x"}, "before: expected"),
        ("/api/outcomes", {"horizon": "0"}, "horizon: expected 1..100000"),
        ("/export/signals.csv", {"symbol": "BTC USDT"}, "symbol: expected"),
    ],
)  # fmt: skip
async def test_bad_parameters_get_400_with_a_reason(
    console: ConsoleServer, path: str, params: dict[str, str], reason: str
) -> None:
    status, body = await get(base(console) + path, **params)
    assert status == 400
    assert body["error"].startswith(reason) and "\n" not in body["error"]


async def test_bars_are_paged_by_time(console: ConsoleServer) -> None:
    url = base(console) + "/api/bars"
    series = {"exchange": "binance", "symbol": "BTCUSDT", "timeframe": "1m"}
    status, page = await get(url, **series, limit="250")
    assert status == 200 and len(page["bars"]) == 250
    times = [b[0] for b in page["bars"]]
    assert times == sorted(times) and times[-1] == round(SEED.bars[-1][3].timestamp() * 1000)
    seen = list(times)
    while page["next_to"] is not None:
        status, page = await get(url, **series, limit="250", to=str(page["next_to"]))
        seen = [b[0] for b in page["bars"]] + seen
    assert seen == [round(b[3].timestamp() * 1000) for b in SEED.bars]
    first = SEED.bars[0]
    assert page["bars"][0][1:] == [first[4], first[5], first[6], first[7], first[8]]


async def test_signals_filters_paging_and_outcomes(console: ConsoleServer) -> None:
    url = base(console) + "/api/signals"
    expected = sorted(
        (s for s in SEED.signals if s["direction"] == "long" and s["score"] >= 0.5),
        key=lambda s: s["open_time_ms"], reverse=True,
    )  # fmt: skip
    got: list[dict[str, Any]] = []
    params = {"direction": "long", "min_score": "0.5", "limit": "3"}
    while True:
        status, page = await get(url, **params)
        assert status == 200
        got += page["signals"]
        if page["next"] is None:
            break
        params["before"] = page["next"]
    assert [s["id"] for s in got] == [s["id"] for s in expected]
    by_id = {o[1]: o for o in SEED.outcomes if o[0] == "signal" and o[8] == 5}
    for s in got:
        if s["id"] in by_id:
            assert s["outcomes"]["5"]["ret"] == pytest.approx(by_id[s["id"]][9])
        else:
            assert "5" not in s["outcomes"]  # a horizon not reached stays pending


async def test_markers_are_the_patterns_and_signals_of_the_range(console: ConsoleServer) -> None:
    status, doc = await get(
        base(console) + "/api/markers", exchange="binance", symbol="BTCUSDT", timeframe="1m",
        limit="10000",
    )  # fmt: skip
    assert status == 200
    assert sum(len(fired) for _, fired in doc["patterns"]) == len(SEED.patterns)
    assert len(doc["signals"]) == len(SEED.signals)


async def test_pattern_statistics_match_the_rows(console: ConsoleServer) -> None:
    status, doc = await get(base(console) + "/api/patterns", horizon="5")
    assert status == 200
    row = next(r for r in doc["rows"] if r["pattern"] == "CDLHAMMER")
    rows = [o for o in SEED.outcomes if o[0] == "pattern" and o[6] == "CDLHAMMER" and o[8] == 5]
    hits = sum(1 for o in rows if o[12])
    assert (row["n"], row["hits"]) == (len(rows), hits)
    assert (row["direction"], row["timeframe"]) == ("long", "1m")
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson(hits, len(rows)))
    assert row["mean_ret"] == pytest.approx(sum(o[9] for o in rows) / len(rows))
    assert {r["pattern"] for r in doc["rows"]} == {"CDLHAMMER", "CDLDOJI", "CDLENGULFING"}
    regime = [r for r in doc["regime"] if r["pattern"] == "CDLHAMMER"]
    assert sum(r["n"] for r in regime) == len(rows)
    lows = [r["ci_low"] for r in doc["regime"]]
    assert lows == sorted(lows, reverse=True)
    pair = next(c for c in doc["cooccurrence"] if (c["a"], c["b"]) == ("CDLDOJI", "CDLHAMMER"))
    bars_with = {p[3] for p in SEED.patterns if p[4] == "CDLDOJI"}
    assert pair["n"] == len(bars_with)


def _csv(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode())))


async def test_csv_export_equals_the_database(console: ConsoleServer, db: Db) -> None:
    url = base(console)
    status, body = await get(url + "/export/signals.csv", direction="short")
    assert status == 200
    rows = _csv(body)
    stored = await db.fetch(
        "SELECT id, score, direction FROM signals WHERE direction = 'short' ORDER BY time DESC"
    )
    assert [(r["id"], float(r["score"]), r["direction"]) for r in rows] == [
        (s["id"], s["score"], s["direction"]) for s in stored
    ]
    status, body = await get(url + "/export/outcomes.csv", kind="signal")
    stored = await db.fetch("SELECT id, horizon, ret FROM outcome_rows WHERE kind = 'signal'")
    assert sorted((r["id"], int(r["horizon"]), float(r["ret"])) for r in _csv(body)) == sorted(
        (s["id"], s["horizon"], s["ret"]) for s in stored
    )
    status, body = await get(url + "/export/stats.csv", horizon="5")
    _status2, doc = await get(url + "/api/patterns", horizon="5")
    assert [(r["pattern"], int(r["n"])) for r in _csv(body)] == [
        (r["pattern"], r["n"]) for r in doc["rows"]
    ]


async def test_without_outcome_rows_the_pages_still_work(db: Db, keys: Keys) -> None:
    seed = make_seed(50)
    async for other in make_db("timescale"):
        await load_seed(other.url, seed, outcomes=False)
        async for server in run_console(console_settings(other, keys)):
            status, page = await get(base(server) + "/api/signals")
            assert status == 200 and page["outcomes"] is False
            assert all(s["outcomes"] == {} for s in page["signals"])
            status, _ = await get(base(server) + "/api/patterns")
            assert status == 503


_ = Seed
