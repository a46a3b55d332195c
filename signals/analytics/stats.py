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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.stats.proportion import proportion_confint

from signals.analytics.frames import SERIES

DEFAULT_MIN_N = 30
PVALUE_METHOD = (
    "OLS of each bar's random-entry outcome on 1 + fired-indicator over all bars of the "
    "group's series, Newey-West HAC per series (statsmodels hac-panel, maxlags = 2 x horizon)"
)
REGIMES = ("trend", "volatility", "volume")
VOLUME_HIGH, VOLUME_LOW = 1.5, 0.7


@dataclass(frozen=True, slots=True)
class StatsOptions:
    """What to compute: the minimum n to rank, the hit cost (fraction), extra dimensions."""

    min_n: int = DEFAULT_MIN_N
    cost: float = 0.0
    by: tuple[str, ...] = ()  # any of "exchange", "symbol"
    pvalues: bool = True


def _f(x: Any) -> float | None:
    """A float for JSON (``None`` for NaN)."""
    v = float(x)
    return None if math.isnan(v) else v


def wilson(hits: int, n: int) -> tuple[float | None, float | None]:
    """Wilson 95% interval of a hit rate (``None`` without observations)."""
    if n == 0:
        return None, None
    lo, hi = proportion_confint(hits, n, alpha=0.05, method="wilson")
    return float(lo), float(hi)


def summarize(
    ret: np.ndarray, hit: np.ndarray, mfe: np.ndarray, mae: np.ndarray, cost: float
) -> dict[str, Any]:
    """n, hit rate (Wilson interval), mean/median return, expectancy, mean MFE/MAE."""
    n = len(ret)
    hits = int(np.count_nonzero(hit))
    lo, hi = wilson(hits, n)
    empty = n == 0
    return {
        "n": n,
        "hits": hits,
        "hit_rate": None if empty else hits / n,
        "ci_low": lo,
        "ci_high": hi,
        "mean_ret": None if empty else _f(np.nanmean(ret)),
        "median_ret": None if empty else _f(np.nanmedian(ret)),
        "expectancy": None if empty else _f(np.nanmean(ret) - cost),
        "mean_mfe": None if empty or np.isnan(mfe).all() else _f(np.nanmean(mfe)),
        "mean_mae": None if empty or np.isnan(mae).all() else _f(np.nanmean(mae)),
    }


def summarize_frame(df: pd.DataFrame, cost: float) -> dict[str, Any]:
    return summarize(
        df["ret"].to_numpy(np.float64),
        df["hit"].to_numpy(bool),
        df["mfe"].to_numpy(np.float64),
        df["mae"].to_numpy(np.float64),
        cost,
    )


def hac_pvalues(
    y_hit: np.ndarray, y_ret: np.ndarray, fired: np.ndarray, groups: np.ndarray, horizon: int
) -> tuple[float | None, float | None]:
    """HAC p-values of the fired-indicator slope for hit and return (see the module doc)."""
    k = int(fired.sum())
    if k == 0 or k == len(fired):
        return None, None
    x = sm.add_constant(fired.astype(np.float64), has_constant="add")
    out: list[float | None] = []
    for y in (y_hit.astype(np.float64), y_ret):
        try:
            res = sm.OLS(y, x).fit(
                cov_type="hac-panel", cov_kwds={"groups": groups, "maxlags": 2 * horizon}
            )
        except ValueError:  # every series shorter than the lags: no overlap-valid estimate
            return None, None
        out.append(_f(res.pvalues[1]))
    return out[0], out[1]


