"""Stream entries to table rows: the sink's pure core (no I/O).

Each stream maps to one table. A ``ticks:{p}`` entry (a micro-batch) gives one row per tick, a
``bars`` entry one row per bar (v2: a detector write's bars; v1: one bar), a ``patterns`` entry
one row per pattern that fired on each of its events, a ``signals``
entry one row, an ``outcomes`` entry one row per bar outcome. Rows are plain tuples in the
column order of ``TableSpec.columns``, with ``datetime`` values for timestamptz columns and
JSON text for jsonb columns, ready for binary COPY or for ``unnest``; the ticks of an entry
come as a ``TickRows``, which makes those tuples only when asked and otherwise goes to the
database as COPY data built column-wise (``sink.tickcopy``). An entry that does not
decode raises ``DecodeError`` (the runtime dead-letters it); a row that decodes but breaks a
table constraint is the database's call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import numpy as np
import orjson

from common.columns import BarColumns, EventColumns, Key, is_v1
from common.contracts import Bar, BarOutcome, Fields, PatternEvent, TickBatch, decode_outcomes
from common.errors import DecodeError
from sink import tickcopy

Row = tuple[Any, ...]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table the sink writes: its columns and their PostgreSQL types (for ``unnest``)."""

    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    time_column: str

    def column_list(self) -> str:
        return ", ".join(self.columns)


def _table(name: str, time_column: str, columns: str) -> TableSpec:
    """A ``TableSpec`` from ``"column type, ..."`` in the table's column order."""
    pairs = [c.split() for c in columns.split(",")]
    return TableSpec(name, tuple(c for c, _ in pairs), tuple(t for _, t in pairs), time_column)


TICKS = _table(
    "ticks",
    "time",
    "time timestamptz, exchange text, symbol text, trade_id text, price float8, qty float8, "
    "side text, recv_time timestamptz",
)
BARS = _table(
    "bars",
    "open_time",
    "exchange text, symbol text, timeframe text, open_time timestamptz, open float8, "
    "high float8, low float8, close float8, volume float8, quote_volume float8, trades int8, "
    "taker_buy_volume float8, vwap float8",
)
PATTERNS = _table(
    "patterns",
    "open_time",
    "exchange text, symbol text, timeframe text, open_time timestamptz, pattern text, value int4",
)
SIGNALS = _table(
    "signals",
    "time",
    "id text, time timestamptz, exchange text, symbol text, timeframe text, "
    "open_time timestamptz, direction text, score float8, patterns jsonb, features jsonb, "
    "model text, emitted_at timestamptz, doc jsonb",
)
# One row per pattern event bar and completed horizon (``common.contracts.BarOutcome``); the
# view ``outcome_rows`` (migration 0004) turns them into per-firing, per-direction rows.
OUTCOMES = _table(
    "outcomes",
    "open_time",
    "id text, exchange text, symbol text, timeframe text, open_time timestamptz, horizon int4, "
    "close float8, ret float8, mfe float8, mae float8, trend float8, atr_ratio float8, "
    "volume_ratio float8, cost_bps float8",
)
TABLES: dict[str, TableSpec] = {t.name: t for t in (TICKS, BARS, PATTERNS, SIGNALS, OUTCOMES)}


def ms_to_dt(ms: int) -> datetime:
    """Epoch milliseconds to an aware UTC datetime (exact: integer arithmetic)."""
    return EPOCH + timedelta(milliseconds=ms)


