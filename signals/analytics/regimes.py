"""Regime labels and bar positions on outcome and baseline rows (pure), before the tables.

``trend`` (up/flat/down), ``volatility`` (the bar's ATR/close tercile within its own series)
and ``volume`` (against its 20-bar average); ``series_code`` and ``bar_index`` place each row
on its series for the baseline comparison.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from signals.analytics.frames import SERIES

REGIMES = ("trend", "volatility", "volume")
VOLUME_HIGH, VOLUME_LOW = 1.5, 0.7


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


def prepare(
    rows: pd.DataFrame, bars: pd.DataFrame, baseline: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Series codes, bar indexes and regime labels on outcome rows and baseline rows."""
    bars = bars.assign(series_code=bars.groupby(SERIES, sort=False).ngroup())
    rows = add_regimes(attach_bars(rows, bars), bars)
    codes = bars.drop_duplicates(SERIES)[[*SERIES, "series_code"]]
    baseline = add_regimes(baseline.merge(codes, on=SERIES, how="left"), bars)
    return rows, baseline