def add_regimes(rows: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    """Label rows with ``trend`` (up/flat/down), ``volatility`` (low/mid/high: the bar's
    ATR/close tercile within its own series' history) and ``volume`` (high ≥ 1.5 x its
    20-bar average, low < 0.7 x, else normal). Missing features give ``None``."""
    q = bars.groupby(SERIES)["atr_ratio"].quantile([1 / 3, 2 / 3]).unstack()
    q.columns = ["q1", "q2"]
    out = rows.merge(q, left_on=SERIES, right_index=True, how="left")
    trend = out["trend"]
    out["regime_trend"] = np.select(
        [trend > 0, trend < 0, trend == 0], ["up", "down", "flat"], default=""
    )
    atr = out["atr_ratio"]
    out["regime_volatility"] = np.select(
        [atr <= out["q1"], atr <= out["q2"], atr > out["q2"]],
        ["low", "mid", "high"],
        default="",
    )
    vr = out["volume_ratio"]
    out["regime_volume"] = np.select(
        [vr >= VOLUME_HIGH, vr < VOLUME_LOW, vr.notna()],
        ["high", "low", "normal"],
        default="",
    )
    return out.drop(columns=["q1", "q2"])


def attach_bars(rows: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    """Give outcome rows their bar's ``bar_index`` and fill missing regime features from it."""
    cols = [*SERIES, "open_time", "bar_index", "series_code", "trend", "atr_ratio", "volume_ratio"]
    merged = rows.merge(bars[cols], on=[*SERIES, "open_time"], how="left", suffixes=("", "_bar"))
    for col in ("trend", "atr_ratio", "volume_ratio"):
        merged[col] = merged[col].fillna(merged[f"{col}_bar"])
    return merged.drop(columns=["trend_bar", "atr_ratio_bar", "volume_ratio_bar"])


def rank_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort by lift (groups with enough n first) and number the ranked ones."""
    ok = [r for r in rows if not r["too_few"] and r["lift"] is not None]
    rest = [r for r in rows if r not in ok]
    ok.sort(key=lambda r: (-r["lift"], -r["n"]))
    for i, r in enumerate(ok, 1):
        r["rank"] = i
    for r in rest:
        r["rank"] = None
    rest.sort(key=lambda r: -r["n"])
    return ok + rest


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Columns of some outcome rows as numpy arrays (what :func:`compare` works on)."""

    ret: np.ndarray
    hit: np.ndarray
    mfe: np.ndarray
    mae: np.ndarray
    codes: np.ndarray  # series code of each row
    keys: np.ndarray  # bar key (series code, bar index) of each row

    @classmethod
    def of(cls, df: pd.DataFrame) -> Outcomes:
        return cls(
            df["ret"].to_numpy(np.float64),
            df["hit"].to_numpy(bool),
            df["mfe"].to_numpy(np.float64),
            df["mae"].to_numpy(np.float64),
            df["series_code"].to_numpy(np.int64),
            bar_keys(df),
        )

    def take(self, mask: np.ndarray) -> Outcomes:
        return Outcomes(*(getattr(self, f)[mask] for f in self.__slots__))

    def summary(self, cost: float) -> dict[str, Any]:
        return summarize(self.ret, self.hit, self.mfe, self.mae, cost)


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


def bar_keys(df: pd.DataFrame) -> np.ndarray:
    """One integer per bar: its series code and its index within the series."""
    codes: np.ndarray = df["series_code"].to_numpy(np.int64)
    index: np.ndarray = df["bar_index"].to_numpy(np.int64)
    keys: np.ndarray = codes * (1 << 32) + index
    return keys


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
        sel = indexed[(indexed["pattern"] == a)]
        sel_tf = sel[
            (sel.index.get_level_values("timeframe") == tf)
            & (sel.index.get_level_values("direction") == direction)
        ]
        selb = indexed[(indexed["pattern"] == b)]
        selb_tf = selb[
            (selb.index.get_level_values("timeframe") == tf)
            & (selb.index.get_level_values("direction") == direction)
        ]
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
            b = _f(np.nanmean(rates)) if len(rates) and not np.isnan(rates).all() else None
            out.append(
                {
                    "horizon": int(horizon),
                    "decile": int(d) + 1,
                    "score_min": _f(sub["score"].min()),
                    "score_max": _f(sub["score"].max()),
                    **s,
                    "too_few": s["n"] < opts.min_n,
                    "base_hit_rate": b,
                    "lift": None if b in (None, 0) or s["hit_rate"] is None else s["hit_rate"] / b,
                }
            )
    return out


def prepare(
    rows: pd.DataFrame, bars: pd.DataFrame, baseline: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Series codes, bar indexes and regime labels on outcome rows and baseline rows."""
    bars = bars.assign(series_code=bars.groupby(SERIES, sort=False).ngroup())
    rows = add_regimes(attach_bars(rows, bars), bars)
    codes = bars.drop_duplicates(SERIES)[[*SERIES, "series_code"]]
    baseline = add_regimes(baseline.merge(codes, on=SERIES, how="left"), bars)
    return rows, baseline


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