def ns_to_dt(ns: int) -> datetime:
    """Epoch nanoseconds to an aware UTC datetime, truncated to PostgreSQL's microseconds."""
    return EPOCH + timedelta(microseconds=ns // 1000)


class TickRows(Sequence[Row]):
    """The rows of ``ticks:{p}`` entries, kept as their decoded batches.

    The store's fast path sends them as binary COPY data built column-wise
    (:meth:`copy_data`, ``sink.tickcopy``); the tuples of ``tick_rows`` are made only when a
    row is looked at (the ON CONFLICT and bisecting path, a dead letter), once.
    """

    __slots__ = ("_data", "_len", "_rows", "batches")

    def __init__(self, batches: Iterable[TickBatch] = ()) -> None:
        self.batches: list[TickBatch] = list(batches)
        self._len = sum(len(b) for b in self.batches)
        self._rows: list[Row] | None = None
        self._data: bytes | None = None

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> Row: ...
    @overload
    def __getitem__(self, index: slice) -> list[Row]: ...
    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        return self.rows()[index]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows())

    def rows(self) -> list[Row]:
        """Every row as a tuple (made on the first call)."""
        if self._rows is None:
            self._rows = [row for batch in self.batches for row in tick_rows(batch)]
        return self._rows

    def extend(self, more: Iterable[Row]) -> None:
        """Append the rows of ``more``, another ``TickRows`` (as for a list, in order)."""
        if not isinstance(more, TickRows):
            raise TypeError(f"TickRows extends with TickRows, not {type(more).__name__}")
        self.batches += more.batches
        self._len += len(more)
        self._data = None
        if self._rows is not None:
            self._rows += more.rows()

    def copy_data(self) -> bytes:
        """The binary COPY data of every row, columns in ``tickcopy.COLUMNS`` order (built
        once: a batch that falls back to the staging path copies the same data again)."""
        if self._data is None:
            self._data = tickcopy.copy_data(self.batches)
        return self._data


