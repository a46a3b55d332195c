"""Columnar stream codecs of ``bars`` and ``patterns`` (contract v2; wire format in
:mod:`common.contracts`): one stream entry per detector write instead of one per record.

At a 1-second boundary a detector partition closes ~60 bars per timeframe at once; v1 cost a
``Bar``/``PatternEvent`` object, an orjson document and a redis-py XADD (~10 us of client
Python) per record, and every consumer an orjson decode per record. v2 packs a write's bars
into one little-endian numpy structured array (``BAR_DTYPE``) beside a key table, and its
pattern events into those columns plus a sparse (event, pattern, value) array, a feature
matrix and the ``recent`` lists' JSON documents with their lengths (``patterns`` v3; v2 had
one orjson array of the lists, which every reader parsed whole). Decoding is ``np.frombuffer``
(views, no copy), a few orjson loads per entry and a slice per ``recent`` document.

:class:`BarColumns` and :class:`EventColumns` are the in-memory forms the detector engine
builds directly (``detectors.partition.Output``); ``to_bars``/``to_events`` give the same
``Bar``/``PatternEvent`` records (``==``) that v1 entries decode to, so scoring, replay and the
sink see identical records. :func:`bar_columns` and :func:`event_columns` (and the record
forms :func:`decode_bars`, :func:`decode_events`) read both versions: a v1 entry still in a
stream after an upgrade decodes to a one-record batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from common.contracts import Bar, BarOutcome, Fields, PatternEvent, bar_id, encode_outcome_rows
from common.errors import DecodeError

COLUMNS_VERSION = 2
# Records per entry at most. A boundary's write of one partition (63 symbols x 3 timeframes at
# a minute) fits in one entry; a write after a backlog (a 50 ms work slice: ~1,000 bars) is
# split, so a consumer's read of BATCH_COUNT entries holds at most BATCH_COUNT x this many
# records (with ``recent``, a pattern event is ~2 kB on the wire).
MAX_ENTRY_RECORDS = 256

Key = tuple[str, str, str]  # (exchange, symbol, timeframe)
Features = dict[str, float | int | None]
# One event's ``recent`` list. Each entry is either decoded (a dict, as a record carries it) or
# its JSON document (bytes): the detector encodes an entry once, when its event fires, and
# reuses the document in the next ``cooldown_bars`` events of its series; a ``patterns`` v3
# entry carries the documents as they are and its reader slices them out without parsing them
# (the signals stage parses one only when a cooldown reads it and its memo does not know it).
Recent = Sequence[dict[str, Any] | bytes]

BAR_DTYPE = np.dtype(
    [
        ("key", "<u4"),
        ("open_time", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("volume", "<f8"),
        ("quote_volume", "<f8"),
        ("trades", "<i8"),
        ("taker_buy_volume", "<f8"),
        ("vwap", "<f8"),
    ]
)
FIRED_DTYPE = np.dtype([("event", "<u4"), ("pattern", "<u2"), ("value", "<i4")])
_V2 = b"%d" % COLUMNS_VERSION
# ``patterns`` entries are v3: v2 but for the ``recent`` lists (``r``, ``rl``, ``rc``).
PATTERN_COLUMNS_VERSION = 3  # (``common.contracts.PATTERNS_VERSION`` is the v1 record's)
_V3 = b"%d" % PATTERN_COLUMNS_VERSION
_U4 = np.dtype("<u4")


def _compact(table: Sequence[Any], index: npt.NDArray[Any]) -> tuple[list[Any], npt.NDArray[Any]]:
    """Only the table rows ``index`` uses, and ``index`` renumbered into them."""
    used, inverse = np.unique(index, return_inverse=True)
    return [table[i] for i in used.tolist()], inverse.astype(index.dtype, copy=False)


@dataclass(slots=True)
class BarColumns:
    """Closed bars as columns: ``records[i]["key"]`` indexes ``keys``."""

    keys: list[Key] = field(default_factory=list)
    records: npt.NDArray[np.void] = field(default_factory=lambda: np.empty(0, BAR_DTYPE))

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def from_bars(cls, bars: Iterable[Bar]) -> BarColumns:
        index: dict[Key, int] = {}
        rows = [
            (
                index.setdefault((b.exchange, b.symbol, b.timeframe), len(index)),
                b.open_time,
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume,
                b.quote_volume,
                b.trades,
                b.taker_buy_volume,
                b.vwap,
            )
            for b in bars
        ]
        return cls(list(index), np.array(rows, dtype=BAR_DTYPE))

    @classmethod
    def concat(cls, parts: Sequence[BarColumns]) -> BarColumns:
        """One table for all ``parts`` (their key tables merged, duplicates once)."""
        if len(parts) == 1:
            return parts[0]
        index: dict[Key, int] = {}
        chunks = []
        for part in parts:
            remap = np.array([index.setdefault(k, len(index)) for k in part.keys], np.uint32)
            rec = part.records.copy()
            rec["key"] = remap[rec["key"]]
            chunks.append(rec)
        records = np.concatenate(chunks) if chunks else np.empty(0, BAR_DTYPE)
        return cls(list(index), records)

    def take(self, index: npt.NDArray[np.intp] | slice) -> BarColumns:
        """A subset of the bars (the key table is shared, not compacted)."""
        return BarColumns(self.keys, self.records[index])

    def to_bars(self) -> list[Bar]:
        keys = self.keys
        rows: list[tuple[int, int, float, float, float, float, float, float, int, float, float]]
        rows = self.records.tolist()
        return [
            Bar(*keys[k], ot, o, h, lo, c, v, q, t, tb, vw)
            for k, ot, o, h, lo, c, v, q, t, tb, vw in rows
        ]

    def ids(self) -> list[str]:
        """Each bar's id (``common.contracts.bar_id``)."""
        keys = self.keys
        rows: list[tuple[int, int]] = self.records[["key", "open_time"]].tolist()
        return [bar_id(*keys[k], ot) for k, ot in rows]

    def timeframe_counts(self) -> dict[str, int]:
        """Bars per timeframe (the detectors' ``bars`` counter labels)."""
        out: dict[str, int] = {}
        counts = np.bincount(self.records["key"], minlength=len(self.keys)).tolist()
        for key, n in zip(self.keys, counts, strict=True):
            if n:
                out[key[2]] = out.get(key[2], 0) + n
        return out

    def _fields(self) -> dict[bytes, bytes]:
        keys, key = _compact(self.keys, self.records["key"])
        records = self.records.copy()
        records["key"] = key
        return {
            b"v": _V2,
            b"n": b"%d" % len(records),
            b"k": orjson.dumps(keys),
            b"b": records.tobytes(),
        }

    def encode(self) -> list[dict[bytes, bytes]]:
        """The ``bars`` v2 entries of these bars (one, or more past ``MAX_ENTRY_RECORDS``)."""
        return [self.take(s)._fields() for s in _slices(len(self))]

    @classmethod
    def decode(cls, fields: Fields) -> BarColumns:
        """A ``bars`` v2 entry (or the bar columns of a ``patterns`` v2 entry)."""
        try:
            n = int(fields[b"n"])
            keys = orjson.loads(fields[b"k"])
            records = np.frombuffer(fields[b"b"], dtype=BAR_DTYPE)
        except (KeyError, ValueError, orjson.JSONDecodeError) as e:
            raise DecodeError("bar_columns", repr(e)) from e
        if len(records) != n:
            raise DecodeError("bar_columns", f"n={n} but {len(records)} bars")
        table = _key_table(keys)
        if n and int(records["key"].max()) >= len(table):
            raise DecodeError("bar_columns", "key index out of range")
        return cls(table, records)


