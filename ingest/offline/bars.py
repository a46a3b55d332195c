"""History inputs for ``alphapulse replay``: an OHLCV bars CSV, and counted rejections (pure).

*Bars CSV* — a header naming at least ``time``, ``open``, ``high``, ``low``, ``close``
(``volume`` optional; case and spaces ignored; ``date``, ``datetime``, ``timestamp``,
``open_time`` are accepted for ``time``; other columns such as ``Adj Close`` are ignored)::

    Date,Open,High,Low,Close,Adj Close,Volume
    1999-01-04,1229.23,1248.81,1219.10,1228.10,1228.10,877000000

``time`` is an ISO-8601 date or datetime (naive = UTC) or epoch seconds / milliseconds (by
magnitude: below 1e11 seconds, below 1e14 milliseconds). Rows may come in any order: they are
sorted by time. Each row's time is floored to its timeframe's UTC bucket (a daily bar dated
``1999-01-04`` opens at 00:00 UTC). Gaps are kept as gaps (no bar there, as with trades).

Every row that is not used is counted by reason (:class:`Rejections`): ``missing_field``,
``bad_time``, ``bad_number``, ``non_finite``, ``non_positive`` (a price ≤ 0),
``bad_ohlc`` (high below open/close/low or low above open/close/high), ``bad_volume``
(negative), ``duplicate`` (a second row for the same bar: the first one is kept).
"""

from __future__ import annotations

import csv
import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from common.errors import BadInput
from ingest.offline.ticks import open_text

TIME_COLUMNS: Final = ("time", "timestamp", "date", "datetime", "open_time", "opentime")
PRICE_COLUMNS: Final = ("open", "high", "low", "close")
SHOWN: Final = 5
_UNITS: Final = ((86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s"))


@dataclass(slots=True)
class Rejections:
    """Rows a reader did not use: a count per reason and the first few, for people."""

    counts: Counter[str] = field(default_factory=Counter)
    first: list[tuple[int, str, str]] = field(default_factory=list)

    def add(self, lineno: int, line: str, error: BadInput) -> None:
        self.counts[error.reason] += 1
        if len(self.first) < SHOWN:
            self.first.append((lineno, error.reason, f"{error.detail} | {line[:120]}"))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        """``skipped N rows: reason n, ...`` then the first few, one per line."""
        if not self.total:
            return []
        by = ", ".join(f"{r} {n}" for r, n in sorted(self.counts.items()))
        out = [f"skipped {self.total} rows: {by}"]
        out += [f"  line {n}: {reason}: {detail}" for n, reason, detail in self.first]
        return out


@dataclass(frozen=True, slots=True)
class BarRow:
    open_time: int  # ms, not yet floored
    open: float
    high: float
    low: float
    close: float
    volume: float


def parse_time_ms(text: str) -> int:
    """ISO-8601 date/datetime (naive = UTC) or epoch seconds/ms -> epoch ms."""
    s = text.strip()
    try:
        x = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(x):
            raise BadInput("bad_time", f"time {text!r}")
        return round(x * 1000) if abs(x) < 1e11 else round(x)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError as e:
        raise BadInput("bad_time", f"time {text!r}") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


def _number(text: str, name: str) -> float:
    try:
        x = float(text)
    except ValueError as e:
        raise BadInput("bad_number", f"{name} {text!r}") from e
    if not math.isfinite(x):
        raise BadInput("non_finite", f"{name} {text!r}")
    return x


def _columns(header: list[str]) -> dict[str, int]:
    norm = [h.strip().lower().replace(" ", "_") for h in header]
    cols: dict[str, int] = {}
    for name in TIME_COLUMNS:
        if name in norm:
            cols["time"] = norm.index(name)
            break
    for name in (*PRICE_COLUMNS, "volume"):
        if name in norm:
            cols[name] = norm.index(name)
    missing = [c for c in ("time", *PRICE_COLUMNS) if c not in cols]
    if missing:
        raise ValueError(f"the header names no {', '.join(missing)} column (got {header!r})")
    return cols


def _row(row: list[str], cols: dict[str, int]) -> BarRow:
    if len(row) <= max(cols.values()) or any(not row[i].strip() for i in cols.values()):
        raise BadInput("missing_field", f"{len(row)} columns")
    t = parse_time_ms(row[cols["time"]])
    o, h, lo, c = (_number(row[cols[k]], k) for k in PRICE_COLUMNS)
    v = _number(row[cols["volume"]], "volume") if "volume" in cols else 0.0
    if min(o, h, lo, c) <= 0:
        raise BadInput("non_positive", f"prices {o} {h} {lo} {c}")
    if h < max(o, c, lo) or lo > min(o, c, h):
        raise BadInput("bad_ohlc", f"open {o} high {h} low {lo} close {c}")
    if v < 0:
        raise BadInput("bad_volume", f"volume {v}")
    return BarRow(t, o, h, lo, c, v)


def read_bar_rows(
    path: str | Path, on_bad: Callable[[int, str, BadInput], None]
) -> list[tuple[int, BarRow]]:
    """Every usable row with its line number, in file order (rejections to ``on_bad``).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a header without
    the needed columns.
    """
    out: list[tuple[int, BarRow]] = []
    with open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file")
        cols = _columns(header)
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                out.append((lineno, _row(row, cols)))
            except BadInput as e:
                on_bad(lineno, ",".join(row), e)
    return out


def infer_timeframe_ms(times: list[int]) -> int | None:
    """The most common positive spacing of the sorted times (``None`` for < 2 distinct)."""
    uniq = sorted(set(times))
    gaps = Counter(b - a for a, b in itertools.pairwise(uniq))
    if not gaps:
        return None
    return max(gaps.items(), key=lambda kv: (kv[1], -kv[0]))[0]


def timeframe_name(ms: int) -> str:
    """``86400000`` -> ``"1d"``; ``ValueError`` if not whole seconds."""
    for unit_ms, unit in _UNITS:
        if ms % unit_ms == 0:
            return f"{ms // unit_ms}{unit}"
    raise ValueError(f"bar spacing {ms} ms is not a whole number of seconds")


def bars_in_order(
    rows: list[tuple[int, BarRow]],
    tf_ms: int,
    on_bad: Callable[[int, str, BadInput], None],
) -> list[BarRow]:
    """Rows floored to their bucket, sorted by time; a later row of the same bucket (in file
    order) is a ``duplicate``."""
    seen: dict[int, int] = {}
    kept: list[BarRow] = []
    for lineno, r in rows:
        bucket = r.open_time - r.open_time % tf_ms
        if bucket in seen:
            on_bad(lineno, str(r), BadInput("duplicate", f"same bar as line {seen[bucket]}"))
            continue
        seen[bucket] = lineno
        kept.append(BarRow(bucket, r.open, r.high, r.low, r.close, r.volume))
    kept.sort(key=lambda b: b.open_time)
    return kept
