"""CSV of what a page shows: signals, outcome rows, pattern statistics, for any filter.

Written page by page (the same keyset pages as the API) into a streamed response, so an
export of a year is never held in memory at once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import orjson

from signals.analytics.frames import OUTCOME_COLUMNS
from signals.console import queries
from signals.console.params import OutcomeFilter, SignalFilter, cursor_param

PAGE = 5000
SIGNAL_COLUMNS = (
    "id",
    "exchange",
    "symbol",
    "timeframe",
    "open_time",
    "direction",
    "score",
    "patterns",
    "model",
    "emitted_at",
)
STATS_COLUMNS = (
    "pattern", "direction", "timeframe", "horizon", "n", "hits", "hit_rate", "ci_low", "ci_high",
    "mean_ret", "median_ret", "expectancy", "base_hit_rate", "lift", "edge", "too_few",
)  # fmt: skip


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if value is None:
        return ""
    return value


def signal_csv_row(doc: dict[str, Any], horizons: Sequence[str]) -> list[Any]:
    row = [_cell(doc.get(c)) for c in SIGNAL_COLUMNS]
    for h in horizons:
        o = doc.get("outcomes", {}).get(h, {})
        row += [_cell(o.get("ret")), _cell(o.get("hit"))]
    return row


async def signals_csv(
    pool: asyncpg.Pool, f: SignalFilter, horizons: Sequence[str], outcomes: bool
) -> AsyncIterator[str]:
    header = list(SIGNAL_COLUMNS)
    for h in horizons:
        header += [f"ret_{h}", f"hit_{h}"]
    yield csv_lines(header, [])
    page = replace(f, limit=PAGE)
    while True:
        docs, nxt = await queries.fetch_signals(pool, page, outcomes=outcomes)
        yield csv_lines((), (signal_csv_row(d, horizons) for d in docs))
        if nxt is None:
            return
        page = replace(page, cursor=cursor_param({"before": nxt}))


async def outcomes_csv(pool: asyncpg.Pool, f: OutcomeFilter) -> AsyncIterator[str]:
    yield csv_lines(OUTCOME_COLUMNS, [])
    page = replace(f, limit=PAGE, offset=0)
    while True:
        rows, nxt = await queries.fetch_outcomes(pool, page)
        yield csv_lines((), ([_cell(r[c]) for c in OUTCOME_COLUMNS] for r in rows))
        if nxt is None:
            return
        page = replace(page, offset=nxt)


async def stats_csv(rows: list[dict[str, Any]]) -> AsyncIterator[str]:
    """The ranked table as the page shows it (rows of ``pattern_table``)."""
    yield csv_lines(STATS_COLUMNS, ([_cell(r[c]) for c in STATS_COLUMNS] for r in rows))
