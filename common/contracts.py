"""Typed records that travel between the stages, and their stream codecs.

Every encoded entry carries ``v`` (the contract version). Within a version fields are only
added; a reader ignores fields it does not know. Decoders raise ``DecodeError`` (bad input:
dead-lettered by the runtime) and never anything else on malformed data.

Records and ids
---------------
* ``Tick``  — one trade. Prices/sizes are float64 (TA-Lib works in doubles).
* ``Bar``   — one closed OHLCV bar; id ``exchange:symbol:timeframe:open_time_ms``.
* ``PatternEvent`` — a closed bar on which at least one pattern fired, with every pattern's
  value and the features scoring needs; its id is the bar id.
* ``Signal`` — defined by the signals stage (public JSON contract, ``signals/schema``);
  id = bar id + ``:`` + direction.
* ``BarOutcome`` — the forward path of a pattern event's bar at one horizon (long direction;
  ``docs/outcomes.md``); key = bar id + horizon. Stream ``outcomes``: one entry per detector
  write, ``v``, ``n`` and ``d`` = orjson array of ``BarOutcome.to_list()`` arrays.

The ids are per record, not per entry: a detector that crashes after its XADD and before its
checkpoint writes the same records again (perhaps grouped into other entries), and every
consumer de-duplicates by record id (the sink by primary key, signals by signal id).

Bars and pattern events (streams ``bars`` and ``patterns``)
-----------------------------------------------------------
v1 (``Bar.encode``/``PatternEvent.encode``): one record per entry, ``v`` = ``1``, ``id``, ``d`` =
orjson of ``to_dict()``. v2 (what detectors write, :mod:`common.columns`): one entry per
detector write (split past ``MAX_ENTRY_RECORDS``), columnar. Readers decode both
(``common.columns.decode_bars``/``decode_events``), so v1 entries left in a stream by an
older detector are still read after an upgrade.

=========  ==============================================================================
field      content (``bars`` v2: ``v n k b``; ``patterns`` v2/v3: all of them, one row per event)
=========  ==============================================================================
``v``      ``2`` (``patterns``: ``3``)
``n``      number of records (bars, or pattern events), ASCII decimal
``k``      orjson array of ``[exchange, symbol, timeframe]`` — the entry's key table
``b``      little-endian packed array of ``BAR_DTYPE`` records, ``n`` of them: ``key`` u4
           (index into ``k``), ``open_time`` i8 (ms), ``open high low close volume
           quote_volume`` f8, ``trades`` i8, ``taker_buy_volume vwap`` f8 — a pattern event's
           bar in ``patterns``
``p``      orjson array of pattern names (``CDLHAMMER`` …), the entry's name table
``f``      packed ``FIRED_DTYPE`` (``event`` u4, ``pattern`` u2 index into ``p``, ``value`` i4):
           every pattern that fired, grouped by event in order, each event's in its own order
``x``      orjson array of ``[feature name, kind]``, kind ``"i"`` (an integer, e.g. ``trend``)
           or ``"f"`` — the columns of ``m``
``m``      little-endian f8 matrix, ``n`` rows x ``len(x)`` columns, row-major: the features;
           NaN is ``None`` (as is anything not finite, which orjson wrote as null in v1)
``r``      the ``recent`` lists (``PatternEvent``) of the events: v3 (what detectors write
           to ``patterns``), every list's entries as JSON documents, concatenated in event
           order; v2, one orjson array of ``n`` arrays
``rl``     v3: little-endian u4 byte length of each document of ``r``
``rc``     v3: little-endian u4, ``n`` of them: how many documents of ``r`` each event has
=========  ==============================================================================

``patterns`` entries are v3 (``v`` = ``3``): v2 but for ``r``, ``rl`` and ``rc``, so a reader
slices the ``recent`` documents out without parsing them (the signals stage parses one only
when a cooldown reads it and it is not in its memo; the sink never does). ``bars`` entries are
v2. Decoded, a v2 or v3 entry gives ``Bar``/``PatternEvent`` records equal (``==``, with the
same value types) to those of the v1 entries it replaces.

Tick micro-batches (stream ``ticks:{p}``)
-----------------------------------------
A stream entry holds a batch of ticks of one partition in a columnar, compact form so that
decoding costs a few microseconds per batch, not per tick:

=========  ==============================================================================
field      content
=========  ==============================================================================
``v``      ``1``
``n``      number of ticks, ASCII decimal
``s``      orjson array of ``[exchange, symbol, native_symbol]`` — the batch's symbol table
``i``      trade ids joined by ``\\x1f`` (ASCII unit separator, never in a trade id)
``a``      little-endian packed array of ``TICK_DTYPE`` records, ``n`` of them:
           ``sym`` u2 (index into ``s``), ``side`` u1 (1 = taker bought, 0 = taker sold),
           ``ts`` i8 (exchange trade time, ns), ``recv`` i8 (local receive time, ns),
           ``price`` f8, ``qty`` f8
=========  ==============================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from common.errors import DecodeError

Side = Literal["buy", "sell"]
Fields = Mapping[bytes, bytes]

TICKS_VERSION = 1
BARS_VERSION = 1
PATTERNS_VERSION = 1
OUTCOMES_VERSION = 1
# Default horizon (bars of the event's timeframe) of a pattern event's ``recent`` list; the
# signals stage's cooldown must not look further back (checked at its start). Kept small: every
# event carries its ``recent`` entries, so the horizon multiplies what detectors encode, Redis
# stores and signals/sink decode per event (20 bars made events ~3x larger than 5).
DEFAULT_RECENT_BARS = 5
# The features a ``recent`` entry carries: those the signals stage's cooldown reads (its
# ``FEATURES_USED``, in that order), not every feature of the bar; the entries are encoded once
# and decoded in every later event of their series, so their size is paid many times.
RECENT_FEATURES: tuple[str, ...] = ("volume_ratio", "trend", "htf_trend", "rsi")


def encode_recent_entry(
    open_time: int, patterns: Mapping[str, int], features: Mapping[str, float | int | None]
) -> bytes:
    """The JSON document of a pattern event's ``recent`` entry: its bar's open time, its
    patterns (in firing order) and ``features``, those of ``RECENT_FEATURES`` in that order.
    It defines the bytes: the detectors and the signals stage build them column-wise for
    many events at once (``common.columns.recent_documents``, byte for byte the same), the
    detectors once, when an event fires, the signals stage for each event it scores, to find
    that entry in the next events' ``recent`` lists without parsing it."""
    return orjson.dumps({"open_time": open_time, "patterns": patterns, "features": features})


