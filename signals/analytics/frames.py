"""Outcome records and bars as tables (pandas), and the per-bar baseline (pure).

Two tables feed every statistic:

* **outcome rows** — one row per firing (pattern or signal) per horizon, with exactly the
  columns of the database view ``outcome_rows`` (``kind, id, exchange, symbol, timeframe,
  open_time, pattern, direction, horizon, ret, mfe, mae, hit, score, trend, atr_ratio,
  volume_ratio``; ``open_time`` in epoch ms here). :func:`outcome_rows` expands
  ``outcomes.jsonl`` records (one line per firing, horizons as keys) into it.
* **baseline rows** — the same outcome for *every* bar of a series as if one had entered
  there (a random entry), long and short, from :func:`bar_outcomes` — the definitions of
  ``OUTCOMES_CONTRACT.md``: ``r_h = d·(close[t+h]/close[t] − 1)``; ``mfe_h`` / ``mae_h`` the
  best / worst excursion over bars t+1..t+h; ``hit_h = r_h > cost``; bars t+h counted as
  traded bars of the same series; a horizon past the last bar is absent. Short outcomes
  mirror long ones: ``r⁻ = −r⁺``, ``mfe⁻ = −mae⁺``, ``mae⁻ = −mfe⁺``.

Each bar also gets its regime features, computed on the series with TA-Lib exactly as the
detectors compute the event features (EMA(20) trend rule, ATR(14)/close, volume / SMA(20)),
so a pattern's regime and its baseline's regime mean the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import talib

F64 = npt.NDArray[np.float64]
SERIES = ["exchange", "symbol", "timeframe"]
OUTCOME_COLUMNS = [
    "kind", "id", "exchange", "symbol", "timeframe", "open_time", "pattern", "direction",
    "horizon", "ret", "mfe", "mae", "hit", "score", "trend", "atr_ratio", "volume_ratio",
]  # fmt: skip
# The columns :func:`baseline_rows` gives when no bar has a completed horizon.
BASELINE_COLUMNS = [
    *SERIES, "open_time", "bar_index", "trend", "atr_ratio", "volume_ratio", "direction",
    "horizon", "ret", "mfe", "mae", "hit",
]  # fmt: skip
EMA_PERIOD, ATR_PERIOD, VOLUME_PERIOD = 20, 14, 20


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every line of a JSON-lines file (empty lines skipped)."""
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


