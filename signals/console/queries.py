"""The console's reads from TimescaleDB/PostgreSQL (the sink's tables and ``outcome_rows``).

Every query is bounded by a ``LIMIT`` and pages with a keyset cursor (never OFFSET over a
hypertable for the time-ordered lists), so a huge range is served a page at a time. The
``outcome_rows`` view belongs to the outcomes stage (docs/outcomes.md); until it exists the
outcome columns are empty and the statistics say so (``has_outcomes``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import asyncpg
import orjson

from signals.analytics.frames import OUTCOME_COLUMNS  # the outcome_rows view's columns
from signals.console.params import OutcomeFilter, SeriesFilter, SignalFilter, make_cursor


def _ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


class Scope(Protocol):
    """What every filter of the console has: a series (parts may be None) and a time range."""

    @property
    def exchange(self) -> str | None: ...
    @property
    def symbol(self) -> str | None: ...
    @property
    def timeframe(self) -> str | None: ...
    @property
    def start(self) -> datetime | None: ...
    @property
    def end(self) -> datetime | None: ...


class Where:
    """``WHERE`` clauses with numbered parameters."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []

    def add(self, sql: str, *values: Any) -> None:
        """``sql`` with ``{}`` placeholders, one per value."""
        nums = []
        for v in values:
            self.args.append(v)
            nums.append(f"${len(self.args)}")
        self.clauses.append(sql.format(*nums))

    def eq(self, column: str, value: Any) -> None:
        if value is not None:
            self.add(f"{column} = {{}}", value)

    def scope(self, f: Scope, time_column: str, prefix: str = "") -> None:
        """The filter's series (``prefix``: a table alias with its dot) and its half-open
        time range ``[start, end)`` on ``time_column``."""
        self.eq(f"{prefix}exchange", f.exchange)
        self.eq(f"{prefix}symbol", f.symbol)
        self.eq(f"{prefix}timeframe", f.timeframe)
        if f.start is not None:
            self.add(f"{prefix}{time_column} >= {{}}", f.start)
        if f.end is not None:
            self.add(f"{prefix}{time_column} < {{}}", f.end)

    def param(self, value: Any) -> str:
        """A parameter after the ``WHERE`` clause (``LIMIT``, ``OFFSET``...): its placeholder."""
        self.args.append(value)
        return f"${len(self.args)}"

    def sql(self) -> str:
        return ("WHERE " + " AND ".join(self.clauses)) if self.clauses else ""


