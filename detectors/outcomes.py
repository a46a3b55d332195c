"""Forward outcomes of pattern events, tracked by the detector that owns the series (pure).

A pattern's (or signal's) outcome at horizon *h* depends only on bar *t* (the bar it fired on)
and the *h* later closed bars of the same series (exchange, symbol, timeframe), counted as the
engine counts bars (traded bars). That path is the same for every pattern on the bar, and the
short direction's numbers are sign flips of the long ones, so one record per *event bar* and
horizon carries everything: the long-direction return ``ret = close[t+h]/close[t] - 1``, the
favourable excursion ``mfe = max(high[t+1..t+h])/close[t] - 1`` and the adverse one
``mae = min(low[t+1..t+h])/close[t] - 1``. For a direction *d*: ``r = d*ret``; for d = -1
``mfe_short = -mae`` and ``mae_short = -mfe`` (``1 - x`` and ``-(x - 1)`` are the same double).
The maximum of rounded ratios equals the rounded ratio of the maximum (division by a positive
number and subtracting 1 are monotone under round-to-nearest), so these equal the per-bar
definitions of ``docs/outcomes.md`` exactly.

State: per engine row (series x timeframe) a ring of ``W = max(horizons)`` slots; an event on
the row's n-th bar occupies slot ``n % W`` until its last horizon completes (age W), which is
exactly when the slot comes round again. Every closing bar updates its rows' slots in one
vectorized step (running max high, min low, age); a record is emitted when a slot's age hits a
horizon, i.e. as the bar t+h closes, never earlier. Horizons not reached are simply absent.
The arrays are checkpointed with the rest of the engine state (:mod:`detectors.checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from common.errors import ConfigError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DEFAULT_HORIZONS: tuple[int, ...] = (1, 5, 10, 20)
MAX_HORIZON = 1000
#: Per-slot float state, in checkpoint order.
FLOAT_STATE = ("close", "high", "low", "trend", "atr_ratio", "volume_ratio")


def parse_horizons(text: str, variable: str = "OUTCOME_HORIZONS") -> tuple[int, ...]:
    """``"1,5,10,20"`` -> ``(1, 5, 10, 20)``; empty = outcome tracking off."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(variable, f"expected comma-separated bar counts, got {text!r}") from None
    if any(not 1 <= v <= MAX_HORIZON for v in values):
        raise ConfigError(variable, f"each horizon must be 1..{MAX_HORIZON} bars, got {text!r}")
    if len(set(values)) != len(values):
        raise ConfigError(variable, f"a horizon is listed twice in {text!r}")
    return tuple(sorted(values))


@dataclass(frozen=True, slots=True)
class OutcomeConfig:
    """Horizons (bars) and the cost a return must beat to count as a hit (basis points)."""

    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    cost_bps: float = 0.0


@dataclass(frozen=True, slots=True)
class Completed:
    """Horizons that completed in one step, as parallel lists (one item per event x horizon;
    ``rows``, the rows, and ``at``, their positions in the rows advanced, arrays); regime
    values still warming up (NaN) are ``None``."""

    rows: I64
    at: I64
    open_time: list[int]
    horizon: list[int]
    close: list[float]
    ret: list[float]
    mfe: list[float]
    mae: list[float]
    trend: list[float | None]
    atr_ratio: list[float | None]
    volume_ratio: list[float | None]