def outcome_rows(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """``outcomes.jsonl`` records -> the long ``outcome_rows`` table (pending horizons absent)."""
    rows: list[tuple[Any, ...]] = []
    for r in records:
        regime = r.get("regime") or {}
        hits = r.get("hit") or {}
        mfe, mae = r.get("mfe") or {}, r.get("mae") or {}
        for h, ret in (r.get("returns") or {}).items():
            rows.append(
                (
                    r["kind"],
                    r["id"],
                    r["exchange"],
                    r["symbol"],
                    r["timeframe"],
                    int(r["open_time"]),
                    r.get("pattern"),
                    r["direction"],
                    int(h),
                    ret,
                    mfe.get(h),
                    mae.get(h),
                    hits.get(h),
                    r.get("score"),
                    regime.get("trend"),
                    regime.get("atr_ratio"),
                    regime.get("volume_ratio"),
                )
            )
    df = pd.DataFrame.from_records(rows, columns=OUTCOME_COLUMNS)
    for col in ("ret", "mfe", "mae", "score", "trend", "atr_ratio", "volume_ratio"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(np.float64)
    return df


def bar_outcomes(close: F64, high: F64, low: F64, horizon: int) -> tuple[F64, F64, F64]:
    """Long ``(r, mfe, mae)`` at ``horizon`` for every bar of one series (NaN where pending)."""
    n = len(close)
    r = np.full(n, np.nan)
    mfe = np.full(n, np.nan)
    mae = np.full(n, np.nan)
    if n <= horizon:
        return r, mfe, mae
    m = n - horizon
    r[:m] = close[horizon:] / close[:m] - 1.0
    hi = np.lib.stride_tricks.sliding_window_view(high[1:], horizon).max(axis=1)[:m]
    lo = np.lib.stride_tricks.sliding_window_view(low[1:], horizon).min(axis=1)[:m]
    mfe[:m] = hi / close[:m] - 1.0
    mae[:m] = lo / close[:m] - 1.0
    return r, mfe, mae


def bar_regimes(close: F64, high: F64, low: F64, volume: F64) -> dict[str, F64]:
    """Per-bar ``trend`` (+1/0/−1), ``atr_ratio`` and ``volume_ratio`` (NaN while warming up)."""
    ema = talib.EMA(close, EMA_PERIOD)
    prev = np.concatenate([[np.nan], ema[:-1]])
    trend = np.where(
        (close > ema) & (ema > prev), 1.0, np.where((close < ema) & (ema < prev), -1.0, 0.0)
    )
    trend[np.isnan(prev)] = np.nan
    atr = talib.ATR(high, low, close, ATR_PERIOD)
    sma = talib.SMA(volume, VOLUME_PERIOD)
    with np.errstate(divide="ignore", invalid="ignore"):
        vr = np.where(sma > 0, volume / sma, np.nan)
    return {"trend": trend, "atr_ratio": atr / close, "volume_ratio": vr}


def bars_frame(bars: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """``bars.jsonl`` records as a table sorted by series and open time, with ``bar_index``
    (the traded-bar count within its series) and the regime features."""
    df = pd.DataFrame.from_records(
        [
            (
                b["exchange"],
                b["symbol"],
                b["timeframe"],
                int(b["open_time"]),
                float(b["high"]),
                float(b["low"]),
                float(b["close"]),
                float(b.get("volume") or 0.0),
            )
            for b in bars
        ],
        columns=[*SERIES, "open_time", "high", "low", "close", "volume"],
    )
    df = df.sort_values([*SERIES, "open_time"], kind="stable").reset_index(drop=True)
    df["bar_index"] = df.groupby(SERIES, sort=False).cumcount()
    parts = []
    for _, g in df.groupby(SERIES, sort=False):
        reg = bar_regimes(
            g["close"].to_numpy(),
            g["high"].to_numpy(),
            g["low"].to_numpy(),
            g["volume"].to_numpy(),
        )
        parts.append(pd.DataFrame(reg, index=g.index))
    if parts:
        df = df.join(pd.concat(parts))
    else:
        for col in ("trend", "atr_ratio", "volume_ratio"):
            df[col] = pd.Series(dtype=np.float64)
    return df


def baseline_rows(bars: pd.DataFrame, horizons: Sequence[int], cost: float) -> pd.DataFrame:
    """Every bar x direction x horizon with its random-entry outcome (pending ones dropped)."""
    out = []
    for _, g in bars.groupby(SERIES, sort=False):
        c, hi, lo = g["close"].to_numpy(), g["high"].to_numpy(), g["low"].to_numpy()
        for h in horizons:
            r, mfe, mae = bar_outcomes(c, hi, lo, h)
            ok = ~np.isnan(r)
            base = g.loc[
                ok, [*SERIES, "open_time", "bar_index", "trend", "atr_ratio", "volume_ratio"]
            ]
            for direction, rr, ff, aa in (
                ("long", r[ok], mfe[ok], mae[ok]),
                ("short", -r[ok], -mae[ok], -mfe[ok]),
            ):
                part = base.copy()
                part["direction"] = direction
                part["horizon"] = h
                part["ret"], part["mfe"], part["mae"] = rr, ff, aa
                part["hit"] = rr > cost
                out.append(part)
    if not out:
        return pd.DataFrame(columns=BASELINE_COLUMNS)
    return pd.concat(out, ignore_index=True)
