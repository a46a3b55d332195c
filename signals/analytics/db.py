"""Database shell of the statistics: the pattern table from ``outcome_rows`` and ``bars``.

:func:`pattern_table` (async, an asyncpg connection) is the API the web console's Patterns
page calls; ``alphapulse stats --db`` uses :func:`pattern_table_sync`. Two sources (sink
migration 0005):

* ``fresh=False`` (default) — the pre-aggregated ``pattern_stats_agg`` and
  ``baseline_stats_agg`` (sums per exchange and symbol; as of their last
  :func:`refresh`), a few thousand rows whatever the outcome count; no median;
* ``fresh=True`` — one GROUP BY over the view ``outcome_rows`` (filters in its WHERE) and
  ``baseline_stats(h, cost)`` per horizon (window functions over ``bars``): exact now,
  with the median, and as slow as the data is big.

Then the same Wilson intervals, lift, "too few" and ranking as the file path
(:mod:`.stats`). The HAC p-value needs every bar's outcome series, so it is left to the file
path (``replay --out`` / ``stats DIR``); rows here carry ``p_hit: null``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from signals.analytics.measures import rank_rows, wilson
from signals.analytics.stats import StatsOptions
from signals.analytics.table import Filters

_DIMS = ("pattern", "direction", "timeframe", "horizon")


def _where(f: Filters, first: Sequence[str]) -> tuple[list[str], list[Any]]:
    where = list(first)
    args: list[Any] = []
    for col, value in (
        ("pattern", f.pattern_name()),
        ("direction", f.direction),
        ("timeframe", f.timeframe),
        ("horizon", f.horizon),
        ("exchange", f.exchange),
        ("symbol", f.symbol),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{col} = ${len(args)}")
    return where, args


# Where a group's measures come from: (source, its first condition, the measures).
_FRESH = (
    "outcome_rows",
    "kind = 'pattern'",
    "count(*) AS n, count(*) FILTER (WHERE hit) AS hits, avg(ret) AS mean_ret, "
    "percentile_cont(0.5) WITHIN GROUP (ORDER BY ret) AS median_ret, "
    "avg(mfe) AS mean_mfe, avg(mae) AS mean_mae",
)
_AGGREGATED = (  # the sums of the last refresh: no median (medians do not add up)
    "pattern_stats_agg",
    "true",
    "sum(n) AS n, sum(hits) AS hits, sum(sum_ret) / sum(n) AS mean_ret, "
    "NULL::double precision AS median_ret, sum(sum_mfe) / sum(n) AS mean_mfe, "
    "sum(sum_mae) / sum(n) AS mean_mae",
)


def _group_query(
    source: tuple[str, str, str], f: Filters, by: Sequence[str]
) -> tuple[str, list[Any]]:
    table, first, measures = source
    where, args = _where(f, [first])
    cols = ", ".join([*_DIMS, *by])
    sql = f"SELECT {cols}, {measures} FROM {table} WHERE {' AND '.join(where)} GROUP BY {cols}"
    return sql, args


def outcome_query(f: Filters, by: Sequence[str]) -> tuple[str, list[Any]]:
    """The GROUP BY over ``outcome_rows`` for the filters (parameters, never interpolated)."""
    return _group_query(_FRESH, f, by)


def aggregate_query(f: Filters, by: Sequence[str]) -> tuple[str, list[Any]]:
    """The same groups from the pre-aggregated ``pattern_stats_agg`` (no median)."""
    return _group_query(_AGGREGATED, f, by)


async def refresh(conn: asyncpg.Connection) -> None:
    """Recompute the pre-aggregated tables from ``outcome_rows`` and ``bars``."""
    await conn.execute("SELECT refresh_outcome_stats()")


async def baseline(
    conn: asyncpg.Connection,
    horizons: Sequence[int],
    cost: float,
    by: Sequence[str],
    fresh: bool = False,
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Random-entry hit rate and mean return per (timeframe, *by, direction, horizon)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    dims = ["timeframe", *by, "direction", "horizon"]
    cols = ", ".join(dims)
    source = "baseline_stats($1, $2)" if fresh else "baseline_stats_agg WHERE horizon = $1"
    sql = f"SELECT {cols}, sum(n) AS n, sum(hits) AS hits, sum(sum_ret) AS s "
    sql += f"FROM {source} GROUP BY {cols}"
    for h in horizons:
        rows = await conn.fetch(sql, *((h, cost) if fresh else (h,)))
        for r in rows:
            n = int(r["n"])
            out[tuple(r[d] for d in dims)] = {
                "n": n,
                "hit_rate": int(r["hits"]) / n if n else None,
                "mean_ret": r["s"] / n if n else None,
            }
    return out


async def pattern_table(
    conn: asyncpg.Connection, filters: Filters, opts: StatsOptions, *, fresh: bool = False
) -> list[dict[str, Any]]:
    """The ranked pattern table (the same row keys as ``stats.json``'s ``patterns``).

    ``fresh=False`` reads the pre-aggregated tables (fast, as of the last :func:`refresh`,
    no median); ``fresh=True`` groups ``outcome_rows`` now.
    """
    sql, args = (outcome_query if fresh else aggregate_query)(filters, opts.by)
    groups = await conn.fetch(sql, *args)
    horizons = sorted({int(g["horizon"]) for g in groups})
    base = await baseline(conn, horizons, opts.cost, opts.by, fresh)
    rows = []
    for g in groups:
        n, hits = int(g["n"]), int(g["hits"])
        lo, hi = wilson(hits, n)
        key = (g["timeframe"], *(g[d] for d in opts.by), g["direction"], g["horizon"])
        b = base.get(key, {"n": 0, "hit_rate": None, "mean_ret": None})
        rate = hits / n if n else None
        lift = rate / b["hit_rate"] if rate is not None and b["hit_rate"] else None
        rows.append(
            {
                **{d: g[d] for d in (*_DIMS, *opts.by)},
                "n": n,
                "hits": hits,
                "hit_rate": rate,
                "ci_low": lo,
                "ci_high": hi,
                "mean_ret": g["mean_ret"],
                "median_ret": g["median_ret"],
                "expectancy": None if g["mean_ret"] is None else g["mean_ret"] - opts.cost,
                "mean_mfe": g["mean_mfe"],
                "mean_mae": g["mean_mae"],
                "too_few": n < opts.min_n,
                "base_n": b["n"],
                "base_hit_rate": b["hit_rate"],
                "base_mean_ret": b["mean_ret"],
                "lift": lift,
                "edge": None if lift is None or rate is None else rate - b["hit_rate"],
                "excess_ret": None
                if g["mean_ret"] is None or b["mean_ret"] is None
                else g["mean_ret"] - b["mean_ret"],
                "p_hit": None,
                "p_ret": None,
            }
        )
    return rank_rows(rows)


def pattern_table_sync(
    url: str, filters: Filters, opts: StatsOptions, *, fresh: bool = False, refreshed: bool = False
) -> list[dict[str, Any]]:
    """:func:`pattern_table` on a fresh connection to ``url`` (the CLI)."""
    if not url:
        from common.errors import ConfigError  # noqa: PLC0415

        raise ConfigError("DATABASE_URL", "set it to query the database (stats --db)")

    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            if refreshed:
                await refresh(conn)
            return await pattern_table(conn, filters, opts, fresh=fresh)
        finally:
            await conn.close()

    return asyncio.run(run())
