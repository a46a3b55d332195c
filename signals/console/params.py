"""Query parameters of the JSON API and the CSV export, parsed and checked (pure).

A bad parameter raises ``ParamError`` with a one-line reason; the server answers 400 with it.
Times are epoch milliseconds or ISO 8601 (``2024-08-08T23:54:00Z``). Ranges are half-open
``[from, to)``. Lists of rows are paged: ``limit`` is capped, and the answer carries the
cursor of the next page, so a huge range is never loaded whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

_NAME = re.compile(r"^[A-Za-z0-9._:/\-]{1,64}$")
_TIMEFRAME = re.compile(r"^[1-9][0-9]{0,4}[smhdw]$")
DIRECTIONS = ("long", "short")
KINDS = ("pattern", "signal")


class ParamError(ValueError):
    """A bad query parameter; ``str()`` is the one-line reason."""


def _one(q: Mapping[str, str], name: str) -> str | None:
    value = q.get(name)
    return None if value is None or value == "" else value


def name_param(q: Mapping[str, str], name: str, *, required: bool = False) -> str | None:
    value = _one(q, name)
    if value is None:
        if required:
            raise ParamError(f"{name}: required")
        return None
    if not _NAME.match(value):
        raise ParamError(f"{name}: expected letters, digits and ._:/- (1-64), got {value!r}")
    return value


def timeframe_param(q: Mapping[str, str], *, required: bool = False) -> str | None:
    value = _one(q, "timeframe")
    if value is None:
        if required:
            raise ParamError("timeframe: required")
        return None
    if not _TIMEFRAME.match(value):
        raise ParamError(f"timeframe: expected like 1s, 5s, 1m, 1h, got {value!r}")
    return value


def time_param(q: Mapping[str, str], name: str) -> datetime | None:
    """Epoch milliseconds or ISO 8601 (naive = UTC)."""
    value = _one(q, name)
    if value is None:
        return None
    try:
        if re.fullmatch(r"-?\d{1,16}", value):
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ParamError(f"{name}: expected epoch ms or ISO 8601, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def int_param(q: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    value = _one(q, name)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ParamError(f"{name}: expected an integer, got {value!r}") from None
    if not lo <= n <= hi:
        raise ParamError(f"{name}: expected {lo}..{hi}, got {n}")
    return n


def float_param(q: Mapping[str, str], name: str, lo: float, hi: float) -> float | None:
    value = _one(q, name)
    if value is None:
        return None
    try:
        x = float(value)
    except ValueError:
        raise ParamError(f"{name}: expected a number, got {value!r}") from None
    if not lo <= x <= hi:
        raise ParamError(f"{name}: expected {lo}..{hi}, got {value}")
    return x


def choice_param(q: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    value = _one(q, name)
    if value is not None and value not in choices:
        raise ParamError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def range_params(q: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    start, end = time_param(q, "from"), time_param(q, "to")
    if start is not None and end is not None and start >= end:
        raise ParamError("from: must be before to")
    return start, end


@dataclass(frozen=True, slots=True)
class SignalFilter:
    """What the Signals page, /api/signals and the signals export select (newest first)."""

    exchange: str | None = None
    symbol: str | None = None
    timeframe: str | None = None
    direction: str | None = None
    min_score: float | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 100
    cursor: tuple[datetime, str] | None = None  # (time, id) of the last row of the page before

    @classmethod
    def parse(cls, q: Mapping[str, str], *, max_limit: int = 1000) -> SignalFilter:
        start, end = range_params(q)
        return cls(
            exchange=name_param(q, "exchange"),
            symbol=name_param(q, "symbol"),
            timeframe=timeframe_param(q),
            direction=choice_param(q, "direction", DIRECTIONS),
            min_score=float_param(q, "min_score", 0.0, 1.0),
            start=start,
            end=end,
            limit=int_param(q, "limit", min(100, max_limit), 1, max_limit),
            cursor=cursor_param(q),
        )


def cursor_param(q: Mapping[str, str]) -> tuple[datetime, str] | None:
    """``before=<epoch ms>:<id>``: the page after (older than) this row."""
    value = _one(q, "before")
    if value is None:
        return None
    ms, sep, ident = value.partition(":")
    if not sep or not ident or not re.fullmatch(r"\d{1,16}", ms):
        raise ParamError(f"before: expected <epoch ms>:<id> from a previous page, got {value!r}")
    return datetime.fromtimestamp(int(ms) / 1000, UTC), ident


def make_cursor(time: datetime, ident: str) -> str:
    return f"{round(time.timestamp() * 1000)}:{ident}"


@dataclass(frozen=True, slots=True)
class SeriesFilter:
    """One series (exchange, symbol, timeframe) over ``[start, end)``: bars and markers.
    The newest ``limit`` rows of the range come back (the chart pans back with ``to``)."""

    exchange: str
    symbol: str
    timeframe: str
    start: datetime | None
    end: datetime | None
    limit: int

    @classmethod
    def parse(cls, q: Mapping[str, str], *, default_limit: int, max_limit: int) -> SeriesFilter:
        start, end = range_params(q)
        exchange = name_param(q, "exchange", required=True)
        symbol = name_param(q, "symbol", required=True)
        timeframe = timeframe_param(q, required=True)
        assert exchange is not None and symbol is not None and timeframe is not None
        return cls(
            exchange,
            symbol,
            timeframe,
            start,
            end,
            int_param(q, "limit", default_limit, 1, max_limit),
        )


@dataclass(frozen=True, slots=True)
class OutcomeFilter:
    """Outcome rows (the ``outcome_rows`` view) and the statistics made of them."""

    kind: str | None = None
    exchange: str | None = None
    symbol: str | None = None
    timeframe: str | None = None
    pattern: str | None = None
    horizon: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 1000
    offset: int = 0

    @classmethod
    def parse(cls, q: Mapping[str, str], *, max_limit: int = 10_000) -> OutcomeFilter:
        start, end = range_params(q)
        horizon = _one(q, "horizon")
        return cls(
            kind=choice_param(q, "kind", KINDS),
            exchange=name_param(q, "exchange"),
            symbol=name_param(q, "symbol"),
            timeframe=timeframe_param(q),
            pattern=name_param(q, "pattern"),
            horizon=None if horizon is None else int_param(q, "horizon", 1, 1, 100_000),
            start=start,
            end=end,
            limit=int_param(q, "limit", min(1000, max_limit), 1, max_limit),
            offset=int_param(q, "offset", 0, 0, 10**9),
        )
