"""Pattern and signal statistics over outcome rows, against a random-entry baseline (pure).

For each group (pattern x direction x timeframe x horizon, optionally x exchange/symbol and
x regime; signals per score decile):

* ``n``, hits, hit rate with a **Wilson 95% interval** (``statsmodels proportion_confint``),
  mean and median return, expectancy (mean return minus the cost that defines a hit), mean
  MFE and MAE;
* the **baseline**: the same numbers for every bar of the same series and timeframe entered
  in the same direction (:func:`signals.analytics.frames.baseline_rows`), and the **lift**
  ``hit_rate / base_hit_rate`` (``edge`` = the difference);
* **p-values** for "differs from the baseline", valid although h-bar windows overlap: on
  every bar of the group's series, regress the bar's random-entry outcome (hit as 0/1, and
  the return) on a constant and the indicator "the pattern fired here in this direction",
  with Newey-West (HAC) standard errors per series (statsmodels ``cov_type="hac-panel"``,
  Bartlett kernel, ``maxlags = 2h``: windows overlap for h−1 lags, and the Bartlett weight
  at lag h−1 would be only 2/(h+1) with ``maxlags = h``, which under-covers — in the size
  test of ``tests/unit/test_analytics_stats.py`` it rejected a true null 16% of the time at
  5%, against ~7% with 2h).
  The slope is the pattern's difference to the other bars; its HAC p-value tests "pattern
  bars = the series' bars" without assuming independent windows;
* groups with ``n < min_n`` are marked ``too_few``, get no p-value and no rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from signals.analytics.frames import SERIES
from signals.analytics.measures import (
    Outcomes,
    as_float,
    hac_pvalues,
    rank_rows,
    summarize_frame,
)
from signals.analytics.regimes import REGIMES, prepare

DEFAULT_MIN_N = 30
PVALUE_METHOD = (
    "OLS of each bar's random-entry outcome on 1 + fired-indicator over all bars of the "
    "group's series, Newey-West HAC per series (statsmodels hac-panel, maxlags = 2 x horizon)"
)


@dataclass(frozen=True, slots=True)
class StatsOptions:
    """What to compute: the minimum n to rank, the hit cost (fraction), extra dimensions."""

    min_n: int = DEFAULT_MIN_N
    cost: float = 0.0
    by: tuple[str, ...] = ()  # any of "exchange", "symbol"
    pvalues: bool = True


def compare(
    key: dict[str, Any],
    group: Outcomes,
    *,
    base: Outcomes,
    base_summary: dict[str, Any],
    fired: np.ndarray,
    horizon: int,
    opts: StatsOptions,
) -> dict[str, Any]:
    """One table row: the group's summary, its baseline's, the lift and the p-values.

    ``base`` holds every bar of the group's scope in series order; ``fired`` marks the bars
    on which the group's pattern fired.
    """
    s = group.summary(opts.cost)
    b = base_summary
    too_few = s["n"] < opts.min_n
    lift = edge = excess = None
    if s["hit_rate"] is not None and b["hit_rate"]:
        lift = s["hit_rate"] / b["hit_rate"]
        edge = s["hit_rate"] - b["hit_rate"]
    if s["mean_ret"] is not None and b["mean_ret"] is not None:
        excess = s["mean_ret"] - b["mean_ret"]
    p_hit = p_ret = None
    if opts.pvalues and not too_few and len(base.ret):
        p_hit, p_ret = hac_pvalues(base.hit, base.ret, fired, base.codes, horizon)
    return {
        **key,
        **s,
        "too_few": too_few,
        "base_n": b["n"],
        "base_hit_rate": b["hit_rate"],
        "base_mean_ret": b["mean_ret"],
        "lift": lift,
        "edge": edge,
        "excess_ret": excess,
        "p_hit": p_hit,
        "p_ret": p_ret,
    }


def pattern_table(
    rows: pd.DataFrame,
    baseline: pd.DataFrame,
    opts: StatsOptions,
    regime: str | None = None,
) -> list[dict[str, Any]]:
    """The ranked pattern table (``regime`` = one of :data:`REGIMES` for its breakdown).

    ``rows``: outcome rows with ``series_code``, ``bar_index`` and regime labels
    (:func:`prepare`); ``baseline``: the baseline rows, likewise.
    """
    pats = rows[rows["kind"] == "pattern"]
    scope = ["timeframe", *opts.by]
    col = f"regime_{regime}" if regime else None
    out: list[dict[str, Any]] = []
    pat_groups = dict(list(pats.groupby(["direction", "horizon", *scope], sort=True)))
    for gkey, base_df in baseline.groupby(["direction", "horizon", *scope], sort=True):
        sel = pat_groups.get(gkey)
        if sel is None:
            continue
        direction, horizon, *scope_vals = gkey
        base = Outcomes.of(base_df)
        labels = base_df[col].to_numpy(object) if col else None
        base_sum = base.summary(opts.cost)
        regime_bases: dict[str, tuple[np.ndarray, Outcomes, dict[str, Any]]] = {}
        for pattern, grp in sel.groupby("pattern", sort=True):
            g = Outcomes.of(grp)
            fired = np.isin(base.keys, g.keys)
            key = {
                "pattern": pattern,
                "direction": direction,
                "horizon": int(horizon),
                **dict(zip(scope, scope_vals, strict=True)),
            }
            if col is None or labels is None:
                out.append(
                    compare(
                        key,
                        g,
                        base=base,
                        base_summary=base_sum,
                        fired=fired,
                        horizon=int(horizon),
                        opts=opts,
                    )
                )
                continue
            g_labels = grp[col].to_numpy(object)
            for value in sorted({v for v in g_labels if isinstance(v, str) and v}):
                if value not in regime_bases:
                    m = labels == value
                    sub = base.take(m)
                    regime_bases[value] = (m, sub, sub.summary(opts.cost))
                mask, sub_base, sub_sum = regime_bases[value]
                out.append(
                    compare(
                        {**key, "regime": regime, "value": value},
                        g.take(g_labels == value),
                        base=sub_base,
                        base_summary=sub_sum,
                        fired=fired[mask],
                        horizon=int(horizon),
                        opts=opts,
                    )
                )
    return rank_rows(out)


def baseline_table(baseline: pd.DataFrame, opts: StatsOptions) -> list[dict[str, Any]]:
    """The random-entry numbers per timeframe x direction x horizon (x ``by``)."""
    out = []
    for keys, g in baseline.groupby(["timeframe", *opts.by, "direction", "horizon"], sort=True):
        names = ["timeframe", *opts.by, "direction", "horizon"]
        out.append({**dict(zip(names, [*keys], strict=True)), **summarize_frame(g, opts.cost)})
    for r in out:
        r["horizon"] = int(r["horizon"])
    return out


def cooccurrence(
    rows: pd.DataFrame, opts: StatsOptions, horizon: int, limit: int = 50
) -> list[dict[str, Any]]:
    """Pattern pairs firing on the same bar in the same direction: jointly and each alone."""
    pats = rows[(rows["kind"] == "pattern") & (rows["horizon"] == horizon)]
    if pats.empty:
        return []
    bar = [*SERIES, "open_time", "direction"]
    sets = pats.groupby(bar, sort=False)["pattern"].agg(frozenset)
    pair_n: dict[tuple[str, str, str, str], int] = {}
    for (_, _, tf, _, direction), names in sets.items():
        ordered = sorted(names)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                k = (tf, direction, a, b)
                pair_n[k] = pair_n.get(k, 0) + 1
    top = sorted(pair_n.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    indexed = pats.set_index(bar)
    by_bar = sets.to_frame("set")
    out = []
    for (tf, direction, a, b), _ in top:
        both_mask = by_bar["set"].map(lambda s, a=a, b=b: a in s and b in s)
        a_mask = by_bar["set"].map(lambda s, a=a, b=b: a in s and b not in s)
        b_mask = by_bar["set"].map(lambda s, a=a, b=b: b in s and a not in s)
        in_scope = (indexed.index.get_level_values("timeframe") == tf) & (
            indexed.index.get_level_values("direction") == direction
        )
        sel_tf = indexed[in_scope & (indexed["pattern"] == a).to_numpy()]
        selb_tf = indexed[in_scope & (indexed["pattern"] == b).to_numpy()]
        joint = sel_tf[sel_tf.index.isin(by_bar.index[both_mask.to_numpy()])]
        alone_a = sel_tf[sel_tf.index.isin(by_bar.index[a_mask.to_numpy()])]
        alone_b = selb_tf[selb_tf.index.isin(by_bar.index[b_mask.to_numpy()])]
        js = summarize_frame(joint, opts.cost)
        out.append(
            {
                "timeframe": tf,
                "direction": direction,
                "horizon": horizon,
                "a": a,
                "b": b,
                "joint": js,
                "a_alone": summarize_frame(alone_a, opts.cost),
                "b_alone": summarize_frame(alone_b, opts.cost),
                "too_few": js["n"] < opts.min_n,
            }
        )
    return out


def signal_deciles(
    rows: pd.DataFrame, baseline: pd.DataFrame, opts: StatsOptions
) -> list[dict[str, Any]]:
    """Signals per score decile and horizon, with the direction-matched baseline hit rate."""
    sig = rows[rows["kind"] == "signal"]
    out: list[dict[str, Any]] = []
    if sig.empty:
        return out
    base_rate = baseline.groupby(["timeframe", "direction", "horizon"])["hit"].mean()
    for horizon, g in sig.groupby("horizon", sort=True):
        ranks = g["score"].rank(method="first")
        deciles = pd.qcut(ranks, min(10, len(g)), labels=False)
        for d, sub in g.groupby(deciles.to_numpy(), sort=True):
            s = summarize_frame(sub, opts.cost)
            idx = list(zip(sub["timeframe"], sub["direction"], sub["horizon"], strict=True))
            rates = base_rate.reindex(idx).to_numpy(np.float64)
            b = as_float(np.nanmean(rates)) if len(rates) and not np.isnan(rates).all() else None
            out.append(
                {
                    "horizon": int(horizon),
                    "decile": int(d) + 1,
                    "score_min": as_float(sub["score"].min()),
                    "score_max": as_float(sub["score"].max()),
                    **s,
                    "too_few": s["n"] < opts.min_n,
                    "base_hit_rate": b,
                    "lift": None if b in (None, 0) or s["hit_rate"] is None else s["hit_rate"] / b,
                }
            )
    return out


def compute_stats(
    rows: pd.DataFrame,
    bars: pd.DataFrame,
    baseline: pd.DataFrame,
    opts: StatsOptions,
    *,
    regimes: Sequence[str] = REGIMES,
    cooccurrence_horizon: int | None = None,
) -> dict[str, Any]:
    """Everything ``stats.json`` holds (see ``docs/statistics.md``)."""
    rows, baseline = prepare(rows, bars, baseline)
    horizons = sorted(int(h) for h in baseline["horizon"].unique())
    co_h = cooccurrence_horizon or (horizons[min(1, len(horizons) - 1)] if horizons else 1)
    return {
        "params": {
            "min_n": opts.min_n,
            "cost": opts.cost,
            "by": list(opts.by),
            "horizons": horizons,
            "pvalue_method": PVALUE_METHOD,
            "interval": "Wilson 95% (statsmodels proportion_confint)",
            "lift": "hit_rate / base_hit_rate",
        },
        "baseline": baseline_table(baseline, opts),
        "patterns": pattern_table(rows, baseline, opts),
        "regimes": {r: pattern_table(rows, baseline, opts, regime=r) for r in regimes},
        "cooccurrence": cooccurrence(rows, opts, co_h),
        "signal_deciles": signal_deciles(rows, baseline, opts),
    }
