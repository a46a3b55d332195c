"""Incremental indicators, O(1) per bar, vectorized over many series, equal to TA-Lib's batch.

One :class:`IndicatorBank` holds the state of many *rows* (a row is one series x timeframe).
:meth:`IndicatorBank.update` takes the newly closed bar of some rows at once (numpy arrays)
and returns each row's features. Every formula repeats TA-Lib's own floating-point steps in
the same order (default compatibility, unstable period 0), so a row's values equal
``talib.EMA/RSI/ATR/SMA`` run on the whole bar series (tests check 1e-9 relative; in
practice they are bit-identical):

* EMA(n): seed = sum of the first n closes added in order from 0.0, divided by n (first value
  at the n-th bar); then ``ema = (close - ema) * k + ema`` with ``k = 2 / (n + 1)``.
* RSI(n) (Wilder): gains and losses of the first n differences summed, divided by n; then
  ``avg = (avg * (n - 1) + x) / n``; ``rsi = 100 * gain / (gain + loss)``, 0 when the sum is
  below TA-Lib's zero threshold 1e-8. First value at bar n + 1.
* ATR(n): true range from the second bar; the seed is the plain average of the first n true
  ranges (first value at bar n + 1), then Wilder's smoothing as above.
* SMA(n) of volume: TA-Lib's running total (add the new value, divide, subtract the oldest).

Features (keys of ``PatternEvent.features``; ``None`` until warmed up):

=================  =========================================================================
``ema``            EMA(``ema_period``) of the close
``ema_slope``      relative change of that EMA from the previous bar: ``ema/prev - 1``
``trend``          +1 when close > EMA and the EMA rises, -1 when close < EMA and it falls,
                   otherwise 0
``htf_trend``      ``trend`` of the next longer timeframe's latest closed bar that ends no
                   later than this bar (set by the engine; ``None`` for the longest one)
``rsi``            RSI(``rsi_period``)
``atr``            ATR(``atr_period``)
``volume_sma``     SMA(``volume_period``) of the volume, this bar included
``volume_ratio``   volume / ``volume_sma`` (``None`` while the average is 0)
=================  =========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
TA_EPSILON = 1e-8  # TA-Lib's TA_IS_ZERO threshold used by RSI

FEATURE_KEYS = (
    "ema",
    "ema_slope",
    "trend",
    "htf_trend",
    "rsi",
    "atr",
    "volume_sma",
    "volume_ratio",
)


@dataclass(frozen=True, slots=True)
class IndicatorConfig:
    ema_period: int = 20
    rsi_period: int = 14
    atr_period: int = 14
    volume_period: int = 20

    def __post_init__(self) -> None:
        for name in ("ema_period", "rsi_period", "atr_period", "volume_period"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2")


# Names of the per-row float state arrays (all shape (rows,)), in checkpoint order.
_FLOAT_STATE = (
    "prev_close",
    "ema",
    "ema_prev",
    "ema_acc",
    "gain",
    "loss",
    "atr",
    "vol_total",
    "trend",
)


class IndicatorBank:
    """Indicator state of ``rows`` series x timeframe rows (grows on demand)."""

    def __init__(self, config: IndicatorConfig, rows: int = 0) -> None:
        self.config = config
        self.count: I64 = np.zeros(rows, np.int64)  # bars seen per row
        self.floats: dict[str, F64] = {name: np.zeros(rows, np.float64) for name in _FLOAT_STATE}
        self.floats["trend"][:] = np.nan
        self.vol_ring: F64 = np.zeros((rows, config.volume_period), np.float64)

    @property
    def warm(self) -> int:
        """Bars after which a row has left every seeding phase (all values defined)."""
        cfg = self.config
        return max(cfg.ema_period, cfg.rsi_period, cfg.atr_period, cfg.volume_period)

    @property
    def rows(self) -> int:
        return len(self.count)

    def grow(self, rows: int) -> None:
        """Make room for at least ``rows`` rows (new rows start empty)."""
        old = self.rows
        if rows <= old:
            return
        self.count = np.concatenate([self.count, np.zeros(rows - old, np.int64)])
        for name, arr in self.floats.items():
            fill = np.nan if name == "trend" else 0.0
            self.floats[name] = np.concatenate([arr, np.full(rows - old, fill)])
        pad = np.zeros((rows - old, self.config.volume_period), np.float64)
        self.vol_ring = np.concatenate([self.vol_ring, pad])

    def reset(self, rows: I64) -> None:
        """Empty ``rows`` (as new ones start)."""
        self.count[rows] = 0
        for name, arr in self.floats.items():
            arr[rows] = np.nan if name == "trend" else 0.0
        self.vol_ring[rows] = 0.0

    def put(self, rows: I64, other: IndicatorBank) -> None:
        """Write ``other``'s rows, in order, into ``rows``."""
        self.count[rows] = other.count
        for name, arr in self.floats.items():
            arr[rows] = other.floats[name]
        self.vol_ring[rows] = other.vol_ring

    def update(self, rows: I64, high: F64, low: F64, close: F64, volume: F64) -> dict[str, F64]:
        """Feed one new closed bar to each of ``rows`` (distinct); return their features.

        Values not yet warmed up are NaN (``trend`` included; the engine maps NaN to None).
        """
        n = self.count[rows]  # bars seen before this one
        if len(n) and int(n.min()) > self.warm:
            return self._update_warm(rows, n, (high, low, close, volume))
        return self._update_any(rows, n, (high, low, close, volume))

    def _update_any(self, rows: I64, n: I64, bar: tuple[F64, F64, F64, F64]) -> dict[str, F64]:
        """:meth:`update` for rows at any stage (seeding phases chosen per row)."""
        high, low, close, volume = bar
        cfg = self.config
        f = self.floats
        prev_close = f["prev_close"][rows]
        have_prev = n >= 1
        out: dict[str, F64] = {}

        # --- EMA ---------------------------------------------------------------------
        p = cfg.ema_period
        k = 2.0 / (p + 1)
        ema = f["ema"][rows]
        acc = np.where(n < p, f["ema_acc"][rows] + close, f["ema_acc"][rows])
        seeded = n == p - 1
        stepped = n >= p
        ema_prev = np.where(stepped, ema, f["ema_prev"][rows])
        new_ema = np.where(seeded, acc / p, np.where(stepped, (close - ema) * k + ema, ema))
        f["ema_acc"][rows] = acc
        f["ema"][rows] = new_ema
        f["ema_prev"][rows] = ema_prev
        out["ema"] = np.where(n >= p - 1, new_ema, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(ema_prev != 0.0, new_ema / ema_prev - 1.0, 0.0)
        out["ema_slope"] = np.where(stepped, slope, np.nan)
        up = (close > new_ema) & (slope > 0.0)
        down = (close < new_ema) & (slope < 0.0)
        trend = np.where(up, 1.0, np.where(down, -1.0, 0.0))
        out["trend"] = np.where(stepped, trend, np.nan)
        f["trend"][rows] = out["trend"]

        # --- RSI (Wilder) ----------------------------------------------------------------
        p = cfg.rsi_period
        diff = close - prev_close
        gain, loss = f["gain"][rows], f["loss"][rows]
        smooth = n > p
        gain = np.where(smooth, gain * (p - 1), gain)
        loss = np.where(smooth, loss * (p - 1), loss)
        gain = np.where(have_prev & (diff >= 0), gain + diff, gain)
        loss = np.where(have_prev & (diff < 0), loss - diff, loss)
        divide = smooth | (n == p)
        gain = np.where(divide, gain / p, gain)
        loss = np.where(divide, loss / p, loss)
        f["gain"][rows], f["loss"][rows] = gain, loss
        total = gain + loss
        with np.errstate(divide="ignore", invalid="ignore"):
            rsi = np.where(
                (total > -TA_EPSILON) & (total < TA_EPSILON), 0.0, 100.0 * (gain / total)
            )
        out["rsi"] = np.where(divide, rsi, np.nan)

        # --- ATR -------------------------------------------------------------------------
        p = cfg.atr_period
        tr = np.maximum(np.maximum(high - low, np.abs(prev_close - high)), np.abs(prev_close - low))
        atr = f["atr"][rows]
        seeding = have_prev & (n <= p)
        atr = np.where(seeding, atr + tr, atr)  # the seed's running sum
        atr = np.where(n == p, atr / p, atr)
        atr = np.where(n > p, (atr * (p - 1) + tr) / p, atr)
        f["atr"][rows] = atr
        out["atr"] = np.where(n >= p, atr, np.nan)

        # --- SMA of volume -------------------------------------------------------------
        p = cfg.volume_period
        total = f["vol_total"][rows] + volume
        slot = n % p
        full = n >= p - 1
        sma = total / p
        trailing = self.vol_ring[rows, (n + 1) % p]
        f["vol_total"][rows] = np.where(full, total - trailing, total)
        self.vol_ring[rows, slot] = volume
        out["volume_sma"] = np.where(full, sma, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(sma > 0.0, volume / sma, np.nan)
        out["volume_ratio"] = np.where(full, ratio, np.nan)

        f["prev_close"][rows] = close
        self.count[rows] = n + 1
        return out

    def _update_warm(self, rows: I64, n: I64, bar: tuple[F64, F64, F64, F64]) -> dict[str, F64]:
        """:meth:`update` for rows that have all seen more than :attr:`warm` bars: the
        same floating-point steps as the general path takes for them (its ``np.where``
        branches for seeding all pick the steady-state value), without the masks."""
        high, low, close, volume = bar
        cfg = self.config
        f = self.floats
        prev_close = f["prev_close"][rows]
        out: dict[str, F64] = {}

        p = cfg.ema_period
        ema_prev = f["ema"][rows]
        new_ema = (close - ema_prev) * (2.0 / (p + 1)) + ema_prev
        f["ema"][rows] = new_ema
        f["ema_prev"][rows] = ema_prev
        out["ema"] = new_ema
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(ema_prev != 0.0, new_ema / ema_prev - 1.0, 0.0)
        out["ema_slope"] = slope
        trend = np.where(
            (close > new_ema) & (slope > 0.0),
            1.0,
            np.where((close < new_ema) & (slope < 0.0), -1.0, 0.0),
        )
        out["trend"] = trend
        f["trend"][rows] = trend

        p = cfg.rsi_period
        diff = close - prev_close
        rising = diff >= 0
        gain = f["gain"][rows] * (p - 1)
        loss = f["loss"][rows] * (p - 1)
        gain = np.where(rising, gain + diff, gain) / p
        loss = np.where(diff < 0, loss - diff, loss) / p
        f["gain"][rows], f["loss"][rows] = gain, loss
        total = gain + loss
        with np.errstate(divide="ignore", invalid="ignore"):
            out["rsi"] = np.where(
                (total > -TA_EPSILON) & (total < TA_EPSILON), 0.0, 100.0 * (gain / total)
            )

        p = cfg.atr_period
        tr = np.maximum(np.maximum(high - low, np.abs(prev_close - high)), np.abs(prev_close - low))
        atr = (f["atr"][rows] * (p - 1) + tr) / p
        f["atr"][rows] = atr
        out["atr"] = atr

        p = cfg.volume_period
        total = f["vol_total"][rows] + volume
        sma = total / p
        f["vol_total"][rows] = total - self.vol_ring[rows, (n + 1) % p]
        self.vol_ring[rows, n % p] = volume
        out["volume_sma"] = sma
        with np.errstate(divide="ignore", invalid="ignore"):
            out["volume_ratio"] = np.where(sma > 0.0, volume / sma, np.nan)

        f["prev_close"][rows] = close
        self.count[rows] = n + 1
        return out

    # --- checkpoint ----------------------------------------------------------------------
    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """The whole state as named arrays (for the engine's checkpoint)."""
        out: dict[str, npt.NDArray[np.generic]] = {"ind_count": self.count}
        out.update({f"ind_{k}": v for k, v in self.floats.items()})
        out["ind_vol_ring"] = self.vol_ring
        return out

    @classmethod
    def from_arrays(
        cls, config: IndicatorConfig, arrays: dict[str, npt.NDArray[np.generic]]
    ) -> IndicatorBank:
        bank = cls(config, 0)
        bank.count = arrays["ind_count"].astype(np.int64)
        bank.floats = {k: arrays[f"ind_{k}"].astype(np.float64) for k in _FLOAT_STATE}
        ring = arrays["ind_vol_ring"].astype(np.float64)
        bank.vol_ring = ring.reshape(len(bank.count), config.volume_period)
        return bank