async def has_relation(pool: asyncpg.Pool, name: str) -> bool:
    return bool(await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


def _signal_where(f: SignalFilter) -> Where:
    w = Where()
    w.scope(f, "time")
    w.eq("direction", f.direction)
    if f.min_score is not None:
        w.add("score >= {}", f.min_score)
    if f.cursor is not None:
        w.add("(time, id) < ({}, {})", *f.cursor)
    return w


async def fetch_signals(
    pool: asyncpg.Pool, f: SignalFilter, *, outcomes: bool
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of signals, newest first, each the contract JSON plus its ``outcomes`` by
    horizon (``{"5": {"ret": .., "mfe": .., "mae": .., "hit": ..}}``, reached ones only);
    and the cursor of the next page (None at the end)."""
    w = _signal_where(f)
    rows = await pool.fetch(
        f"SELECT id, time, doc FROM signals {w.sql()} ORDER BY time DESC, id DESC "
        f"LIMIT {w.param(f.limit)}",
        *w.args,
    )
    docs = [orjson.loads(r["doc"]) for r in rows]
    if outcomes and docs:
        found = await fetch_signal_outcomes(pool, [d["id"] for d in docs])
        for d in docs:
            d["outcomes"] = found.get(d["id"], {})
    else:
        for d in docs:
            d["outcomes"] = {}
    nxt = make_cursor(rows[-1]["time"], rows[-1]["id"]) if len(rows) == f.limit else None
    return docs, nxt


async def fetch_signal_outcomes(
    pool: asyncpg.Pool, ids: list[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT id, horizon, ret, mfe, mae, hit FROM outcome_rows "
        "WHERE kind = 'signal' AND id = ANY($1::text[])",
        ids,
    )
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["id"], {})[str(r["horizon"])] = {
            "ret": r["ret"],
            "mfe": r["mfe"],
            "mae": r["mae"],
            "hit": r["hit"],
        }
    return out


def _series_where(f: SeriesFilter, time_column: str) -> Where:
    w = Where()
    w.scope(f, time_column)
    return w


def _json_page(*columns: str) -> str:
    """SQL: a page's rows as one JSON array text of ``[open_time_ms, *columns]`` rows, oldest
    first (``[]`` for none)."""
    return (
        "coalesce(json_agg(json_build_array((extract(epoch FROM open_time) * 1000)::bigint, "
        f"{', '.join(columns)}) ORDER BY open_time), '[]')::text"
    )


async def fetch_bars(pool: asyncpg.Pool, f: SeriesFilter) -> tuple[bytes, int | None]:
    """The newest ``limit`` bars of the range, oldest first, as a JSON array of compact rows
    ``[open_time_ms, open, high, low, close, volume]`` built by PostgreSQL (10,000 rows would
    cost more as Python objects than the query itself); and ``to`` of the page before
    (older), or None when the range holds no more."""
    w = _series_where(f, "open_time")
    limit = w.param(f.limit)
    row = await pool.fetchrow(
        f"SELECT {_json_page('open', 'high', 'low', 'close', 'volume')} AS bars, "
        "count(*) AS n, min(open_time) AS first "
        "FROM (SELECT open_time, open, high, low, close, volume FROM bars "
        f"{w.sql()} ORDER BY open_time DESC LIMIT {limit}) page",
        *w.args,
    )
    assert row is not None
    older = _ms(row["first"]) if row["n"] == f.limit else None
    return str(row["bars"]).encode(), older


async def fetch_markers(
    pool: asyncpg.Pool, f: SeriesFilter, *, outcomes: bool, horizon: int | None = None
) -> dict[str, Any]:
    """Pattern firings and signals of one series in the range (newest ``limit`` bars with a
    pattern): ``{"patterns": [[ms, {pattern: value}], ...], "signals": [...]}``; each signal
    has its features and, once known, its outcome at ``horizon`` (the shortest reached).
    The patterns are one JSON text built by PostgreSQL (an ``orjson.Fragment``: thousands of
    small dicts would cost more in Python than the query)."""
    w = _series_where(f, "open_time")
    limit = w.param(f.limit)
    patterns = await pool.fetchval(
        f"SELECT {_json_page('fired')} "
        "FROM (SELECT open_time, jsonb_object_agg(pattern, value) AS fired "
        f"FROM patterns {w.sql()} GROUP BY open_time ORDER BY open_time DESC "
        f"LIMIT {limit}) page",
        *w.args,
    )
    sw = _series_where(f, "time")
    limit = sw.param(f.limit)
    srows = await pool.fetch(
        f"SELECT doc FROM signals {sw.sql()} ORDER BY time DESC LIMIT {limit}", *sw.args
    )
    signals = [orjson.loads(r[0]) for r in reversed(srows)]
    if outcomes and signals:
        found = await fetch_signal_outcomes(pool, [s["id"] for s in signals])
        for s in signals:
            s["outcomes"] = found.get(s["id"], {})
    return {"patterns": orjson.Fragment(patterns), "signals": signals}


def _outcome_where(f: OutcomeFilter) -> Where:
    w = Where()
    w.eq("kind", f.kind)
    w.scope(f, "open_time")
    w.eq("pattern", f.pattern)
    w.eq("horizon", f.horizon)
    return w


async def fetch_outcomes(
    pool: asyncpg.Pool, f: OutcomeFilter
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of outcome rows in a stable order; and the offset of the next page."""
    w = _outcome_where(f)
    limit, offset = w.param(f.limit), w.param(f.offset)
    rows = await pool.fetch(
        f"SELECT {', '.join(OUTCOME_COLUMNS)} FROM outcome_rows {w.sql()} "
        "ORDER BY open_time, exchange, symbol, timeframe, kind, pattern NULLS FIRST, id, horizon "
        f"LIMIT {limit} OFFSET {offset}",
        *w.args,
    )
    out = []
    for r in rows:
        d = dict(r)
        d["open_time"] = _ms(d["open_time"])
        out.append(d)
    return out, (f.offset + f.limit if len(rows) == f.limit else None)


async def fetch_pattern_groups(
    pool: asyncpg.Pool, f: OutcomeFilter, by: str
) -> list[dict[str, Any]]:
    """Per pattern and horizon (``by="trend"``: and the sign of the trend at the bar): n,
    hits, mean and standard deviation of the return."""
    w = _outcome_where(f)
    w.add("kind = {}", "pattern")
    if by == "trend":
        group = "pattern, horizon, sign(trend)"
        extra = "sign(trend) AS grp"
    else:
        group = "pattern, horizon"
        extra = "NULL::double precision AS grp"
    rows = await pool.fetch(
        f"SELECT pattern, horizon, {extra}, count(*) AS n, count(*) FILTER (WHERE hit) AS hits, "
        "avg(ret) AS mean, stddev_samp(ret) AS sd FROM outcome_rows "
        f"{w.sql()} GROUP BY {group} ORDER BY pattern, horizon",
        *w.args,
    )
    return [dict(r) for r in rows]


async def fetch_cooccurrence(
    pool: asyncpg.Pool, f: OutcomeFilter, limit: int = 50
) -> list[dict[str, Any]]:
    """Pairs of patterns that fired on the same bar, most frequent first."""
    w = Where()
    w.scope(f, "open_time", prefix="a.")
    w.add("a.pattern < b.pattern")
    rows = await pool.fetch(
        "SELECT a.pattern AS a, b.pattern AS b, count(*) AS n FROM patterns a JOIN patterns b "
        "ON a.exchange = b.exchange AND a.symbol = b.symbol AND a.timeframe = b.timeframe "
        f"AND a.open_time = b.open_time {w.sql()} GROUP BY 1, 2 ORDER BY n DESC, a, b "
        f"LIMIT {w.param(limit)}",
        *w.args,
    )
    return [dict(r) for r in rows]


async def fetch_reliability(
    pool: asyncpg.Pool, f: OutcomeFilter, bins: int = 10
) -> list[dict[str, Any]]:
    """Signals' score against their hit rate, in ``bins`` equal score bins (reliability)."""
    w = _outcome_where(f)
    w.add("kind = {}", "signal")
    n = w.param(bins)
    rows = await pool.fetch(
        f"SELECT horizon, least(floor(score * {n}), {n} - 1)::int AS bin, count(*) AS n, "
        "avg(score)::float8 AS score, avg(hit::int)::float8 AS hit_rate FROM outcome_rows "
        f"{w.sql()} GROUP BY 1, 2 ORDER BY 1, 2",
        *w.args,
    )
    return [dict(r) for r in rows]


async def series_list(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every (exchange, symbol, timeframe) that has signals, for the pages' pickers."""
    rows = await pool.fetch(
        "SELECT DISTINCT exchange, symbol, timeframe FROM signals ORDER BY 1, 2, 3 LIMIT 500"
    )
    return [dict(r) for r in rows]
