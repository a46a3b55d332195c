"""The JSON API and the CSV export (documented in docs/console.md).

``GET /api/health``, ``/api/series``, ``/api/signals``, ``/api/bars``, ``/api/markers``,
``/api/outcomes``, ``/api/patterns`` (statistics), ``/api/overview``; ``/export/signals.csv``,
``/export/outcomes.csv``, ``/export/stats.csv`` take the same filters as their pages. A bad
parameter gets ``400 {"error": "<one line>"}``; lists are paged (``next`` in the answer).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from signals.analytics.db import pattern_table
from signals.analytics.stats import StatsOptions
from signals.analytics.table import Filters
from signals.console import queries
from signals.console.export import outcomes_csv, signals_csv, stats_csv
from signals.console.params import (
    OutcomeFilter,
    ParamError,
    SeriesFilter,
    SignalFilter,
    choice_param,
    int_param,
)
from signals.console.state import HAS_OUTCOMES, HTTP, OVERVIEW, POOL, REDIS
from signals.console.stats import regime_rows

MAX_BARS = 10_000
DEFAULT_HORIZONS = ("1", "5", "10", "20")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
    )


def checked(handler: Handler) -> Handler:
    """Turn a ``ParamError`` into ``400 {"error": reason}``."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ParamError as e:
            return _json({"error": str(e)}, 400)

    return run


async def detect_outcomes(app: web.Application) -> bool:
    """Whether ``outcome_rows`` exists now (remembered once it does)."""
    flag = app[HAS_OUTCOMES]
    if not flag and await queries.has_relation(app[POOL], "outcome_rows"):
        flag.append(True)
    return bool(flag)


async def health(request: web.Request) -> web.Response:
    app = request.app
    out: dict[str, Any] = {"redis": False, "database": False}
    try:
        out["redis"] = bool(await app[REDIS].ping())
    except (OSError, ConnectionError) as e:
        out["redis_error"] = type(e).__name__
    except Exception as e:  # redis-py raises its own tree
        out["redis_error"] = type(e).__name__
    try:
        out["database"] = await app[POOL].fetchval("SELECT 1") == 1
    except Exception as e:  # asyncpg raises its own tree
        out["database_error"] = type(e).__name__
    out["outcomes"] = await detect_outcomes(app) if out["database"] else False
    out["status"] = "ok" if out["redis"] and out["database"] else "degraded"
    return _json(out, 200 if out["status"] == "ok" else 503)


async def series(request: web.Request) -> web.Response:
    return _json({"series": await queries.series_list(request.app[POOL])})


async def signals(request: web.Request) -> web.Response:
    f = SignalFilter.parse(request.query)
    outcomes = await detect_outcomes(request.app)
    docs, nxt = await queries.fetch_signals(request.app[POOL], f, outcomes=outcomes)
    return _json({"signals": docs, "next": nxt, "outcomes": outcomes})


async def bars(request: web.Request) -> web.Response:
    f = SeriesFilter.parse(request.query, default_limit=1000, max_limit=MAX_BARS)
    rows, older = await queries.fetch_bars(request.app[POOL], f)
    body = b"".join(
        (b'{"columns":["time","open","high","low","close","volume"],"bars":', rows,
         b',"next_to":', orjson.dumps(older), b"}")
    )  # fmt: skip
    return web.Response(body=body, content_type="application/json")


async def markers(request: web.Request) -> web.Response:
    f = SeriesFilter.parse(request.query, default_limit=2000, max_limit=MAX_BARS)
    outcomes = await detect_outcomes(request.app)
    return _json(await queries.fetch_markers(request.app[POOL], f, outcomes=outcomes))


async def _need_outcomes(request: web.Request) -> None:
    if not await detect_outcomes(request.app):
        raise web.HTTPServiceUnavailable(
            text='{"error": "no outcome_rows view yet: the outcomes migration has not run"}',
            content_type="application/json",
        )


async def outcomes(request: web.Request) -> web.Response:
    f = OutcomeFilter.parse(request.query)
    await _need_outcomes(request)
    rows, nxt = await queries.fetch_outcomes(request.app[POOL], f)
    return _json({"outcomes": rows, "next_offset": nxt})


def stats_filters(f: OutcomeFilter, direction: str | None) -> Filters:
    """The statistics module's filters (it has no time range: its table is over all time)."""
    return Filters(
        pattern=f.pattern, direction=direction, timeframe=f.timeframe, horizon=f.horizon,
        exchange=f.exchange, symbol=f.symbol,
    )  # fmt: skip


async def ranked_table(request: web.Request, f: OutcomeFilter) -> list[dict[str, Any]]:
    direction = choice_param(request.query, "direction", ("long", "short"))
    async with request.app[POOL].acquire() as conn:
        return await pattern_table(conn, stats_filters(f, direction), StatsOptions())


async def patterns(request: web.Request) -> web.Response:
    """The ranked pattern table (the statistics module's), the regime split by trend,
    co-occurring pairs and the signals' reliability diagram."""
    f = OutcomeFilter.parse(request.query)
    await _need_outcomes(request)
    pool = request.app[POOL]
    return _json(
        {
            "rows": await ranked_table(request, f),
            "regime": regime_rows(await queries.fetch_pattern_groups(pool, f, "trend")),
            "cooccurrence": await queries.fetch_cooccurrence(pool, f),
            "reliability": await queries.fetch_reliability(pool, f),
        }
    )


async def overview(request: web.Request) -> web.Response:
    return _json(await request.app[OVERVIEW].snapshot(request.app[HTTP]))


async def _csv(request: web.Request, name: str, chunks: AsyncIterator[str]) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
    )
    await resp.prepare(request)
    async for chunk in chunks:
        await resp.write(chunk.encode())
    await resp.write_eof()
    return resp


async def export_signals(request: web.Request) -> web.StreamResponse:
    f = SignalFilter.parse(request.query)
    horizons = _horizons(request)
    outcomes = await detect_outcomes(request.app)
    return await _csv(
        request,
        "signals.csv",
        signals_csv(request.app[POOL], f, horizons if outcomes else (), outcomes),
    )


def _horizons(request: web.Request) -> tuple[str, ...]:
    raw = request.query.get("horizons")
    if not raw:
        return DEFAULT_HORIZONS
    return tuple(str(int_param({"horizons": h}, "horizons", 1, 1, 100_000)) for h in raw.split(","))


async def export_outcomes(request: web.Request) -> web.StreamResponse:
    f = OutcomeFilter.parse(request.query)
    await _need_outcomes(request)
    return await _csv(request, "outcomes.csv", outcomes_csv(request.app[POOL], f))


async def export_stats(request: web.Request) -> web.StreamResponse:
    f = OutcomeFilter.parse(request.query)
    await _need_outcomes(request)
    return await _csv(request, "statistics.csv", stats_csv(await ranked_table(request, f)))


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/api/health", health)
    r.add_get("/api/series", series)
    r.add_get("/api/signals", checked(signals))
    r.add_get("/api/bars", checked(bars))
    r.add_get("/api/markers", checked(markers))
    r.add_get("/api/outcomes", checked(outcomes))
    r.add_get("/api/patterns", checked(patterns))
    r.add_get("/api/overview", overview)
    r.add_get("/export/signals.csv", checked(export_signals))
    r.add_get("/export/outcomes.csv", checked(export_outcomes))
    r.add_get("/export/stats.csv", checked(export_stats))