class OutcomeTracker:
    """The pending events of every row and their running forward path."""

    def __init__(self, config: OutcomeConfig, rows: int = 0) -> None:
        self.config = config
        self.width = max(config.horizons, default=0)
        is_horizon = np.zeros(self.width + 1, np.bool_)
        is_horizon[list(config.horizons)] = True
        self.is_horizon = is_horizon
        w = self.width
        self.age: I64 = np.full((rows, w), -1, np.int64)  # -1 = empty slot
        self.open_time: I64 = np.zeros((rows, w), np.int64)
        self._set_state(np.zeros((len(FLOAT_STATE), rows, w), np.float64))

    def _set_state(self, state: F64) -> None:
        """The float state is one array (``FLOAT_STATE`` x rows x slots), so a step gathers
        every field of a slot at once; ``floats`` names its planes (views)."""
        self.state = state
        self.floats: dict[str, F64] = {k: state[i] for i, k in enumerate(FLOAT_STATE)}

    @property
    def enabled(self) -> bool:
        return self.width > 0

    @property
    def rows(self) -> int:
        return int(self.age.shape[0])

    def grow(self, rows: int) -> None:
        old = self.rows
        if rows <= old:
            return
        w = self.width
        self.age = np.concatenate([self.age, np.full((rows - old, w), -1, np.int64)])
        self.open_time = np.concatenate([self.open_time, np.zeros((rows - old, w), np.int64)])
        pad = np.zeros((len(FLOAT_STATE), rows - old, w), np.float64)
        self._set_state(np.concatenate([self.state, pad], axis=1))

    def reset(self, rows: I64) -> None:
        """Empty ``rows`` (nothing pending, as new ones start)."""
        self.age[rows] = -1
        self.open_time[rows] = 0
        self.state[:, rows] = 0.0

    def put(self, rows: I64, other: OutcomeTracker) -> None:
        """Write ``other``'s rows, in order, into ``rows``."""
        self.age[rows] = other.age
        self.open_time[rows] = other.open_time
        self.state[:, rows] = other.state

    def advance(self, rows: I64, high: F64, low: F64, close: F64) -> Completed | None:
        """One new closed bar on each of ``rows`` (distinct): age their pending events and
        return the horizons this bar completes (None if none)."""
        age = self.age[rows]
        live = age >= 0
        if not live.any():
            return None
        state = self.state
        extremes = state[1:3, rows]  # running high and low of every slot (free ones too)
        np.maximum(extremes[0], high[:, None], out=extremes[0])
        np.minimum(extremes[1], low[:, None], out=extremes[1])
        state[1:3, rows] = extremes
        age += live
        done = live & self.is_horizon[age]  # a free slot (-1) is masked by ``live``
        age[age >= self.width] = -1  # last horizon reached: the slot is free again
        self.age[rows] = age
        if not done.any():
            return None
        ri, si = np.nonzero(done)
        r = rows[ri]
        values = state[:, r, si]  # FLOAT_STATE x completed
        base = values[0]
        excursion = values[1:3] / base - 1.0
        reached = age[ri, si]
        regime = values[3:6]
        if np.isfinite(regime).all():
            trend, atr_ratio, volume_ratio = regime.tolist()
        else:
            trend, atr_ratio, volume_ratio = (_nullable(x) for x in regime)
        return Completed(
            rows=r,
            at=ri,
            open_time=self.open_time[r, si].tolist(),
            horizon=np.where(reached < 0, self.width, reached).tolist(),
            close=base.tolist(),
            ret=(close[ri] / base - 1.0).tolist(),
            mfe=excursion[0].tolist(),
            mae=excursion[1].tolist(),
            trend=trend,
            atr_ratio=atr_ratio,
            volume_ratio=volume_ratio,
        )

    def track(
        self,
        rows: I64,
        *,
        bar_count: I64,
        open_time: I64,
        close: F64,
        trend: F64,
        atr: F64,
        volume_ratio: F64,
    ) -> None:
        """Start tracking the events that fired on the bars just closed on ``rows``;
        ``bar_count`` = the rows' bar counts including that bar (it picks the slot)."""
        if not len(rows):
            return
        slot = bar_count % self.width
        self.age[rows, slot] = 0
        self.open_time[rows, slot] = open_time
        f = self.floats
        f["close"][rows, slot] = close
        f["high"][rows, slot] = -np.inf
        f["low"][rows, slot] = np.inf
        f["trend"][rows, slot] = trend
        with np.errstate(divide="ignore", invalid="ignore"):
            f["atr_ratio"][rows, slot] = atr / close
        f["volume_ratio"][rows, slot] = volume_ratio

    # --- checkpoint ----------------------------------------------------------------------
    def arrays(self, rows: I64) -> dict[str, npt.NDArray[np.generic]]:
        """The pending slots of ``rows`` as named arrays (checkpoint; ``out_row``: the
        position in ``rows``).

        Sparse: only occupied slots are saved (row, slot, then their values), so the
        checkpoint grows with the pending events, not with rows x ``max(horizons)``; a free
        slot's values are never read (``track`` resets them)."""
        ri, si = np.nonzero(self.age[rows] >= 0)
        r = rows[ri]
        out: dict[str, npt.NDArray[np.generic]] = {
            "out_row": ri.astype(np.int64),
            "out_slot": si.astype(np.int64),
            "out_age": self.age[r, si],
            "out_open_time": self.open_time[r, si],
        }
        out.update({f"out_{k}": v[r, si] for k, v in self.floats.items()})
        return out

    @classmethod
    def from_arrays(
        cls, config: OutcomeConfig, rows: int, arrays: dict[str, npt.NDArray[np.generic]]
    ) -> OutcomeTracker:
        """Inverse of :meth:`arrays`; without the arrays (an older checkpoint) nothing is
        pending."""
        tracker = cls(config, rows)
        if "out_row" not in arrays:
            return tracker
        ri = arrays["out_row"].astype(np.int64)
        si = arrays["out_slot"].astype(np.int64)
        if len(ri) and (ri.max() >= rows or si.max() >= tracker.width):
            raise ValueError("pending outcome slot out of range")
        tracker.age[ri, si] = arrays["out_age"]
        tracker.open_time[ri, si] = arrays["out_open_time"]
        for k in FLOAT_STATE:
            tracker.floats[k][ri, si] = arrays[f"out_{k}"]
        return tracker


def _nullable(values: F64) -> list[float | None]:
    """Floats, with ``None`` for NaN and infinities (no value yet)."""
    finite = np.isfinite(values)
    if finite.all():
        return values.tolist()  # type: ignore[no-any-return]
    return [x if ok else None for x, ok in zip(values.tolist(), finite.tolist(), strict=True)]
