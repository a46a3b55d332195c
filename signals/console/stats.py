"""The Patterns page's statistics from the sums ``queries.fetch_pattern_groups`` returns.

Per pattern and horizon: n, hit rate with its Wilson score interval (95 %), mean return with
a normal-approximation interval, ranked by the lower bound of the hit-rate interval (a
pattern seen 3 times with 3 hits does not outrank one seen 300 times with 200). The
``stats`` stage's module (docs/statistics.md) is the reference for the full statistics;
this is what the page needs from SQL sums.
"""

from __future__ import annotations

import math
from typing import Any

Z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson 1927); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def pattern_rows(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ranked rows (best lower bound first) from per (pattern, horizon[, grp]) sums."""
    rows = []
    for g in groups:
        n, hits = int(g["n"]), int(g["hits"])
        lo, hi = wilson(hits, n)
        mean = g["mean"]
        sd = g["sd"]
        half = Z95 * sd / math.sqrt(n) if sd is not None and n > 1 else None
        rows.append(
            {
                "pattern": g["pattern"],
                "horizon": g["horizon"],
                "group": g.get("grp"),
                "n": n,
                "hits": hits,
                "hit_rate": hits / n if n else None,
                "hit_lo": lo,
                "hit_hi": hi,
                "mean_ret": mean,
                "ret_lo": None if half is None or mean is None else mean - half,
                "ret_hi": None if half is None or mean is None else mean + half,
            }
        )
    rows.sort(key=lambda r: (-r["hit_lo"], r["pattern"], r["horizon"]))
    return rows