def _key_table(keys: Any) -> list[Key]:
    """The decoded ``k`` field as key tuples; checked in C-speed passes (a boundary's entry
    has a key per bar): unpacking refuses a wrong shape, ``str.join`` anything not a str."""
    if not isinstance(keys, list) or not all(map(_is_list, keys)):
        raise DecodeError("bar_columns", "malformed key table: not an array of arrays")
    try:
        table: list[Key] = [(e, s, t) for e, s, t in keys]
        "".join(chain.from_iterable(table))
    except (TypeError, ValueError) as e:
        raise DecodeError("bar_columns", f"malformed key table: {e}") from e
    return table


def _slices(n: int) -> Iterator[slice]:
    for start in range(0, n, MAX_ENTRY_RECORDS):
        yield slice(start, start + MAX_ENTRY_RECORDS)


def feature_dicts(
    table: Sequence[tuple[str, bool]], matrix: npt.NDArray[np.float64]
) -> list[Features]:
    """Per row of ``matrix``, ``{name: value}``: NaN is ``None``, an integer feature an int.
    The conversions run column-wise in numpy (an object array holds the Python values)."""
    names = [name for name, _ in table]
    rows: list[list[float | int | None]] = feature_values(table, matrix).tolist()
    return [dict(zip(names, row, strict=True)) for row in rows]


