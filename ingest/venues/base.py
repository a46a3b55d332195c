"""The exchange adapter interface: pure client protocol code, no I/O.

One ``ExchangeAdapter`` per exchange *market* (its ``name`` is the ``Tick.exchange`` of the
ticks it produces). An adapter knows, for its exchange:

where to connect (``default_url``, overridable by settings), how to spread symbols over
connections (``connection_plan``) and subscribe to them (``subscribe_messages``, respecting
``max_streams_per_connection``, ``max_symbols_per_message`` and ``subscribe_rate_per_s``),
how to keep the connection alive (``heartbeat``), how to turn one raw frame into zero or more
ticks (``parse``) and, where the exchange has one, how to page its REST trade history
(``history_params``, ``parse_history``). The server side of the same protocols (what the
local simulator sends) is in ``ingest.simulator.venues``: an adapter does not need one.

Bybit spot and linear are two adapters (``bybit`` and ``bybit-linear``): they live on two
URLs with different limits and ping replies, and their ticks must not share a name because
a spot ``BTCUSDT`` and a linear ``BTCUSDT`` are different instruments (normalized
``BTC-USDT`` and ``BTC-USDT-PERP``). Binance spot and USDⓈ-M futures likewise
(``binance``, ``binance-futures``).

Parsing contract
----------------
``parse(frame, recv_ts_ns)`` returns a ``ParseResult``; it raises ``BadInput`` (from
``common.errors``) and nothing else on malformed input, with ``reason`` one of
``BAD_INPUT_REASONS``. A frame that is well-formed but not a trade (ack, pong, heartbeat,
error reply, another channel) is a ``control``/``ignored`` result with no ticks. Trades an
exchange sends as an initial snapshot on subscribe are returned with ``snapshot=True`` so the
connection manager de-duplicates them against live trades (``ingest.sequence.TradeDeduper``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from common import plausibility
from common.contracts import Side, Tick
from common.errors import BadInput
from ingest.venues.fields import TradeFields, as_dict, decimal_str, get, get_str, read_side

if TYPE_CHECKING:
    from ingest.venues.batch import ParsedBatch

#: Default upper bound of a raw frame; larger frames are ``BadInput("frame_too_large")``.
DEFAULT_MAX_FRAME_BYTES: Final = 1 << 20
_SYMBOL_CACHE_MAX: Final = 50_000
T = TypeVar("T")

#: Prices and sizes must be finite, > 0 and below ``MAX_PRICE``/``MAX_QTY`` (anything above
#: is a corrupted number, not a market); trade times must fall in [``MIN_TS_NS``,
#: ``MAX_TS_NS``) = [2010-01-01, 2100-01-01) UTC. Defined in ``common.plausibility``: the
#: detectors check decoded ticks against the same bounds.
MAX_PRICE: Final = plausibility.MAX_PRICE
MAX_QTY: Final = plausibility.MAX_QTY
MIN_TS_NS: Final = plausibility.MIN_TS_NS
MAX_TS_NS: Final = plausibility.MAX_TS_NS

BAD_INPUT_REASONS: Final = (
    "invalid_json",  # not JSON / not UTF-8
    "missing_field",  # a field a trade needs is absent
    "bad_type",  # a field has the wrong JSON type or an unparsable value
    "non_finite",  # NaN / inf price or size
    "non_positive",  # zero or negative price or size
    "absurd_value",  # price/size/time outside the documented bounds
    "frame_too_large",  # above the adapter's max_frame_bytes
    "unknown_frame",  # valid JSON of a shape the exchange does not send
    "unknown_symbol",  # a symbol that cannot be split into base and quote
)


class FrameKind(StrEnum):
    """What a frame was: a trade message, a protocol control frame, or data we do not use."""

    TRADE = "trade"
    CONTROL = "control"  # subscription ack, pong, heartbeat, error reply, info, shutdown
    IGNORED = "ignored"  # another channel (depth, bookTicker, ...) or a REST snapshot


class ParseResult(NamedTuple):
    """The outcome of parsing one frame (a ``NamedTuple``: cheap to build per frame).

    ``control`` names the control frame for the connection manager: ``"ack"``, ``"pong"``,
    ``"heartbeat"``, ``"error"`` (the exchange rejected something; ``detail`` has its
    message), ``"shutdown"`` (the server announces it will close the connection soon:
    open a replacement now), ``"info"``; empty for trades and ignored frames.
    ``ticks`` is in exchange order, oldest first; treat it as read-only.
    """

    kind: FrameKind
    ticks: Sequence[Tick] = ()
    snapshot: bool = False
    control: str = ""
    detail: str = ""


def trade_result(ticks: list[Tick], snapshot: bool = False) -> ParseResult:
    """A ``TRADE`` result, built without the keyword-argument overhead."""
    return _new(ParseResult, (FrameKind.TRADE, ticks, snapshot, "", ""))


def control_result(control: str, detail: str = "") -> ParseResult:
    return ParseResult(FrameKind.CONTROL, (), False, control, detail)


def error_result(detail: object) -> ParseResult:
    """The exchange rejected something: ``control == "error"``, its message (cut) as detail."""
    return control_result("error", str(detail)[:300])


_new: Final = tuple.__new__


IGNORED: Final = ParseResult(FrameKind.IGNORED)
PONG: Final = ParseResult(FrameKind.CONTROL, control="pong")
ACK: Final = ParseResult(FrameKind.CONTROL, control="ack")
HEARTBEAT: Final = ParseResult(FrameKind.CONTROL, control="heartbeat")


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """One page of an exchange's public REST trade history (``ingest.backfill``): trades of
    ``native`` from id ``from_id`` on (inclusive; Binance ``fromId``), or after time
    ``since_ns`` (Kraken ``since``), at most ``limit``. The simulator reads the same from a
    request (``ingest.simulator.venues``)."""

    native: str
    from_id: int | None = None
    since_ns: int | None = None
    limit: int = 1000


class HistoryPage(NamedTuple):
    """A parsed REST trade-history page: trades in id order, and where the next page starts
    when the exchange pages by time (Kraken's ``last``; None: from the last id + 1)."""

    ticks: list[Tick]
    next_since_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """How a connection is kept alive and judged silent.

    ``ping_message`` is an application-level ping the client sends every ``ping_interval_s``;
    its reply parses as ``control == "pong"``. ``None`` means the protocol has no text ping:
    keep the connection alive with WebSocket ping frames every ``ping_interval_s`` (Binance;
    the server pings too and ``ingest.wsclient`` answers) or, when that is 0, rely on the server's
    heartbeat frames alone (Coinbase ``heartbeats``; Kraken also sends ``heartbeat``).

    ``idle_timeout_s``: with no *frame* at all for that long the connection is dead. It is
    set only where some frame (pong or heartbeat) is guaranteed well within it even when the
    subscribed symbols do not trade, so a quiet symbol never looks like a dead connection.
    ``None`` (Binance): application frames are not guaranteed; use the WebSocket-level
    ping/pong timeout instead.
    """

    ping_message: str | None
    ping_interval_s: float
    idle_timeout_s: float | None
    server_heartbeat_s: float | None = None  # the server sends a heartbeat frame this often


class ExchangeAdapter(ABC):
    """Pure protocol knowledge of one exchange market. Instances are stateless and shared."""

    name: str
    default_url: str
    #: Streams (channel x symbol) one connection may carry, and per subscribe message.
    max_streams_per_connection: int
    max_symbols_per_message: int
    #: Subscribe/other client messages per second allowed on one connection.
    subscribe_rate_per_s: float
    #: Trade ids are consecutive integers per symbol (gap detection possible).
    trade_ids_sequential: bool = False
    #: ``parse_many`` returns trades in columns (one trade per frame): readers batch frames.
    columnar_batches: bool = False
    #: The exchange closes connections after this long (Binance: 24 h); None = no limit.
    max_connection_age_s: float | None = None
    heartbeat: Heartbeat
    #: Public REST trade history usable to backfill gaps (``ingest.backfill``): the base URL
    #: (overridable: ``INGEST_REST_URL_<EXCHANGE>``) and path; None = not offered by id or
    #: time for this exchange's stream ids (gaps are then counted, not recovered).
    default_rest_url: str | None = None
    history_path: str | None = None
    #: Pages are found by time (``HistoryQuery.since_ns``), not by trade id (Kraken).
    history_by_time: bool = False
    history_max_limit: int = 1000

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._symbols: dict[str, str] = {}

    # ---- symbols -------------------------------------------------------------------
    @abstractmethod
    def normalize(self, native: str) -> str:
        """Native symbol → ``BASE-QUOTE`` (``BASE-QUOTE-PERP``; other derivatives keep their
        expiry/suffix). Raises ``BadInput("bad_type")`` when it cannot be split."""

    @abstractmethod
    def to_native(self, symbol: str) -> str:
        """Normalized symbol → the exchange's spelling (inverse of ``normalize``)."""

    def normalized(self, native: str) -> str:
        """``normalize`` with a bounded cache: trade frames repeat the same few symbols."""
        symbol = self._symbols.get(native)
        if symbol is None:
            if not native or len(native) > 64:
                raise BadInput("unknown_symbol", f"symbol {native[:40]!r}")
            symbol = self.normalize(native)
            if len(self._symbols) < _SYMBOL_CACHE_MAX:
                self._symbols[native] = symbol
        return symbol

    # ---- client side ---------------------------------------------------------------
    def connection_plan(self, native_symbols: Sequence[str]) -> list[list[str]]:
        """Split symbols into groups, one per connection, within the stream limit."""
        per = max(1, self.max_streams_per_connection)
        syms = list(dict.fromkeys(native_symbols))
        return [syms[i : i + per] for i in range(0, len(syms), per)]

    @abstractmethod
    def subscribe_messages(self, native_symbols: Sequence[str]) -> list[str]:
        """Text frames subscribing one connection to the trades of these symbols, each within
        ``max_symbols_per_message``; send them at most ``subscribe_rate_per_s`` per second."""

    def connect_url(self, native_symbols: Sequence[str], base_url: str | None = None) -> str:
        """The URL to open for these symbols (``base_url`` overrides ``default_url``)."""
        del native_symbols
        return base_url or self.default_url

    @abstractmethod
    def parse(self, frame: str | bytes, recv_ts_ns: int) -> ParseResult:
        """One raw frame → ticks or a control result; ``BadInput`` on malformed input."""

    def parse_many(self, frames: Sequence[str | bytes], recv_ts_ns: int) -> ParsedBatch:
        """Many frames at once (``ingest.venues.batch``); this default parses each frame.
        Adapters with a columnar fast path (Binance) override it."""
        from ingest.venues.batch import parse_each  # noqa: PLC0415 - batch imports base

        return parse_each(self.parse, frames, recv_ts_ns)

    def trade_id_key(self, trade_id: str) -> int:
        """Integer order of a sequential trade id (only if ``trade_ids_sequential``)."""
        try:
            return int(trade_id)
        except ValueError as e:
            raise BadInput("bad_type", f"trade id {trade_id!r} is not an integer") from e

    # ---- REST trade history (backfill; only where ``history_path`` is set) ------------
    def history_params(self, query: HistoryQuery) -> dict[str, str]:
        """The query string of one history request."""
        raise NotImplementedError(f"{self.name} has no REST trade history")

    def parse_history(self, body: bytes, native: str, recv_ts_ns: int) -> HistoryPage:
        """One history response for ``native`` → its trades in id order (``BadInput`` on
        anything malformed or an error reply)."""
        raise NotImplementedError(f"{self.name} has no REST trade history")

    # ---- shared helpers for subclasses ----------------------------------------------
    def read_trade(
        self, obj: Any, fields: TradeFields, recv_ts_ns: int, native: str | None = None
    ) -> Tick:
        """One JSON trade object → a validated tick, each field where ``fields`` says
        (``native``: the symbol, for objects that do not carry it)."""
        tr = as_dict(obj, "trade")
        return self.make_tick(
            get_str(tr, fields.symbol) if native is None else native,
            fields.read_id(get(tr, fields.trade_id), fields.trade_id),
            decimal_str(get(tr, fields.price), fields.price),
            decimal_str(get(tr, fields.qty), fields.qty),
            read_side(get(tr, fields.side), fields.side, fields.sides),
            fields.read_time(get(tr, fields.time), fields.time),
            recv_ts_ns,
        )

    def make_tick(  # noqa: PLR0917 - mirrors the field order of Tick
        self,
        native: str,
        trade_id: str,
        price: float,
        qty: float,
        side: Side,
        ts: int,
        recv_ts: int,
    ) -> Tick:
        """A validated tick (price/size bounds; ``ts`` already range-checked)."""
        check_price_qty(price, qty)
        return Tick(self.name, self.normalized(native), native, trade_id, price, qty, side, ts,
                    recv_ts)  # fmt: skip


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in consecutive lists of at most ``size``."""
    return [list(items[i : i + size]) for i in range(0, len(items), max(1, size))]


def check_price_qty(price: float, qty: float) -> None:
    """Reject non-finite, non-positive or absurd prices/sizes (bounds documented above)."""
    if not (0.0 < price < MAX_PRICE and 0.0 < qty < MAX_QTY):
        if not (math.isfinite(price) and math.isfinite(qty)):
            raise BadInput("non_finite", f"price={price!r} qty={qty!r}")
        if price <= 0.0 or qty <= 0.0:
            raise BadInput("non_positive", f"price={price!r} qty={qty!r}")
        raise BadInput("absurd_value", f"price={price!r} qty={qty!r}")


def check_ts(ts_ns: int) -> None:
    """Reject trade times outside [2010, 2100)."""
    if not MIN_TS_NS <= ts_ns < MAX_TS_NS:
        raise BadInput("absurd_value", f"trade time {ts_ns} ns")
