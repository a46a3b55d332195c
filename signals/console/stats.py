"""The Patterns page's statistics.

The ranked table is the statistics stage's own (``signals.analytics.db.pattern_table``: one
GROUP BY over ``outcome_rows``, Wilson intervals, the random-entry baseline and lift, ranked;
docs/statistics.md). What that module does not split by — the regime (trend at the bar) — is
grouped here from the same view, with the same Wilson interval.
"""

from __future__ import annotations

from typing import Any

from signals.analytics.measures import wilson


def regime_rows(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows per (pattern, horizon, trend sign) with the hit rate's Wilson interval, ranked by
    its lower bound (a pattern seen 3 times with 3 hits does not outrank 200 of 300)."""
    rows = []
    for g in groups:
        n, hits = int(g["n"]), int(g["hits"])
        lo, hi = wilson(hits, n)
        rows.append(
            {
                "pattern": g["pattern"],
                "horizon": g["horizon"],
                "trend": g.get("grp"),
                "n": n,
                "hits": hits,
                "hit_rate": hits / n if n else None,
                "ci_low": lo,
                "ci_high": hi,
                "mean_ret": g["mean"],
            }
        )
    rows.sort(key=lambda r: (-(r["ci_low"] or 0.0), r["pattern"], r["horizon"]))
    return rows
