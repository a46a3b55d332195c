"""The console's live configuration API (``/api/admin/config…``) against real Redis (and
PostgreSQL for the console's pool, which these routes do not read): view, change with who =
the console user, invalid → 400 with nothing written, a stale version → 409 with nothing
lost, rollback, the CLI's diff, ``effective_from`` and the scored mark, profiles; a viewer
gets 403 on every route, a session without the CSRF token too. What was written is read
back from the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from common.configstore import load_versions
from common.names import Keys
from signals.console.auth import ApiToken
from signals.console.server import ConsoleServer
from signals.liveconfig import diff_lines, diff_versions, seed_document
from signals.model import Model
from tests.console_support import (
    PASSWORDS,
    base,
    console_settings,
    login,
    run_console,
    session,
)
from tests.sink_support import make_db

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
ADMIN_TOKEN = "ops-admin-token-456"
VIEWER_TOKEN = "ops-viewer-token-789"
T = 1_723_161_600_000  # 2024-08-09T00:00:00Z, a bar open time


@pytest.fixture
async def console(keys: Keys, redis_client: Any) -> AsyncIterator[ConsoleServer]:
    tokens = (ApiToken.of("ops", "admin", ADMIN_TOKEN), ApiToken.of("dash", "viewer", VIEWER_TOKEN))
    async for db in make_db("postgres"):  # the console needs one; these routes do not read it
        async for server in run_console(console_settings(db, keys, tokens=tokens)):
            yield server


class Client:
    """A logged-in browser-like client: the session cookie and its CSRF token."""

    def __init__(self, http: aiohttp.ClientSession, url: str, csrf: str) -> None:
        self.http, self.url, self.csrf = http, url, csrf

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path, params=params) as r:
            return r.status, await r.json()

    async def change(self, *assignments: str, version: int) -> tuple[int, Any]:
        """POST a configuration change (``key=value`` assignments) over ``version``."""
        body = {"set": list(assignments), "expected_version": version}
        return await self.post("/api/admin/config", body)

    async def post(self, path: str, body: Any, *, csrf: str | None = "") -> tuple[int, Any]:
        token = self.csrf if csrf == "" else csrf
        headers = {} if token is None else {"X-CSRF-Token": token}
        async with self.http.post(self.url + path, json=body, headers=headers) as r:
            return r.status, await r.json()


async def client(http: aiohttp.ClientSession, console: ConsoleServer, user: str) -> Client:
    url = base(console)
    assert await login(http, url, user, PASSWORDS[user]) == 302
    async with http.get(f"{url}/api/me") as r:
        me = await r.json()
    return Client(http, url, me["csrf"])


@pytest.fixture
async def root(console: ConsoleServer) -> AsyncIterator[Client]:
    """The admin ``root``, logged in through the login form (a browser session)."""
    async with session() as http:
        yield await client(http, console, "root")


async def stored(redis: Any, keys: Keys) -> list[dict[str, Any]]:
    return [v.to_dict() for v in await load_versions(redis, keys)]


async def test_view_change_history_diff_and_rollback(
    console: ConsoleServer, root: Client, keys: Keys, redis_client: Any
) -> None:
    status, cur = await root.get("/api/admin/config")
    # No configuration yet: version 0 shows the start-time settings a change starts from.
    assert status == 200 and cur["version"] == 0 and cur["doc"] == seed_document({}, Model())
    status, answer = await root.get("/api/admin/config", version="1")
    assert status == 400 and answer["error"] == "invalid version: no version 1 (newest: 0)"
    change = {"set": ["threshold=0.7"], "comment": "first", "expected_version": 0}
    status, v1 = await root.post("/api/admin/config", change)
    assert status == 200, v1
    assert (v1["version"], v1["who"], v1["comment"]) == (1, "console:root", "first")
    change = {"set": "threshold=0.8\nws.queue_size=50", "expected_version": 1}
    status, v2 = await root.post("/api/admin/config", change)
    assert status == 200 and v2["version"] == 2, v2
    status, cur = await root.get("/api/admin/config")
    assert cur["version"] == 2 and cur["doc"]["model"]["threshold"] == 0.8
    assert cur["doc"]["ws"]["queue_size"] == 50 and cur["fingerprint"] == v2["fingerprint"]
    status, hist = await root.get("/api/admin/config/history")
    assert [(v["version"], v["who"]) for v in hist["versions"]] == [
        (1, "console:root"),
        (2, "console:root"),
    ]
    assert "doc" not in hist["versions"][0] and hist["current"] == 2
    status, diff = await root.get("/api/admin/config/diff")  # previous vs current
    assert status == 200 and (diff["a"], diff["b"]) == (1, 2)
    assert diff["lines"] == ["model.threshold: 0.7 -> 0.8", "ws.queue_size: 10000 -> 50"]
    # The CLI's own code gives the same lines (one diff, not two).
    assert diff["lines"] == diff_lines(*diff_versions(await load_versions(redis_client, keys)))
    assert diff["changes"][0] == {"key": "model.threshold", "old": 0.7, "new": 0.8}

    status, v3 = await root.post(
        "/api/admin/config/rollback", {"version": 1, "expected_version": 2}
    )
    assert status == 200, v3
    assert (v3["version"], v3["comment"], v3["who"]) == (
        3,
        "rollback to version 1",
        "console:root",
    )
    history = await stored(redis_client, keys)
    assert [v["version"] for v in history] == [1, 2, 3]
    assert history[2]["doc"] == history[0]["doc"]
    assert history[2]["fingerprint"] == history[0]["fingerprint"]
    status, diff = await root.get("/api/admin/config/diff", a="1", b="3")
    assert diff["changes"] == [] and diff["lines"][0].endswith("same document")
    status, old = await root.get("/api/admin/config", version="2")
    assert status == 200 and old["version"] == 2 and old["current"] == 3


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # The model's own validation (model_from_mapping) names the parameter in the line.
        ({"set": ["threshold=2"]}, ("model", "threshold must be a number 0..1")),
        ({"set": ["ws.max_connections=0"]}, ("ws.max_connections", "expected an integer")),
        ({"set": ["sink.retention_s.ticks=soon"]}, ("sink.retention_s.ticks", "")),
        ({"set": ["timeframes=1m"]}, ("timeframes", "set TIMEFRAMES in the environment")),
        ({"set": ["nonsense"]}, ("nonsense", "expected KEY=VALUE")),
        ({"set": ["threshold=0.7"], "expected_version": None}, ("expected_version", "required")),
        ({"set": ["threshold=0.7"], "effective_from": "tomorrow"}, ("effective_from", "")),
        ({"doc": {"model": {"threshold": 0.7}, "detectors": {}}}, ("detectors", "unknown key")),
        ({}, ("set", "nothing to change")),
    ],
)  # fmt: skip
async def test_an_invalid_change_is_400_naming_the_key_and_writes_nothing(
    root: Client,
    keys: Keys,
    redis_client: Any,
    body: dict[str, Any],
    expected: tuple[str, str],
) -> None:
    key, says = expected
    status, _ = await root.change("threshold=0.6", version=0)
    assert status == 200
    before = await stored(redis_client, keys)
    status, answer = await root.post("/api/admin/config", {"expected_version": 1, **body})
    assert status == 400, answer
    assert answer["key"] == key and answer["error"].startswith(f"invalid {key}: ")
    assert says in answer["error"]
    assert "\n" not in answer["error"]
    assert await stored(redis_client, keys) == before
    status, answer = await root.post(
        "/api/admin/config/rollback", {"version": 9, "expected_version": 1}
    )
    assert status == 400 and answer["error"] == "invalid version: no version 9 (newest: 1)"
    assert await stored(redis_client, keys) == before


async def test_a_change_from_a_stale_version_is_409_and_nothing_is_lost(
    console: ConsoleServer, keys: Keys, redis_client: Any
) -> None:
    async with session() as a_http, session() as b_http:
        a = await client(a_http, console, "root")
        b = await client(b_http, console, "root")
        assert (await a.change("threshold=0.6", version=0))[0] == 200
        # Both pages show version 1; A changes first, B's change (made from 1) is refused.
        status, _ = await a.change("threshold=0.7", version=1)
        assert status == 200
        status, answer = await b.change("ws.queue_size=7", version=1)
        assert status == 409 and answer["reason"] == "conflict" and answer["value"] == 2
        assert "changed meanwhile (now version 2)" in answer["error"]
        status, answer = await b.post(
            "/api/admin/config/rollback", {"version": 1, "expected_version": 1}
        )
        assert status == 409 and answer["reason"] == "conflict"
        history = await stored(redis_client, keys)
        assert [v["version"] for v in history] == [1, 2]
        assert history[-1]["doc"]["model"]["threshold"] == 0.7  # A's change kept
        assert history[-1]["doc"]["ws"]["queue_size"] == 10_000  # B's not written


async def test_effective_from_and_the_scored_mark(
    root: Client, keys: Keys, redis_client: Any
) -> None:
    assert (await root.change("threshold=0.6", version=0))[0] == 200
    await redis_client.set(keys.config_scored, T + 30_000)  # the signals stage scored this
    status, cur = await root.get("/api/admin/config")
    assert cur["scored_through"] == T + 30_000 and cur["next_effective_from"] == T + 60_000
    past = {"set": ["threshold=0.7"], "expected_version": 1, "effective_from": T}
    status, answer = await root.post("/api/admin/config", past)
    assert status == 409 and answer["reason"] == "past"
    later = {**past, "effective_from": "2024-08-09T00:05:00Z"}
    status, v2 = await root.post("/api/admin/config", later)
    assert status == 200 and v2["effective_from"] == T + 5 * 60_000
    status, v3 = await root.change("threshold=0.8", version=2)
    assert status == 200 and v3["effective_from"] == T + 5 * 60_000  # never before v2's


async def test_profiles_save_and_load(root: Client, keys: Keys, redis_client: Any) -> None:
    assert (await root.change("threshold=0.55", version=0))[0] == 200
    status, saved = await root.post(
        "/api/admin/config/profiles", {"action": "save", "name": "calm"}
    )
    assert status == 200 and saved == {"saved": "calm", "from_version": 1}
    assert (await root.change("threshold=0.9", version=1))[0] == 200
    assert (await root.get("/api/admin/config/profiles"))[1] == {"profiles": ["calm"]}
    load = {"action": "load", "name": "calm", "expected_version": 2}
    status, v3 = await root.post("/api/admin/config/profiles", load)
    assert status == 200 and v3["version"] == 3
    history = await stored(redis_client, keys)
    assert history[2]["fingerprint"] == history[0]["fingerprint"]
    status, answer = await root.post(
        "/api/admin/config/profiles", {**load, "name": "none", "expected_version": 3}
    )
    assert status == 400 and answer["key"] == "profile"


ROUTES = [
    ("GET", "/api/admin/config", None),
    ("GET", "/api/admin/config/history", None),
    ("GET", "/api/admin/config/diff", None),
    ("GET", "/api/admin/config/profiles", None),
    ("POST", "/api/admin/config", {"set": ["threshold=0.7"], "expected_version": 1}),
    ("POST", "/api/admin/config/rollback", {"version": 1, "expected_version": 1}),
    ("POST", "/api/admin/config/profiles", {"action": "save", "name": "x"}),
]


async def test_viewers_are_refused_and_a_session_needs_its_csrf_token(
    console: ConsoleServer, root: Client, keys: Keys, redis_client: Any
) -> None:
    assert (await root.change("threshold=0.6", version=0))[0] == 200
    before = await stored(redis_client, keys)
    for missing in (None, "forged"):  # no token, a wrong token
        for method, path, body in ROUTES:
            if method == "POST":
                status, answer = await root.post(path, body, csrf=missing)
                assert status == 403 and "CSRF" in answer["error"], (path, missing)
    async with session() as http:
        ada = await client(http, console, "ada")
        for method, path, body in ROUTES:
            status, answer = await (ada.get(path) if method == "GET" else ada.post(path, body))
            assert status == 403 and answer == {"error": "the admin role is required"}, path
        async with http.get(f"{base(console)}/admin") as r:
            assert r.status == 403
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}) as http:
        viewer = Client(http, base(console), "")
        for method, path, body in ROUTES:
            status, _ = await (viewer.get(path) if method == "GET" else viewer.post(path, body))
            assert status == 403, path
    assert await stored(redis_client, keys) == before


async def test_an_admin_token_changes_without_a_session(
    console: ConsoleServer, keys: Keys, redis_client: Any
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        ops = Client(http, base(console), "")
        status, v1 = await ops.post(
            "/api/admin/config", {"set": ["threshold=0.7"], "expected_version": 0}, csrf=None
        )
        assert status == 200 and v1["who"] == "console:ops"
    assert (await stored(redis_client, keys))[0]["who"] == "console:ops"
