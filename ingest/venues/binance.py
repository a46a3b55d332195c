"""Binance spot (``@trade``) and USDⓈ-M futures (``@aggTrade``, ``@trade``) market streams.

Docs: developers.binance.com — spot "WebSocket Streams" and derivatives/usds-margined-futures
"Websocket Market Streams". What this module relies on:

* Endpoint ``/stream`` (combined streams): every event arrives wrapped as
  ``{"stream": "<name>", "data": <payload>}``; ``/ws`` sends the bare payload. Both parse.
  Streams are subscribed with ``{"method":"SUBSCRIBE","params":[...],"id":N}``, answered by
  ``{"result":null,"id":N}``, errors by ``{"error":{"code":2,"msg":...},"id":N}`` (older
  form ``{"code":..,"msg":..}``).
* Limits: 1024 streams per connection; 5 (spot) / 10 (futures) incoming messages per second;
  a connection lives at most 24 hours; the server sends a WebSocket ping every 20 s (spot)
  / 3 min (futures) and the client must pong (``ingest.wsclient`` does, through picows).
* Spot trade ``t`` and futures aggregate-trade ``a`` ids are consecutive per symbol, so gaps
  are detectable. ``T`` is the trade time in ms. ``m`` is true when the **buyer is the
  maker**, i.e. the taker sold: ``m=true → sell``, ``m=false → buy``.
* Futures also has the raw ``@trade`` stream (``"e":"trade"``, id ``t``, and ``X``, the
  execution type). ``binance-futures`` subscribes ``@aggTrade`` but parses ``@trade`` frames
  too (a URL naming ``?streams=btcusdt@trade`` delivers them). Only ``X == "MARKET"`` is a
  market trade; ``INSURANCE_FUND``, ``ADL`` and ``NA`` executions are liquidation and
  deleveraging transfers, not prints of the order book — Binance leaves them out of
  ``aggTrade`` too — so they are ignored frames (counted as such), and any other or missing
  ``X`` is bad input. The ``t`` and ``a`` ids are different sequences: one ingest should take
  one of the two streams per symbol, or the gap detector sees the other's ids as jumps.
* A frame that carries trades this adapter does not take — an event ``trade``/``aggTrade``
  it does not parse (``aggTrade`` on spot), or a ``…@trade``/``…@aggTrade`` stream whose
  payload is not that event — is ``BadInput("unknown_frame")``: counted and dead-lettered,
  never silently ignored.

REST trade history (gap backfill, ``ingest.backfill``): the id the stream carries decides the
endpoint. Spot streams ``@trade`` (id ``t``), so it pages ``GET /api/v3/historicalTrades
?symbol=&fromId=&limit=`` (ids inclusive, at most 1000; ``[{"id","price","qty","quoteQty",
"time","isBuyerMaker","isBestMatch"}]``; weight 25 — ``/api/v3/aggTrades`` would give
aggregate ids, not ``t``). Futures streams ``@aggTrade`` (id ``a``): ``GET /fapi/v1/aggTrades
?symbol=&fromId=&limit=`` (``[{"a","p","q","f","l","T","m"}]``). Binance documents both as
public market data; older versions of its docs asked an API key for ``historicalTrades``: a
refusal is a counted backfill failure.

Symbols: ``BTCUSDT`` → ``BTC-USDT`` (spot), ``BTC-USDT-PERP`` (futures perpetual),
``BTCUSDT_250926`` → ``BTC-USDT-250926`` (futures delivery contract).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, itemgetter
from typing import Annotated, Any, ClassVar, Final

import msgspec
import numpy as np
import orjson

from common.contracts import Tick
from common.errors import BadInput
from ingest.venues import fields as f
from ingest.venues.base import (
    ACK,
    IGNORED,
    MAX_PRICE,
    MAX_QTY,
    MAX_TS_NS,
    MIN_TS_NS,
    ExchangeAdapter,
    FrameKind,
    Heartbeat,
    HistoryPage,
    HistoryQuery,
    ParseResult,
    chunks,
    control_result,
    error_result,
    trade_result,
)
from ingest.venues.batch import ParsedBatch, TradeColumns, in_bounds, parse_each
from ingest.venues.symbols import CONCAT_QUOTES, ConcatSpot, derivative_parts, split_concatenated

_SHUTDOWN: Final = control_result("shutdown")
_TRADE: Final = FrameKind.TRADE
_new: Final = tuple.__new__
_MIN_TS_MS: Final = MIN_TS_NS // 1_000_000
_MAX_TS_MS: Final = MAX_TS_NS // 1_000_000
_STR: Final = {str}
_INT: Final = {int}
_BOOL: Final = {bool}
#: Events that carry trades on some Binance stream, and the streams that carry them.
_TRADE_EVENTS: Final = frozenset({"trade", "aggTrade"})
_TRADE_STREAMS: Final = ("@trade", "@aggTrade")
#: Futures ``@trade`` executions that are not market trades (see the module docstring).
_NOT_MARKET: Final = frozenset({"INSURANCE_FUND", "ADL", "NA"})
#: The trade fields of a futures raw ``@trade`` payload, and its execution type last.
_RAW_FIELDS: Final = itemgetter("e", "s", "t", "T", "p", "q", "m", "X")
#: The strict path's reading of a trade payload, by id field (``t`` trade, ``a`` aggTrade).
_STRICT: Final = {k: f.TradeFields("s", k, "p", "q", "m", "T", None, f.int_id) for k in "ta"}

# --- typed decoding of the frames Binance sends for trades (msgspec) ------------------
# Decoding straight into these structs costs a third of ``orjson.loads`` into dicts: no
# dict, no key strings, types checked in C. They declare every field Binance sends and
# forbid any other, so every byte of an accepted frame was decoded and validated (a field
# they skipped could hide invalid UTF-8 or an out-of-range number orjson would reject):
# what they accept, orjson decodes to the same values. Anything else — another event, a
# new field, a wrong type, a control frame — raises, and ``parse`` takes the orjson path.
_Id = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]  # others: the orjson path
_DATA: Final = attrgetter("data")
_DECODE_ERRORS: Final = (msgspec.MsgspecError, UnicodeError, RecursionError)


class _SpotTrade(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    e: str
    E: int
    s: str
    t: _Id
    p: str
    q: str
    T: int
    m: bool
    M: bool


class _SpotFrame(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    stream: str
    data: _SpotTrade


class _AggTrade(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    e: str
    E: int
    a: _Id
    s: str
    p: str
    q: str
    f: int
    l: int  # noqa: E741 - Binance's name
    T: int
    m: bool


class _AggFrame(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    stream: str
    data: _AggTrade


class Binance(ExchangeAdapter):
    """Shared by spot and futures; they differ in event name, id field and symbol form."""

    event: ClassVar[str]  # "trade" | "aggTrade"
    id_key: ClassVar[str]  # "t" | "a"
    stream_suffix: ClassVar[str]  # "@trade" | "@aggTrade"
    _fields: ClassVar[itemgetter[Any]]  # the trade fields of a payload, in one C call
    _struct_row: ClassVar[attrgetter[tuple[Any, ...]]]  # the same, of a decoded struct
    _decoder: ClassVar[msgspec.json.Decoder[Any]]  # trade frames as Binance sends them
    #: Also parse raw ``@trade`` frames (id ``t``) whose ``X`` is ``MARKET`` (futures).
    raw_trades: ClassVar[bool] = False
    max_symbols_per_message = 200
    trade_ids_sequential = True
    columnar_batches = True
    max_connection_age_s = 24 * 3600.0

    # ---- client side ----------------------------------------------------------------
    def subscribe_messages(self, native_symbols: Sequence[str]) -> list[str]:
        streams = [s.lower() + self.stream_suffix for s in native_symbols]
        return [
            orjson.dumps({"method": "SUBSCRIBE", "params": part, "id": i}).decode()
            for i, part in enumerate(chunks(streams, self.max_symbols_per_message), start=1)
        ]

    def parse(self, frame: str | bytes, recv_ts_ns: int) -> ParseResult:
        """Parse one frame. Sample (spot, combined stream, from the recorded data)::

            {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",
             "t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,
             "m":true,"M":true}}

        Futures ``aggTrade`` sample (USDⓈ-M docs)::

            {"e":"aggTrade","E":123456789,"s":"BTCUSDT","a":5933014,"p":"0.001","q":"100",
             "f":100,"l":105,"T":123456785,"m":true}

        Futures raw ``trade`` sample (USDⓈ-M docs, "Trade Streams")::

            {"e":"trade","E":123456789,"T":123456785,"s":"BTCUSDT","t":12345,
             "p":"0.001","q":"100","X":"MARKET","m":true}
        """
        if len(frame) > self.max_frame_bytes:
            raise BadInput("frame_too_large", f"{len(frame)} > {self.max_frame_bytes} bytes")
        try:  # a trade frame of the form Binance sends: typed decoding (see _SpotFrame)
            row = self._struct_row(self._decoder.decode(frame).data)
        except _DECODE_ERRORS:
            return self._parse_json(frame, recv_ts_ns)
        result = self._trade(row, recv_ts_ns) if row[0] == self.event else None
        return result if result is not None else self._parse_json(frame, recv_ts_ns)

    def _parse_json(self, frame: str | bytes, recv_ts_ns: int) -> ParseResult:
        """``parse`` for any frame: decoded into dicts, each odd case named."""
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError as e:
            raise BadInput("invalid_json", str(e)[:200]) from None
        if type(msg) is not dict:
            raise BadInput("unknown_frame", f"top level is {type(msg).__name__}")
        data = msg.get("data", msg)
        if type(data) is not dict:
            raise BadInput("bad_type", f"data is {type(data).__name__}, expected object")
        event = data.get("e")
        if event == self.event:
            id_key = self.id_key
        elif event == "trade" and self.raw_trades and data.get("X") == "MARKET":
            id_key = "t"
        else:
            return self._parse_other(msg, data)
        try:
            row = (event, data["s"], data[id_key], data["T"], data["p"], data["q"], data["m"])
        except KeyError:
            return self._parse_strict(data, id_key, recv_ts_ns)
        result = self._trade(row, recv_ts_ns)
        # Anything odd takes the strict path, which names the reason.
        return result if result is not None else self._parse_strict(data, id_key, recv_ts_ns)

    def _trade(self, row: tuple[Any, ...], recv_ts_ns: int) -> ParseResult | None:
        """The fast path: a row of ``_fields`` with every field of the type Binance sends
        (prices as strings) and within bounds gives its one-trade result; None sends the
        frame to a slower path, which names what is wrong."""
        _, native, tid, ts, p, q, maker = row
        try:
            price = float(p) if type(p) is str else -1.0
            qty = float(q) if type(q) is str else -1.0
        except ValueError:
            return None
        if not (
            type(tid) is int
            and type(ts) is int
            and type(maker) is bool
            and type(native) is str
            and 0.0 < price < MAX_PRICE
            and 0.0 < qty < MAX_QTY
            and _MIN_TS_MS <= ts < _MAX_TS_MS
        ):
            return None
        symbol = self._symbols.get(native)
        if symbol is None:
            symbol = self.normalized(native)
        tick = _new(Tick, (self.name, symbol, native, str(tid), price, qty,
                           "sell" if maker else "buy", ts * 1_000_000, recv_ts_ns))  # fmt: skip
        return _new(ParseResult, (_TRADE, [tick], False, "", ""))

    def parse_many(self, frames: Sequence[str | bytes], recv_ts_ns: int) -> ParsedBatch:
        """Many frames at once: trades in columns when every frame is a plain trade frame,
        validated over whole arrays; else ``parse`` per frame (``ingest.venues.batch``)."""
        columns = self._columns(frames, recv_ts_ns) if frames else None
        if columns is None:
            return parse_each(self.parse, frames, recv_ts_ns)
        return ParsedBatch(columns)

    def _struct_rows(self, frames: Sequence[str | bytes]) -> list[tuple[Any, ...]] | None:
        """Each frame's trade fields (``_fields`` order), every frame decoded typed
        (``_SpotFrame``/``_AggFrame``: the types are the ones Binance sends); None when one
        is not of that form."""
        try:
            return list(map(self._struct_row, map(_DATA, map(self._decoder.decode, frames))))
        except _DECODE_ERRORS:
            return None

    def _dict_rows(self, frames: Sequence[str | bytes]) -> list[tuple[Any, ...]] | None:
        """Each frame's trade fields from orjson dicts (futures raw ``@trade`` frames, with
        their execution type, which must be ``MARKET``), each of the JSON type Binance sends;
        None when a frame is anything else."""
        try:
            msgs = list(map(orjson.loads, frames))
            # AttributeError: a top level that is not an object; TypeError/KeyError: a data
            # that is not an object or lacks a field.
            datas = [m.get("data", m) for m in msgs]
            fields = self._fields
            if self.raw_trades and datas[0].get("e") == "trade":  # futures raw @trade
                fields = _RAW_FIELDS
            rows = list(map(fields, datas))
            _, natives, ids, times, prices, qtys, makers, *kind = zip(*rows, strict=True)
        except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError, ValueError):
            return None
        if (
            (kind and kind[0].count("MARKET") != len(frames))
            or set(map(type, natives + prices + qtys)) != _STR
            or set(map(type, ids + times)) != _INT
            or set(map(type, makers)) != _BOOL
        ):
            return None
        return rows

    def _columns(self, frames: Sequence[str | bytes], recv_ts_ns: int) -> TradeColumns | None:
        """The fast path of ``parse``, a batch at a time; None when any frame needs more.

        Each check is at least as strict as ``parse``'s fast path (same JSON types, same
        bounds), so what passes here is exactly what ``parse`` would return; everything else
        (control frames, numbers sent as JSON numbers, any bad input) goes back to ``parse``.
        """
        if max(map(len, frames)) > self.max_frame_bytes:
            return None
        rows = self._struct_rows(frames)
        if rows is None:
            rows = self._dict_rows(frames)
            if rows is None:
                return None
        events, natives, ids, times, prices, qtys, makers, *_ = zip(*rows, strict=True)
        event = "trade" if len(rows[0]) > 7 else self.event  # futures raw @trade: "trade"
        if events.count(event) != len(frames):
            return None
        try:
            price = np.array(list(map(float, prices)))
            qty = np.array(list(map(float, qtys)))
            ts_ms = np.array(times, dtype=np.int64)
            seq = np.array(ids, dtype=np.int64)
            cached = list(map(self._symbols.get, natives))  # most symbols are in the cache
            symbols: list[str] = (
                [s if s is not None else self.normalized(n)
                 for s, n in zip(cached, natives, strict=True)]
                if None in cached
                else cached  # type: ignore[assignment]  # no None in it
            )  # fmt: skip
        except (ValueError, OverflowError, BadInput):
            return None
        if not (
            in_bounds(price, MAX_PRICE)
            and in_bounds(qty, MAX_QTY)
            and bool(((ts_ms >= _MIN_TS_MS) & (ts_ms < _MAX_TS_MS)).all())
        ):
            return None
        return TradeColumns(
            self.name,
            symbols,
            list(natives),
            list(map(str, ids)),
            seq,
            price,
            qty,
            ts_ms * 1_000_000,
            ~np.array(makers, dtype=np.bool_),  # m: the buyer was the maker -> taker sold
            recv_ts_ns,
        )

    def _parse_strict(self, data: dict[str, Any], id_key: str, recv_ts_ns: int) -> ParseResult:
        return trade_result([self.read_trade(data, _STRICT[id_key], recv_ts_ns)])

    def _parse_other(self, msg: dict[str, Any], data: dict[str, Any]) -> ParseResult:
        if "result" in msg and "id" in msg:
            return ACK
        err = msg.get("error")
        if isinstance(err, dict) or ("code" in msg and "msg" in msg):
            detail = err if isinstance(err, dict) else msg
            return error_result(detail)
        event = data.get("e")
        if event == "serverShutdown":
            return _SHUTDOWN
        if type(event) is str and event in _TRADE_EVENTS:
            return self._other_trade_event(event, data)
        stream = msg.get("stream")
        if type(stream) is str and stream.endswith(_TRADE_STREAMS):
            raise BadInput("unknown_frame", f"{stream[:60]} payload with event {event!r:.40}")
        # depth, bookTicker, other events, the REST depth snapshot in the recordings.
        return IGNORED

    def _other_trade_event(self, event: str, data: dict[str, Any]) -> ParseResult:
        """A trade event the fast path did not take: a futures raw trade that is not a
        market trade (ignored, see the module docstring), else bad input, never ignored."""
        if event == "trade" and self.raw_trades:
            kind = data.get("X")
            if type(kind) is str and kind in _NOT_MARKET:
                return IGNORED
            if "X" not in data:
                raise BadInput("missing_field", "X (execution type) of a futures trade")
            raise BadInput("bad_type", f"X={kind!r:.40}, expected MARKET")
        raise BadInput("unknown_frame", f"{event} event on {self.name}: not parsed here")

    # ---- REST trade history ------------------------------------------------------------
    #: Where a REST history row keeps each field (its symbol is the request's).
    history_fields: ClassVar[f.TradeFields]

    def history_params(self, query: HistoryQuery) -> dict[str, str]:
        if query.from_id is None:
            raise ValueError("Binance history pages by id: from_id is needed")
        limit = min(max(1, query.limit), self.history_max_limit)
        return {"symbol": query.native, "fromId": str(query.from_id), "limit": str(limit)}

    def parse_history(self, body: bytes, native: str, recv_ts_ns: int) -> HistoryPage:
        """A history page. Spot ``historicalTrades`` sample (Binance docs)::

            [{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",
              "time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}]

        Futures ``aggTrades``: ``[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,
        "l":27781,"T":1498793709153,"m":true}]``. An error is an object
        (``{"code":-1121,"msg":"Invalid symbol."}``): ``BadInput("unknown_frame")``."""
        rows = f.load_json(body, 64 * self.max_frame_bytes)
        if not isinstance(rows, list):
            raise BadInput("unknown_frame", f"history reply {str(rows)[:200]}")
        ticks = [self.read_trade(row, self.history_fields, recv_ts_ns, native) for row in rows]
        ticks.sort(key=lambda t: int(t.trade_id))
        return HistoryPage(ticks)


class BinanceSpot(ConcatSpot, Binance):
    name = "binance"
    default_url = "wss://stream.binance.com:9443/stream"
    max_streams_per_connection = 1024
    subscribe_rate_per_s = 5.0
    heartbeat = Heartbeat(ping_message=None, ping_interval_s=20.0, idle_timeout_s=None)
    event = "trade"
    id_key = "t"
    stream_suffix = "@trade"
    _fields = itemgetter("e", "s", "t", "T", "p", "q", "m")
    _struct_row = attrgetter("e", "s", "t", "T", "p", "q", "m")
    _decoder = msgspec.json.Decoder(_SpotFrame)
    default_rest_url = "https://api.binance.com"
    history_path = "/api/v3/historicalTrades"
    history_fields = f.TradeFields("", "id", "price", "qty", "isBuyerMaker", "time", None, f.int_id)


class BinanceFutures(Binance):
    name = "binance-futures"
    default_url = "wss://fstream.binance.com/stream"
    max_streams_per_connection = 1024
    subscribe_rate_per_s = 10.0
    heartbeat = Heartbeat(ping_message=None, ping_interval_s=60.0, idle_timeout_s=None)
    event = "aggTrade"
    id_key = "a"
    stream_suffix = "@aggTrade"
    _fields = itemgetter("e", "s", "a", "T", "p", "q", "m")
    _struct_row = attrgetter("e", "s", "a", "T", "p", "q", "m")
    _decoder = msgspec.json.Decoder(_AggFrame)
    raw_trades = True
    default_rest_url = "https://fapi.binance.com"
    history_path = "/fapi/v1/aggTrades"
    history_fields = f.TradeFields("", "a", "p", "q", "m", "T", None, f.int_id)

    def normalize(self, native: str) -> str:
        pair, _, expiry = native.partition("_")
        base, quote = split_concatenated(pair, CONCAT_QUOTES)
        return f"{base}-{quote}-{expiry.upper() if expiry else 'PERP'}"

    def to_native(self, symbol: str) -> str:
        base, quote, kind = derivative_parts(symbol)
        return base + quote if kind == "PERP" else f"{base}{quote}_{kind}"
