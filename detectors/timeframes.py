"""Bar timeframes: parsing ``1m,5m,15m,1h,4h,1d`` and UTC epoch-aligned bucket maths in ms.

A timeframe is ``<n><unit>`` with unit ``s`` (seconds), ``m`` (minutes), ``h`` (hours) or
``d`` (days). Buckets are aligned to the Unix epoch, so every bucket of a timeframe that
divides a day starts on the same UTC wall-clock boundaries everywhere (``1d`` bars open at
00:00 UTC).

The list is sorted by duration and every timeframe must be a whole multiple of the previous
one (``1m,5m,15m,1h,4h,1d`` qualifies; ``2m,3m`` does not). The nesting is what lets the bar
aggregator fold finished finest bars into the coarser ones and decide "late" once for all
timeframes: a tick that falls into an already closed finest bucket is late for every
timeframe, and one that is not is late for none.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from common.errors import ConfigError

DEFAULT_TIMEFRAMES = "1m,5m,15m,1h,4h,1d"
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SPEC = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")


@dataclass(frozen=True, slots=True)
class Timeframe:
    """One timeframe: its canonical name (``"5m"``) and its duration in milliseconds."""

    name: str
    ms: int

    def bucket(self, ts_ms: int) -> int:
        """Open time (ms) of the bucket that holds ``ts_ms``."""
        return ts_ms - ts_ms % self.ms

    def buckets(self, ts_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Vectorized :meth:`bucket` (floor division, also right for negative times)."""
        return ts_ms - ts_ms % self.ms


def parse_timeframe(spec: str, variable: str = "TIMEFRAMES") -> Timeframe:
    """``"15m"`` -> ``Timeframe("15m", 900000)``; ``ConfigError`` naming ``variable`` if bad."""
    m = _SPEC.match(spec.strip())
    if m is None:
        raise ConfigError(variable, f"expected a timeframe like 1m, 4h or 1d, got {spec!r}")
    n, unit = int(m.group(1)), m.group(2)
    return Timeframe(f"{n}{unit}", n * _UNIT_MS[unit])


def parse_timeframes(
    spec: str | Sequence[str] = DEFAULT_TIMEFRAMES, variable: str = "TIMEFRAMES"
) -> tuple[Timeframe, ...]:
    """Parse and validate a comma-separated list (or sequence) of timeframes.

    Returns them sorted by duration. Raises ``ConfigError`` on an empty list, a duplicate
    duration, or a timeframe that is not a whole multiple of the next shorter one.
    """
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    parts = [p.strip() for p in parts if p.strip()]
    if not parts:
        raise ConfigError(variable, "expected at least one timeframe, e.g. 1m,5m,1h")
    tfs = sorted((parse_timeframe(p, variable) for p in parts), key=lambda t: t.ms)
    for prev, cur in itertools.pairwise(tfs):
        if cur.ms == prev.ms:
            raise ConfigError(variable, f"{prev.name} and {cur.name} are the same duration")
        if cur.ms % prev.ms:
            raise ConfigError(
                variable, f"{cur.name} is not a whole multiple of {prev.name} (they must nest)"
            )
    return tuple(tfs)


def timeframe_names(tfs: Sequence[Timeframe]) -> list[str]:
    return [t.name for t in tfs]