def tick_rows(batch: TickBatch) -> list[Row]:
    """One row per tick of a decoded ``ticks:{p}`` entry."""
    syms = batch.symbols
    epoch, td = EPOCH, timedelta
    return [
        (
            epoch + td(microseconds=ts // 1000),
            syms[sym][0],
            syms[sym][1],
            tid,
            price,
            qty,
            "buy" if side else "sell",
            epoch + td(microseconds=recv // 1000),
        )
        for (sym, side, ts, recv, price, qty), tid in zip(
            batch.records.tolist(), batch.trade_ids, strict=True
        )
    ]


def _bar_rows(keys: Sequence[Key], records: Iterable[Sequence[Any]]) -> list[Row]:
    """Rows of bars given as ``(key index, open_time, open, …, vwap)`` (``BAR_DTYPE`` order)."""
    epoch, td = EPOCH, timedelta
    return [
        (*keys[k], epoch + td(milliseconds=ot), o, h, lo, c, v, q, t, tb, vw)
        for k, ot, o, h, lo, c, v, q, t, tb, vw in records
    ]


def bar_rows(columns: BarColumns) -> list[Row]:
    """One row per bar of a ``bars`` v2 entry's columns."""
    return _bar_rows(columns.keys, columns.records.tolist())


def bar_row(bar: Bar) -> Row:
    """The row of one bar record (a v1 entry), its values as they are: a value the table
    cannot take is the store's to reject, row by row, not the decoder's."""
    key = (bar.exchange, bar.symbol, bar.timeframe)
    values = (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.quote_volume, bar.trades)
    return _bar_rows([key], [(0, bar.open_time, *values, bar.taker_buy_volume, bar.vwap)])[0]


def _pattern_rows(
    at: Sequence[tuple[Key, int]], names: Sequence[str], fired: Iterable[Sequence[Any]]
) -> list[Row]:
    """Rows of ``(event, pattern index, value)`` firings, ``at[event]`` = (key, open_time)."""
    epoch, td = EPOCH, timedelta
    return [
        (*at[e][0], epoch + td(milliseconds=at[e][1]), names[p], value) for e, p, value in fired
    ]


def pattern_rows(columns: EventColumns) -> list[Row]:
    """One row per pattern that fired on each event of a ``patterns`` v2 entry (per event in
    pattern name order, as for v1)."""
    keys, names, fired = columns.bars.keys, columns.names, columns.fired
    at = [(keys[k], ot) for k, ot in columns.bars.records[["key", "open_time"]].tolist()]
    rank = np.argsort(np.argsort(np.array(names, dtype=object)))
    order = np.lexsort((rank[fired["pattern"]], fired["event"]))
    return _pattern_rows(at, names, fired[order].tolist())


def event_rows(event: PatternEvent) -> list[Row]:
    """One row per pattern that fired on a v1 event (values as they are, like ``bar_row``)."""
    b = event.bar
    names = sorted(event.patterns)
    fired = [(0, p, event.patterns[name]) for p, name in enumerate(names)]
    return _pattern_rows([((b.exchange, b.symbol, b.timeframe), b.open_time)], names, fired)


def parse_iso(text: str) -> datetime:
    """``2024-08-08T23:55:00.012Z`` (the signal contract's timestamps) to a UTC datetime."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return dt.astimezone(UTC)


def signal_row(doc: Mapping[str, Any]) -> Row:
    """The row of one signal (JSON contract v1, ``signals/schema/signal.v1.json``)."""
    try:
        if int(doc["v"]) != 1:
            raise DecodeError("signal", f"unsupported v={doc['v']!r}")
        open_time = ms_to_dt(int(doc["open_time_ms"]))
        emitted = doc.get("emitted_at")
        patterns, features = doc["patterns"], doc["features"]
        if not isinstance(patterns, dict) or not isinstance(features, dict):
            raise DecodeError("signal", "patterns and features must be objects")
        model = doc.get("model")
        return (
            str(doc["id"]),
            open_time,
            str(doc["exchange"]),
            str(doc["symbol"]),
            str(doc["timeframe"]),
            open_time,
            str(doc["direction"]),
            float(doc["score"]),
            orjson.dumps(patterns).decode(),
            orjson.dumps(features).decode(),
            None if model is None else str(model),
            None if emitted is None else parse_iso(str(emitted)),
            orjson.dumps(doc).decode(),
        )
    except DecodeError:
        raise
    except (KeyError, ValueError, TypeError, OverflowError, orjson.JSONEncodeError) as e:
        raise DecodeError("signal", repr(e)) from e


def decode_signal(fields: Fields) -> list[Row]:
    """A ``signals`` stream entry (fields ``v``, ``id``, ``d`` = the JSON) to its row."""
    try:
        doc = orjson.loads(fields[b"d"])
    except (KeyError, orjson.JSONDecodeError) as e:
        raise DecodeError("signal", repr(e)) from e
    if not isinstance(doc, dict):
        raise DecodeError("signal", "payload is not an object")
    return [signal_row(doc)]


def decode_ticks(fields: Fields) -> TickRows:
    return TickRows([TickBatch.decode(fields)])


def decode_bars(fields: Fields) -> list[Row]:
    """A ``bars`` entry of either version (``common.columns``) to its rows."""
    if is_v1(fields, "bar"):
        return [bar_row(Bar.decode(fields))]
    return bar_rows(BarColumns.decode(fields))


def decode_patterns(fields: Fields) -> list[Row]:
    """A ``patterns`` entry of either version to its rows (``recent`` is not stored)."""
    if is_v1(fields, "pattern_event"):
        return event_rows(PatternEvent.decode(fields))
    return pattern_rows(EventColumns.decode(fields))


# --- outcomes (issue 12 §1) ------------------------------------------------------------
def outcome_row(o: BarOutcome) -> Row:
    """The ``outcomes`` row of one bar outcome (long direction; the view flips for short)."""
    return (
        o.id,
        o.exchange,
        o.symbol,
        o.timeframe,
        ms_to_dt(o.open_time),
        o.horizon,
        o.close,
        o.ret,
        o.mfe,
        o.mae,
        o.trend,
        o.atr_ratio,
        o.volume_ratio,
        o.cost_bps,
    )


def decode_outcome_entry(fields: Fields) -> list[Row]:
    """An ``outcomes`` stream entry (many bar outcomes) to its rows."""
    return [outcome_row(o) for o in decode_outcomes(fields)]


#: What a decoder gives: rows, or the rows of a ``ticks:{p}`` entry.
Rows = list[Row] | TickRows
Decoder = Callable[[Fields], Rows]
DECODERS: dict[str, Decoder] = {
    "ticks": decode_ticks,
    "bars": decode_bars,
    "patterns": decode_patterns,
    "signals": decode_signal,
    "outcomes": decode_outcome_entry,
}
