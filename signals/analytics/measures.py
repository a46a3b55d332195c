"""The numbers of one group of outcome rows (pure): hit rate with its Wilson interval, returns,
MFE/MAE, and the HAC p-values of "differs from the baseline" (the method: ``stats``).

``signals.analytics.stats`` builds its tables from these; the console and ``stats --db``
use ``wilson`` and ``rank_rows`` on the pre-aggregated rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.stats.proportion import proportion_confint


def as_float(x: Any) -> float | None:
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
        "mean_ret": None if empty else as_float(np.nanmean(ret)),
        "median_ret": None if empty else as_float(np.nanmedian(ret)),
        "expectancy": None if empty else as_float(np.nanmean(ret) - cost),
        "mean_mfe": None if empty or np.isnan(mfe).all() else as_float(np.nanmean(mfe)),
        "mean_mae": None if empty or np.isnan(mae).all() else as_float(np.nanmean(mae)),
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
        out.append(as_float(res.pvalues[1]))
    return out[0], out[1]


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


def bar_keys(df: pd.DataFrame) -> np.ndarray:
    """One integer per bar: its series code and its index within the series."""
    codes: np.ndarray = df["series_code"].to_numpy(np.int64)
    index: np.ndarray = df["bar_index"].to_numpy(np.int64)
    keys: np.ndarray = codes * (1 << 32) + index
    return keys
