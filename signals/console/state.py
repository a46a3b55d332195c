"""The keys of what the console keeps on its aiohttp application (typed ``AppKey``s)."""

from __future__ import annotations

import aiohttp
import asyncpg
from aiohttp import web

from common.redis import AnyRedis
from signals.console.auth import LoginLimiter, Session, SessionStore
from signals.console.overview import Overview
from signals.console.settings import ConsoleSettings

SETTINGS = web.AppKey("settings", ConsoleSettings)
SESSIONS = web.AppKey("sessions", SessionStore)
LIMITER = web.AppKey("limiter", LoginLimiter)
POOL = web.AppKey("pool", asyncpg.Pool)
REDIS: web.AppKey[AnyRedis] = web.AppKey("redis")
OVERVIEW = web.AppKey("overview", Overview)
HTTP = web.AppKey("http", aiohttp.ClientSession)
# Whether the outcomes stage's view ``outcome_rows`` exists (looked up at start, and again
# while it does not, so the page fills in once the outcomes migration has run).
HAS_OUTCOMES = web.AppKey("has_outcomes", list)

# Who made the request (set by the authentication middleware).
USER = web.RequestKey("user", str)
ROLE = web.RequestKey("role", str)
SESSION: web.RequestKey[Session | None] = web.RequestKey("session")