TICK_DTYPE = np.dtype(
    [
        ("sym", "<u2"),
        ("side", "u1"),
        ("ts", "<i8"),
        ("recv", "<i8"),
        ("price", "<f8"),
        ("qty", "<f8"),
    ]
)
#: ``TICK_DTYPE`` records seen as plain bytes: numpy concatenates these far faster than
#: structured arrays (no field-by-field dtype promotion).
TICK_RAW = np.dtype((np.void, TICK_DTYPE.itemsize))
#: What joins the trade ids of a ``ticks:{p}`` entry (field ``i``).
TRADE_ID_SEP = "\x1f"


class Tick(NamedTuple):
    """One trade, normalized. ``side`` is the taker's side; times are integer ns.

    A ``NamedTuple`` rather than a frozen dataclass: immutable all the same, and about ten
    times cheaper to build, which matters at a million ticks per second per parser
    (``ingest.venues`` builds it with ``tuple.__new__``).
    """

    exchange: str
    symbol: str
    native_symbol: str
    trade_id: str
    price: float
    qty: float
    side: Side
    ts: int
    recv_ts: int


@dataclass(slots=True)
class TickBatch:
    """A columnar batch of ticks (the decoded form of one ``ticks:{p}`` entry)."""

    symbols: list[tuple[str, str, str]]
    records: npt.NDArray[np.void]
    trade_ids: list[str]

    def __len__(self) -> int:
        return len(self.trade_ids)

    @classmethod
    def from_ticks(cls, ticks: Iterable[Tick]) -> TickBatch:
        index: dict[tuple[str, str, str], int] = {}
        rows: list[tuple[int, int, int, int, float, float]] = []
        ids: list[str] = []
        for t in ticks:
            key = (t.exchange, t.symbol, t.native_symbol)
            sym = index.setdefault(key, len(index))
            rows.append((sym, 1 if t.side == "buy" else 0, t.ts, t.recv_ts, t.price, t.qty))
            ids.append(t.trade_id)
        return cls(list(index), np.array(rows, dtype=TICK_DTYPE), ids)

    @classmethod
    def concat(cls, batches: list[TickBatch]) -> TickBatch:
        """The ticks of ``batches`` in order, as one batch with one symbol table (each
        symbol once: the detectors' plausibility screen bounds a new series' ids per table
        entry). A consumer whose results do not depend on batch boundaries (the bar
        aggregator) applies a run of small entries at the cost of one; ingest re-cuts its
        buffered batches from it (``ingest.packing.merge_split``)."""
        if len(batches) == 1:
            return batches[0]
        index: dict[tuple[str, str, str], int] = {}
        luts = [[index.setdefault(s, len(index)) for s in b.symbols] for b in batches]
        if len(index) > 1 << 16:
            raise ValueError(f"{len(index)} symbols: more than a batch's table holds")
        records = np.concatenate([b.records.view(TICK_RAW) for b in batches]).view(TICK_DTYPE)
        lut = np.array([x for table in luts for x in table], np.intp)
        base = np.repeat(np.cumsum([0, *map(len, luts[:-1])]), [len(b) for b in batches])
        records["sym"] = lut[records["sym"].astype(np.intp) + base]
        return cls(list(index), records, [tid for b in batches for tid in b.trade_ids])

    def __iter__(self) -> Iterator[Tick]:
        syms = self.symbols
        for (sym, side, ts, recv, price, qty), tid in zip(
            self.records.tolist(), self.trade_ids, strict=True
        ):
            ex, symbol, native = syms[sym]
            yield Tick(ex, symbol, native, tid, price, qty, "buy" if side else "sell", ts, recv)

    def encode(self) -> dict[bytes, bytes]:
        return {
            b"v": b"%d" % TICKS_VERSION,
            b"n": b"%d" % len(self.trade_ids),
            b"s": orjson.dumps(self.symbols),
            b"i": TRADE_ID_SEP.join(self.trade_ids).encode(),
            b"a": self.records.astype(TICK_DTYPE, copy=False).tobytes(),
        }

    @classmethod
    def decode(cls, fields: Fields) -> TickBatch:
        try:
            if fields[b"v"] != b"1":
                raise DecodeError("tick_version", f"unsupported v={fields[b'v']!r}")
            n = int(fields[b"n"])
            symbols = [tuple(s) for s in orjson.loads(fields[b"s"])]
            raw_ids = fields[b"i"].decode()
            ids = raw_ids.split(TRADE_ID_SEP) if n else []
            records = np.frombuffer(fields[b"a"], dtype=TICK_DTYPE)
        except DecodeError:
            raise
        except (KeyError, ValueError, TypeError, UnicodeDecodeError, orjson.JSONDecodeError) as e:
            raise DecodeError("tick_batch", repr(e)) from e
        if len(records) != n or len(ids) != n:
            raise DecodeError("tick_batch", f"n={n} but {len(records)} records, {len(ids)} ids")
        if n and int(records["sym"].max()) >= len(symbols):
            raise DecodeError("tick_batch", "symbol index out of range")
        if any(len(s) != 3 or not all(isinstance(x, str) for x in s) for s in symbols):
            raise DecodeError("tick_batch", "malformed symbol table")
        return cls(symbols, records, ids)