def feature_values(
    table: Sequence[tuple[str, bool]], matrix: npt.NDArray[np.float64]
) -> npt.NDArray[np.object_]:
    """``matrix`` as the Python values of ``feature_dicts``: NaN ``None``, an integer
    feature's value an ``int`` (its int64), any other a ``float``."""
    values = matrix.astype(object)
    missing = np.isnan(matrix)
    values[missing] = None
    for i, (_, is_int) in enumerate(table):
        if is_int:
            present = ~missing[:, i]
            values[present, i] = matrix[present, i].astype(np.int64).astype(object)
    return values


def pattern_dicts(
    names: Sequence[str], fired: npt.NDArray[np.void], n: int
) -> list[dict[str, int]]:
    """Per event, ``{pattern: value}`` in the order of ``fired`` (the event's firing order)."""
    out: list[dict[str, int]] = [{} for _ in range(n)]
    for event, pattern, value in fired.tolist():
        out[event][names[pattern]] = value
    return out


def recent_documents(
    open_times: Sequence[int],
    names: Sequence[str],
    fired: npt.NDArray[np.void],
    table: Sequence[tuple[str, bool]],
    matrix: npt.NDArray[np.float64],
    *,
    values: npt.NDArray[np.object_] | None = None,
) -> list[bytes | None]:
    """Per event, the JSON document of its ``recent`` entry, byte for byte what
    ``encode_recent_entry`` gives for its open time, its ``pattern_dicts`` dict and its
    ``feature_dicts(table, matrix)`` row; built column-wise (issue 17: the detectors' and the
    signals stage's CPU per event): orjson writes each feature column's values once, each
    fired pattern becomes ``"name":value``, and one bytes template per event joins them, so no
    dict is built. ``fired`` is sorted by event (as ``EventColumns`` keeps it). None for an
    event the template could not write as that function would: an infinite feature (written
    as null, it would not mean its value) or a pattern named twice (never written by the
    detectors). ``values``: ``feature_values(table, matrix)``, where the caller has it."""
    n = len(open_times)
    if n == 0:
        return []
    if values is None:
        values = feature_values(table, matrix)
    columns = [orjson.dumps(values[:, j].tolist())[1:-1].split(b",") for j in range(len(table))]
    keys = b",".join(orjson.dumps(name).replace(b"%", b"%%") + b":%b" for name, _ in table)
    template = b'{"open_time":%d,"patterns":{%b},"features":{' + keys + b"}}"
    event, pattern, value = (fired[k] for k in ("event", "pattern", "value"))
    # Each distinct (pattern, value) written once: a boundary's events share a few dozen.
    written: dict[int, bytes] = {}
    texts = [
        written.get(code) or written.setdefault(code, _pattern_text(names, code))
        for code in (pattern.astype(np.int64) << 32 | value.astype(np.int64) & 0xFFFFFFFF).tolist()
    ]
    ends = np.searchsorted(event, np.arange(1, n + 1)).tolist()
    patterns = [b",".join(texts[a:b]) for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    docs: list[bytes | None] = [
        template % (t, p, *v) for t, p, *v in zip(open_times, patterns, *columns, strict=True)
    ]
    refused = np.asarray(np.isinf(matrix).any(axis=1))
    pair = event.astype(np.int64) * len(names) + pattern
    if len(set(names)) < len(names) or not (pair[1:] > pair[:-1]).all():  # (not the detectors')
        named = np.unique(names, return_inverse=True)[1]
        pair = np.sort(event.astype(np.int64) * len(names) + named[pattern])
        refused[pair[1:][pair[1:] == pair[:-1]] // len(names)] = True  # a repeated name
    for i in np.flatnonzero(refused).tolist():
        docs[i] = None
    return docs


def _pattern_text(names: Sequence[str], code: int) -> bytes:
    """``"name":value`` of a fired pattern coded as its index << 32 | its value's low 32 bits
    (an int32)."""
    low = code & 0xFFFFFFFF
    return b"%b:%d" % (orjson.dumps(names[code >> 32]), low - (1 << 32) if low >> 31 else low)


def feature_matrix(
    columns: Sequence[npt.NDArray[np.float64]], table: Sequence[tuple[str, bool]], n: int
) -> npt.NDArray[np.float64]:
    """The ``n`` x features f8 matrix of a feature table's ``columns``: what is not finite is
    NaN (``None``, as orjson wrote it in v1), an integer feature is truncated as ``int()``."""
    if not columns:
        return np.empty((n, 0), np.float64)
    m = np.column_stack(columns).astype(np.float64)
    m[~np.isfinite(m)] = np.nan
    for i, (_, is_int) in enumerate(table):
        if is_int:
            m[:, i] = np.trunc(m[:, i])
    return m


@dataclass(slots=True)
class EventColumns:
    """Pattern events as columns: ``bars`` (one per event), ``fired`` (event, pattern index
    into ``names``, value) grouped by event in each event's order, ``features`` (one row per
    event, one column per ``feature_table`` entry ``(name, is_integer)``), ``recent`` (each
    event's list, or its JSON: :data:`Recent`)."""

    bars: BarColumns = field(default_factory=BarColumns)
    names: list[str] = field(default_factory=list)
    fired: npt.NDArray[np.void] = field(default_factory=lambda: np.empty(0, FIRED_DTYPE))
    feature_table: list[tuple[str, bool]] = field(default_factory=list)
    features: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty((0, 0)))
    recent: list[Recent] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.bars)

    @classmethod
    def from_events(cls, events: Sequence[PatternEvent]) -> EventColumns:
        """Columns of ``events``, which must share their feature names (as one detector
        write's do; :func:`encode_events` splits a mixed list)."""
        table = _feature_table(events)
        names: dict[str, int] = {}
        fired = []
        for j, e in enumerate(events):
            for name, value in e.patterns.items():
                fired.append((j, names.setdefault(name, len(names)), value))
        columns = [
            np.array([_nan(e.features[name]) for e in events], np.float64) for name, _ in table
        ]
        return cls(
            BarColumns.from_bars(e.bar for e in events),
            list(names),
            np.array(fired, dtype=FIRED_DTYPE),
            table,
            feature_matrix(columns, table, len(events)),
            [e.recent for e in events],
        )

    @classmethod
    def concat(cls, parts: Sequence[EventColumns]) -> EventColumns:
        parts = [p for p in parts if len(p)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls()
        table = parts[0].feature_table
        if any(p.feature_table != table for p in parts):
            raise ValueError("events of one entry must share their feature names")
        index: dict[str, int] = {}
        fired = []
        offset = 0
        for p in parts:
            remap = np.array([index.setdefault(n, len(index)) for n in p.names], np.uint16)
            f = p.fired.copy()
            if len(f):
                f["pattern"] = remap[f["pattern"]]
                f["event"] += offset
            fired.append(f)
            offset += len(p)
        return cls(
            BarColumns.concat([p.bars for p in parts]),
            list(index),
            np.concatenate(fired),
            table,
            np.concatenate([p.features for p in parts]),
            [r for p in parts for r in p.recent],
        )

    def take(self, s: slice) -> EventColumns:
        """Events ``s`` (a step-1 slice): their patterns renumbered to start at 0."""
        start, stop, _ = s.indices(len(self))
        ev = self.fired["event"]
        lo, hi = np.searchsorted(ev, [start, stop]).tolist()
        fired = self.fired[lo:hi].copy()
        fired["event"] -= start
        return EventColumns(
            self.bars.take(s),
            self.names,
            fired,
            self.feature_table,
            self.features[s],
            self.recent[s],
        )

    def pattern_counts(self) -> dict[str, int]:
        """Firings per pattern name (the detectors' ``patterns`` counter labels)."""
        counts = np.bincount(self.fired["pattern"], minlength=len(self.names)).tolist()
        return {name: n for name, n in zip(self.names, counts, strict=True) if n}

    def to_events(self) -> list[PatternEvent]:
        """The records; ``DecodeError`` if a ``recent`` document is not JSON."""
        n = len(self)
        pats = pattern_dicts(self.names, self.fired, n)
        feats = feature_dicts(self.feature_table, self.features)
        return [
            PatternEvent(bar, p, f, [_recent_entry(e) for e in r])
            for bar, p, f, r in zip(self.bars.to_bars(), pats, feats, self.recent, strict=True)
        ]

    def _fields(self) -> dict[bytes, bytes]:
        out = self.bars._fields()
        names, pattern = _compact(self.names, self.fired["pattern"])
        fired = self.fired.copy()
        fired["pattern"] = pattern
        out[b"p"] = orjson.dumps(names)
        out[b"f"] = fired.tobytes()
        out[b"x"] = orjson.dumps(
            [[name, "i" if is_int else "f"] for name, is_int in self.feature_table]
        )
        out[b"m"] = np.ascontiguousarray(self.features, "<f8").tobytes()
        out[b"v"] = _V3
        docs = [e if isinstance(e, bytes) else orjson.dumps(e) for r in self.recent for e in r]
        out[b"r"] = b"".join(docs)
        out[b"rl"] = np.fromiter(map(len, docs), _U4, len(docs)).tobytes()
        out[b"rc"] = np.fromiter(map(len, self.recent), _U4, len(self.recent)).tobytes()
        return out

    def encode(self) -> list[dict[bytes, bytes]]:
        """The ``patterns`` v3 entries (one, or more past ``MAX_ENTRY_RECORDS``)."""
        return [self.take(s)._fields() for s in _slices(len(self))]

    @classmethod
    def decode(cls, fields: Fields) -> EventColumns:
        """A ``patterns`` v2 or v3 entry; ``DecodeError`` on anything malformed (the content
        of a v3 entry's ``recent`` documents is checked where they are read)."""
        bars = BarColumns.decode(fields)
        n = len(bars)
        try:
            names = orjson.loads(fields[b"p"])
            fired = np.frombuffer(fields[b"f"], dtype=FIRED_DTYPE)
            table = orjson.loads(fields[b"x"])
            matrix = np.frombuffer(fields[b"m"], dtype="<f8")
            recent: list[Any] = (
                _recent_documents(fields, n)
                if fields.get(b"v") == _V3
                else orjson.loads(fields[b"r"])
            )
        except (KeyError, ValueError, orjson.JSONDecodeError) as e:
            raise DecodeError("pattern_columns", repr(e)) from e
        if not isinstance(names, list) or not _all_str(names):
            raise DecodeError("pattern_columns", "malformed pattern names")
        if not isinstance(table, list) or not all(
            isinstance(t, list) and len(t) == 2 and isinstance(t[0], str) and t[1] in ("i", "f")
            for t in table
        ):
            raise DecodeError("pattern_columns", "malformed feature table")
        if len(fired) and (
            int(fired["event"].max()) >= n
            or int(fired["pattern"].max()) >= len(names)
            or bool((np.diff(fired["event"].astype(np.int64)) < 0).any())
        ):
            raise DecodeError("pattern_columns", "pattern index out of range or out of order")
        if len(matrix) != n * len(table):
            raise DecodeError("pattern_columns", f"{len(matrix)} feature values for {n} events")
        # Each recent entry's content is the scorer's to check (it judges them one by one).
        if not isinstance(recent, list) or len(recent) != n or not all(map(_is_list, recent)):
            raise DecodeError("pattern_columns", "recent is not one list per event")
        return cls(
            bars,
            names,
            fired,
            [(name, kind == "i") for name, kind in table],
            matrix.reshape(n, len(table)),
            recent,
        )


def _recent_documents(fields: Fields, n: int) -> list[list[bytes]]:
    """A v3 entry's ``recent`` lists, each entry's JSON document sliced out of ``r`` (by the
    lengths ``rl``, ``rc`` of them per event), not parsed."""
    lengths = np.frombuffer(fields[b"rl"], dtype=_U4)
    counts = np.frombuffer(fields[b"rc"], dtype=_U4)
    buffer = fields[b"r"]
    if len(counts) != n or int(counts.sum()) != len(lengths):
        raise ValueError(f"{len(counts)} recent counts for {n} events, {len(lengths)} documents")
    ends = np.cumsum(lengths, dtype=np.int64)
    if (ends[-1] if len(ends) else 0) != len(buffer):
        raise ValueError(f"recent documents of {ends[-1:].tolist()} bytes in {len(buffer)}")
    bounds = ends.tolist()
    docs = [buffer[a:b] for a, b in zip([0, *bounds], bounds, strict=False)]
    per_event = np.cumsum(counts, dtype=np.int64).tolist()
    return [docs[a:b] for a, b in zip([0, *per_event], per_event, strict=False)]


def _recent_entry(entry: dict[str, Any] | bytes) -> Any:
    """A ``recent`` entry decoded (a v3 entry's document parsed)."""
    if not isinstance(entry, bytes):
        return entry
    try:
        return orjson.loads(entry)
    except orjson.JSONDecodeError as e:
        raise DecodeError("pattern_columns", f"recent document: {e}") from e


def _all_str(items: list[Any]) -> bool:
    try:
        "".join(items)
    except TypeError:
        return False
    return True


def _is_list(x: Any) -> bool:
    return isinstance(x, list)


def _feature_table(events: Sequence[PatternEvent]) -> list[tuple[str, bool]]:
    """The shared feature names of ``events``; a feature is an integer one if any event
    holds an int for it (``trend``; ``None`` fits either kind)."""
    names = list(events[0].features) if events else []
    if any(list(e.features) != names for e in events):
        raise ValueError("events of one entry must share their feature names")
    return [
        (
            k,
            any(
                isinstance(e.features[k], int) and not isinstance(e.features[k], bool)
                for e in events
            ),
        )
        for k in names
    ]


def _nan(x: float | int | None) -> float:
    return np.nan if x is None else float(x)


# --- both versions -----------------------------------------------------------------------
# The versions each kind of entry has: ``bar`` (stream ``bars``), ``pattern_event`` (``patterns``).
_VERSIONS = {"bar": (b"1", _V2), "pattern_event": (b"1", _V2, _V3)}


def is_v1(fields: Fields, what: str) -> bool:
    """Whether an entry is v1 (one record) rather than columns (v2, or a v3 ``patterns``
    entry); ``DecodeError`` (reason ``what``: ``bar`` or ``pattern_event``) for any other."""
    v = fields.get(b"v")
    if v not in _VERSIONS[what]:
        raise DecodeError(what, f"unsupported v={v!r}")
    return v == b"1"


def bar_columns(fields: Fields) -> BarColumns:
    """A ``bars`` entry of either version as columns (v1: one bar)."""
    if is_v1(fields, "bar"):
        bar = Bar.decode(fields)
        try:
            return BarColumns.from_bars([bar])
        except (OverflowError, ValueError) as e:  # a value beyond the v2 column's type
            raise DecodeError("bar", repr(e)) from e
    return BarColumns.decode(fields)


def event_columns(fields: Fields) -> EventColumns:
    """A ``patterns`` entry of either version as columns (v1: one event)."""
    if is_v1(fields, "pattern_event"):
        event = PatternEvent.decode(fields)
        try:
            return EventColumns.from_events([event])
        except (OverflowError, ValueError) as e:  # e.g. a pattern value beyond int32
            raise DecodeError("pattern_event", repr(e)) from e
    return EventColumns.decode(fields)


def decode_bars(fields: Fields) -> list[Bar]:
    """A ``bars`` entry of either version as records."""
    if is_v1(fields, "bar"):
        return [Bar.decode(fields)]
    return BarColumns.decode(fields).to_bars()


def decode_events(fields: Fields) -> list[PatternEvent]:
    """A ``patterns`` entry of either version as records."""
    if is_v1(fields, "pattern_event"):
        return [PatternEvent.decode(fields)]
    return EventColumns.decode(fields).to_events()


def encode_events(events: Sequence[PatternEvent]) -> list[dict[bytes, bytes]]:
    """``patterns`` v3 entries of any events (a new entry where the feature names change)."""
    out: list[dict[bytes, bytes]] = []
    start = 0
    for end in range(1, len(events) + 1):
        if end == len(events) or list(events[end].features) != list(events[start].features):
            out += EventColumns.from_events(events[start:end]).encode()
            start = end
    return out


def encode_bars(bars: Sequence[Bar]) -> list[dict[bytes, bytes]]:
    """``bars`` v2 entries of any bars."""
    return BarColumns.from_bars(bars).encode() if bars else []


# --- bar outcomes (stream ``outcomes``) --------------------------------------------------
@dataclass(frozen=True, slots=True)
class OutcomeColumns:
    """Bar outcomes (``common.contracts.BarOutcome``) as parallel columns, in the record's
    field order: what the detector engine emits for the horizons a closing group completes
    (``detectors.partition.Output``). The ``outcomes`` entry zips the columns straight into the
    arrays that ``encode_outcomes`` writes of records, byte for byte, so the live path builds
    no record; ``to_outcomes`` gives the records (replay, tests)."""

    exchange: Sequence[str]
    symbol: Sequence[str]
    timeframe: Sequence[str]
    open_time: Sequence[int]
    horizon: Sequence[int]
    close: Sequence[float]
    ret: Sequence[float]
    mfe: Sequence[float]
    mae: Sequence[float]
    trend: Sequence[float | None]
    atr_ratio: Sequence[float | None]
    volume_ratio: Sequence[float | None]
    cost_bps: Sequence[float]

    def __len__(self) -> int:
        return len(self.open_time)

    def columns(self) -> tuple[Sequence[Any], ...]:
        """The columns in ``BarOutcome`` field order."""
        return (
            self.exchange,
            self.symbol,
            self.timeframe,
            self.open_time,
            self.horizon,
            self.close,
            self.ret,
            self.mfe,
            self.mae,
            self.trend,
            self.atr_ratio,
            self.volume_ratio,
            self.cost_bps,
        )

    @classmethod
    def from_outcomes(cls, outcomes: Iterable[BarOutcome]) -> OutcomeColumns:
        columns = list(zip(*outcomes, strict=True)) or [()] * len(BarOutcome._fields)
        return cls(*columns)

    @classmethod
    def concat(cls, parts: Sequence[OutcomeColumns]) -> OutcomeColumns:
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.from_outcomes(())
        columns = zip(*(p.columns() for p in parts), strict=True)
        return cls(*(list(chain.from_iterable(c)) for c in columns))

    def rows(self) -> list[tuple[Any, ...]]:
        """One plain tuple per outcome (``tuple(BarOutcome)``, without the record)."""
        return list(zip(*self.columns(), strict=True))

    def to_outcomes(self) -> list[BarOutcome]:
        return list(map(BarOutcome._make, self.rows()))

    def encode(self) -> dict[bytes, bytes]:
        """The ``outcomes`` entry of these outcomes (the same bytes as ``encode_outcomes``)."""
        return encode_outcome_parts([self])


def encode_outcome_parts(parts: Sequence[OutcomeColumns]) -> dict[bytes, bytes]:
    """One ``outcomes`` entry of several parts (a detector write), zipped part by part
    instead of concatenating the columns first."""
    rows = chain.from_iterable(zip(*p.columns(), strict=True) for p in parts)
    return encode_outcome_rows(list(rows))
