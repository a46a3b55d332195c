"""The console's HTTP server (aiohttp): login, sessions, roles, CSRF, pages and routes.

Every request but ``/healthz`` and the login page needs a session cookie (set at login:
HttpOnly, SameSite=Strict) or an API token (``Authorization: Bearer``; the signals
WebSocket tokens are viewer tokens here too). Requests that change state (anything but
GET/HEAD) made with a session also need its CSRF token in ``X-CSRF-Token`` (or a ``csrf``
form field); the login form uses a double-submit cookie. ``/admin`` and ``/api/admin/*`` are
for the ``admin`` role. Failed logins are limited per user name and per address.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from html import escape
from pathlib import Path
from urllib.parse import quote

import aiohttp
import asyncpg
from aiohttp import web

from common.lifecycle import Service
from common.logging import get_logger
from common.redis import AnyRedis, redis_from_settings
from signals.console import adminconfig, api, live
from signals.console.auth import LoginLimiter, SessionStore, check_password, check_token
from signals.console.live import FEED
from signals.console.overview import Overview
from signals.console.settings import ConsoleSettings
from signals.console.state import (
    HAS_OUTCOMES,
    HTTP,
    LIMITER,
    OVERVIEW,
    POOL,
    REDIS,
    ROLE,
    SESSION,
    SESSIONS,
    SETTINGS,
    USER,
)

STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "ap_session"
LOGIN_CSRF_COOKIE = "ap_login_csrf"
PUBLIC = frozenset({"/healthz", "/login", "/static/console.css", "/favicon.ico"})
PAGES = ("overview", "signals", "chart", "patterns", "export")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Set ``request[USER]``, ``[ROLE]`` and ``[SESSION]``, or refuse the request."""
    path = request.path
    if path in PUBLIC:
        return await handler(request)
    app = request.app
    session = app[SESSIONS].get(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        request[USER], request[ROLE], request[SESSION] = session.user, session.role, session
        if request.method not in SAFE_METHODS:
            sent = request.headers.get("X-CSRF-Token")
            if sent is None and request.content_type == "application/x-www-form-urlencoded":
                sent = str((await request.post()).get("csrf", ""))
            if not sent or not secrets.compare_digest(sent, session.csrf):
                return _error(403, "missing or wrong CSRF token")
    else:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        found = (
            check_token(app[SETTINGS].tokens, token.strip()) if scheme.lower() == "bearer" else None
        )
        if found is None:
            if path.startswith(("/api/", "/export/")):
                return _error(401, "login required: a session cookie or a bearer token")
            raise web.HTTPFound(f"/login?next={quote(request.path_qs, safe='/')}")
        request[USER], request[ROLE], request[SESSION] = found.name, found.role, None
    if path.startswith(("/admin", "/api/admin/")) and request[ROLE] != "admin":
        return _error(403, "the admin role is required")
    return await handler(request)


def _login_page(csrf: str, next_url: str, message: str = "") -> str:
    template = (STATIC / "login.html").read_text()
    return (
        template.replace("{{csrf}}", escape(csrf))
        .replace("{{next}}", escape(next_url))
        .replace("{{message}}", escape(message))
    )


def _safe_next(value: str) -> str:
    """Only local paths: never redirect a login to another site."""
    local = value.startswith("/") and not value.startswith(("//", "/\\")) and "\\" not in value
    return value if local else "/overview"


async def login_form(request: web.Request) -> web.Response:
    # Keep the token a browser already has: a second login page (another tab, a redirected
    # side request) must not invalidate the form of the first.
    csrf = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    resp = web.Response(
        text=_login_page(csrf, _safe_next(request.query.get("next", "/overview"))),
        content_type="text/html",
    )
    resp.set_cookie(
        LOGIN_CSRF_COOKIE,
        csrf,
        httponly=True,
        samesite="Strict",
        secure=request.app[SETTINGS].secure_cookies,
        path="/login",
    )
    return resp


async def login(request: web.Request) -> web.StreamResponse:
    app = request.app
    form = await request.post()
    name, password = str(form.get("username", "")), str(form.get("password", ""))
    next_url = _safe_next(str(form.get("next", "/overview")))
    cookie_csrf = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie_csrf or not secrets.compare_digest(cookie_csrf, str(form.get("csrf", ""))):
        return _error(403, "missing or wrong CSRF token: reload the login page")
    address = request.remote or "?"
    keys = (f"user:{name}", f"addr:{address}")
    wait = app[LIMITER].retry_after(*keys)
    if wait > 0:
        get_logger("console").warning("login_rate_limited", user=name, address=address)
        return web.Response(
            status=429,
            text="too many failed logins, try again later\n",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    user = check_password(app[SETTINGS].users, name, password)
    if user is None:
        app[LIMITER].failed(*keys)
        get_logger("console").warning("login_failed", user=name, address=address)
        return web.Response(
            status=401,
            text=_login_page(cookie_csrf, next_url, "wrong user name or password"),
            content_type="text/html",
        )
    app[LIMITER].succeeded(*keys)
    session = app[SESSIONS].create(user.name, user.role)
    get_logger("console").info("login", user=user.name, role=user.role)
    resp = web.HTTPFound(next_url)
    resp.set_cookie(
        SESSION_COOKIE,
        session.id,
        httponly=True,
        samesite="Strict",
        secure=app[SETTINGS].secure_cookies,
        max_age=app[SETTINGS].session_ttl_s,
        path="/",
    )
    resp.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    raise resp


async def logout(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    if session is not None:
        request.app[SESSIONS].delete(session.id)
    resp = web.HTTPFound("/login")
    resp.del_cookie(SESSION_COOKIE, path="/")
    raise resp


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def favicon(_: web.Request) -> web.Response:
    return web.Response(status=204)


_INCLUDE = re.compile(r"\{\{include:([a-z-]+)\}\}")


def render_page(name: str) -> str:
    """A console page: the head every page shares (``static/head.html``, titled ``name``),
    then ``static/<name>.html`` (any head tags of its own, ``</head>`` and its body), where
    ``{{include:part}}`` stands for ``static/part.html`` (markup several pages share)."""
    head = (STATIC / "head.html").read_text().replace("{{title}}", name)
    body = (STATIC / f"{name}.html").read_text()
    return head + _INCLUDE.sub(lambda m: (STATIC / f"{m[1]}.html").read_text().rstrip("\n"), body)


def page(name: str) -> Handler:
    html = render_page(name)  # once, when the routes are made

    async def serve(_: web.Request) -> web.StreamResponse:
        return web.Response(text=html, content_type="text/html")

    return serve


async def me(request: web.Request) -> web.Response:
    session = request[SESSION]
    return web.json_response(
        {
            "user": request[USER],
            "role": request[ROLE],
            "csrf": session.csrf if session is not None else None,
        }
    )


async def admin_sessions(request: web.Request) -> web.Response:
    s = request.app[SETTINGS]
    return web.json_response(
        {
            "sessions": len(request.app[SESSIONS]),
            "users": [{"name": u.name, "role": u.role} for u in s.users],
            "tokens": [{"name": t.name, "role": t.role} for t in s.tokens],
        }
    )


async def vendor_chart(request: web.Request) -> web.StreamResponse:
    """lightweight-charts from node_modules (installed by ``npm ci``; not in the repo)."""
    dist = request.app[SETTINGS].node_modules / "lightweight-charts" / "dist"
    return web.FileResponse(dist / "lightweight-charts.standalone.production.js")


def build_app(settings: ConsoleSettings, redis: AnyRedis, pool: asyncpg.Pool) -> web.Application:
    app = web.Application(middlewares=[authenticate])
    app[SETTINGS] = settings
    app[SESSIONS] = SessionStore(settings.session_ttl_s)
    app[LIMITER] = LoginLimiter(settings.login_failures, settings.login_window_s)
    app[POOL] = pool
    app[REDIS] = redis
    keys = settings.common.keys()
    app[OVERVIEW] = Overview(redis, keys, settings.workers, settings.prometheus_url)
    app[FEED] = live.LiveFeed(redis, keys.signals, settings.common.block_ms)
    app[HAS_OUTCOMES] = []
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/favicon.ico", favicon)
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/", root)
    for name in PAGES:
        r.add_get(f"/{name}", page(name))
    r.add_get("/admin", page("admin"))
    r.add_get("/api/me", me)
    r.add_get("/api/admin/sessions", admin_sessions)
    r.add_get("/vendor/lightweight-charts.js", vendor_chart)
    r.add_static("/static", STATIC)
    api.add_routes(r)
    adminconfig.add_routes(r)
    live.add_routes(r)
    return app


async def root(_: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/overview")


class ConsoleServer(Service):
    """The ``web`` process: the console's pages, JSON API and live feeds on one port."""

    name = "console"

    def __init__(self, settings: ConsoleSettings, *, redis: AnyRedis | None = None) -> None:
        super().__init__()
        self.settings = settings
        self._owns_redis = redis is None
        self.redis = redis if redis is not None else redis_from_settings(settings.common)
        self.pool: asyncpg.Pool | None = None
        self.runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.port = 0

    async def start(self) -> None:
        await super().start()
        self.pool = await asyncpg.create_pool(self.settings.database_url, min_size=1, max_size=8)
        self.app = build_app(self.settings, self.redis, self.pool)
        self.app[HTTP] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        await api.detect_outcomes(self.app)
        await self.app[FEED].start()
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.host, self.settings.port)
        await site.start()
        self.port = int(self.runner.addresses[0][1])  # the bound port when CONSOLE_PORT=0
        self.readiness.set("connected")
        self.readiness.set("consuming")
        get_logger("console").debug("console_listening", host=self.settings.host, port=self.port)

    async def run(self) -> None:
        assert self.app is not None
        await self.app[FEED].run_until(self._stop_requested)

    async def close(self) -> None:
        if self.app is not None:
            await self.app[FEED].close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.app is not None:
            await self.app[HTTP].close()
        if self.pool is not None:
            await self.pool.close()
        if self._owns_redis:
            await self.redis.aclose()