def bar_id(exchange: str, symbol: str, timeframe: str, open_time_ms: int) -> str:
    """Deterministic id of a bar (and of the pattern event on it)."""
    return f"{exchange}:{symbol}:{timeframe}:{open_time_ms}"


class Bar(NamedTuple):
    """One closed OHLCV bar. ``open_time`` is epoch milliseconds (UTC, aligned).

    A ``NamedTuple`` (like ``Tick`` and ``BarOutcome``): immutable, and built ~8x faster
    than a frozen dataclass (0.2 vs 1.6 us), which the signals stage pays for every pattern
    event it decodes (``common.columns``)."""

    exchange: str
    symbol: str
    timeframe: str
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trades: int
    taker_buy_volume: float
    vwap: float

    @property
    def id(self) -> str:
        return bar_id(self.exchange, self.symbol, self.timeframe, self.open_time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "open_time": self.open_time,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "quote_volume": self.quote_volume,
            "trades": self.trades,
            "taker_buy_volume": self.taker_buy_volume,
            "vwap": self.vwap,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Bar:
        try:
            return cls(
                str(d["exchange"]),
                str(d["symbol"]),
                str(d["timeframe"]),
                int(d["open_time"]),
                float(d["open"]),
                float(d["high"]),
                float(d["low"]),
                float(d["close"]),
                float(d["volume"]),
                float(d["quote_volume"]),
                int(d["trades"]),
                float(d["taker_buy_volume"]),
                float(d["vwap"]),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise DecodeError("bar", repr(e)) from e

    def encode(self) -> dict[bytes, bytes]:
        return {
            b"v": b"%d" % BARS_VERSION,
            b"id": self.id.encode(),
            b"d": orjson.dumps(self.to_dict()),
        }

    @classmethod
    def decode(cls, fields: Fields) -> Bar:
        return cls.from_dict(_load_versioned(fields, BARS_VERSION, "bar"))


@dataclass(frozen=True, slots=True)
class PatternEvent:
    """A closed bar on which at least one pattern fired.

    ``patterns`` holds every pattern that fired (TA-Lib's value, e.g. ``{"CDLHAMMER": 100}``).
    ``features`` holds what scoring needs, computed by the detector that owns the symbol (where
    bar order is guaranteed): e.g. ``volume_ratio``, ``ema``, ``ema_slope``, ``trend``,
    ``htf_trend``, ``rsi``, ``atr`` — documented in ``detectors``. ``recent`` carries the
    pattern events of the same symbol/timeframe within the cooldown horizon, oldest first, as
    ``{"open_time", "patterns", "features"}`` dicts (``features``: those of ``RECENT_FEATURES``
    the bar has), so the signals stage can apply cooldowns (judging each earlier bar in its
    own context) as a pure function of this one event.
    """

    bar: Bar
    patterns: dict[str, int]
    features: dict[str, float | int | None]
    recent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.bar.id

    def to_dict(self) -> dict[str, Any]:
        return {
            "bar": self.bar.to_dict(),
            "patterns": self.patterns,
            "features": self.features,
            "recent": self.recent,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PatternEvent:
        try:
            bar = Bar.from_dict(d["bar"])
            patterns = {str(k): int(v) for k, v in d["patterns"].items()}
            features = dict(d["features"])
            recent = list(d.get("recent", []))
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise DecodeError("pattern_event", repr(e)) from e
        return cls(bar, patterns, features, recent)

    def encode(self) -> dict[bytes, bytes]:
        return {
            b"v": b"%d" % PATTERNS_VERSION,
            b"id": self.id.encode(),
            b"d": orjson.dumps(self.to_dict()),
        }

    @classmethod
    def decode(cls, fields: Fields) -> PatternEvent:
        return cls.from_dict(_load_versioned(fields, PATTERNS_VERSION, "pattern_event"))


class BarOutcome(NamedTuple):
    """The forward outcome of a pattern event's bar ``open_time`` at ``horizon`` bars.

    A ``NamedTuple`` (like ``Tick``), so ``tuple(o)`` is its wire form. The detector engine
    builds none: it emits columns (``common.columns.OutcomeColumns``) and zips them into the
    same arrays; records are built from those columns where a consumer wants them (replay,
    tests) and by the decoder (the sink).

    Long direction: ``ret = close[t+h]/close[t] - 1``, ``mfe = max(high[t+1..t+h])/close[t] - 1``,
    ``mae = min(low[t+1..t+h])/close[t] - 1``; the short direction's are ``-ret``, ``-mae``,
    ``-mfe``. ``trend``, ``atr_ratio`` (ATR/close) and ``volume_ratio`` are the bar's regime at
    t (None while warming up); ``cost_bps`` is the hit threshold the detector was run with.
    """

    exchange: str
    symbol: str
    timeframe: str
    open_time: int
    horizon: int
    close: float
    ret: float
    mfe: float
    mae: float
    trend: float | None
    atr_ratio: float | None
    volume_ratio: float | None
    cost_bps: float

    @property
    def id(self) -> str:
        """The event's (bar's) id; a stored outcome's key is this id and ``horizon``."""
        return bar_id(self.exchange, self.symbol, self.timeframe, self.open_time)

    def to_list(self) -> list[Any]:
        return list(self)

    @classmethod
    def from_list(cls, d: Any) -> BarOutcome:
        try:
            ex, sym, tf, ot, h, close, ret, mfe, mae, trend, atr_ratio, vr, cost = d
            return cls(
                str(ex),
                str(sym),
                str(tf),
                int(ot),
                int(h),
                float(close),
                float(ret),
                float(mfe),
                float(mae),
                _optional_float(trend),
                _optional_float(atr_ratio),
                _optional_float(vr),
                float(cost),
            )
        except (ValueError, TypeError) as e:
            raise DecodeError("outcome", repr(e)) from e


def _optional_float(x: Any) -> float | None:
    return None if x is None else float(x)


def encode_outcomes(outcomes: Iterable[BarOutcome]) -> dict[bytes, bytes]:
    """One ``outcomes`` stream entry holding ``outcomes`` (ids are per record, not entry)."""
    # orjson writes tuples, not NamedTuples, as arrays
    return encode_outcome_rows([tuple(o) for o in outcomes])


def encode_outcome_rows(rows: list[tuple[Any, ...]]) -> dict[bytes, bytes]:
    """The ``outcomes`` entry of plain tuples in ``BarOutcome`` field order (what the
    detectors' ``common.columns.OutcomeColumns`` zip to, with no record built)."""
    return {
        b"v": b"%d" % OUTCOMES_VERSION,
        b"n": b"%d" % len(rows),
        b"d": orjson.dumps(rows),
    }


def decode_outcomes(fields: Fields) -> list[BarOutcome]:
    """Inverse of :func:`encode_outcomes`; ``DecodeError`` on anything malformed."""
    try:
        v = int(fields[b"v"])
        items = orjson.loads(fields[b"d"])
    except (KeyError, ValueError, orjson.JSONDecodeError) as e:
        raise DecodeError("outcomes", repr(e)) from e
    if v != OUTCOMES_VERSION:
        raise DecodeError("outcomes", f"unsupported v={v}")
    if not isinstance(items, list):
        raise DecodeError("outcomes", "payload is not an array")
    return [BarOutcome.from_list(item) for item in items]


def _load_versioned(fields: Fields, version: int, what: str) -> dict[str, Any]:
    try:
        v = int(fields[b"v"])
        payload = orjson.loads(fields[b"d"])
    except (KeyError, ValueError, orjson.JSONDecodeError) as e:
        raise DecodeError(what, repr(e)) from e
    if v != version:
        raise DecodeError(what, f"unsupported v={v}")
    if not isinstance(payload, dict):
        raise DecodeError(what, "payload is not an object")
    return payload
