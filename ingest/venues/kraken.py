"""Kraken Spot WebSocket v2, ``trade`` channel.

Docs: docs.kraken.com, "Spot WebSocket v2" (trade, ping, heartbeat, status). What this
module relies on:

* Endpoint ``wss://ws.kraken.com/v2``. On connect the server sends a ``status`` message.
  Subscribe with ``{"method":"subscribe","params":{"channel":"trade","symbol":[...],
  "snapshot":true},"req_id":N}``; one acknowledgement per symbol
  (``{"method":"subscribe","result":{...},"success":true,...}``), or ``success:false`` with
  ``error``.
* With ``snapshot`` true the first ``trade`` message is ``type:"snapshot"`` with the last 50
  trades (returned with ``snapshot=True``, de-duplicated by trade id); then ``update``.
* Trade fields: ``side`` is the **taker** side (``buy``/``sell``); ``price``/``qty`` are JSON
  numbers; ``trade_id`` an integer sequence per book (gaps detectable); ``timestamp``
  RFC 3339 with microseconds.
* Keep-alive: the server sends ``{"channel":"heartbeat"}`` about once a second while
  subscribed; a client ``{"method":"ping"}`` is answered with ``{"method":"pong",...}``.
* Kraken documents no per-connection subscription cap; 100 symbols per message and 1000
  per connection are our own conservative bounds.

REST trade history (gap backfill, ``ingest.backfill``): ``GET /0/public/Trades?pair=&since=
&count=`` pages by *time*: ``since`` is a Unix time in ns, the reply's ``last`` the cursor of
the next page, rows ``[price, volume, time, "b"|"s", "m"|"l", misc, trade_id]`` with the same
``trade_id`` as the v2 stream. A backfill starts from the time of the last trade written
(``ingest.lastwritten``) and keeps the rows whose id falls in the gap. The pair is sent as the
v2 symbol (``BTC/USD``) with ``assetVersion=1`` (display names); a reply keyed by another
spelling is taken as long as it holds one pair. Times are read as exact decimals (a float
loses the microseconds the stream carries).

Symbols: ``BTC/USD`` → ``BTC-USD`` (v2 already says BTC, not XBT).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import orjson

from common.contracts import Side, Tick
from common.errors import BadInput
from ingest.venues import fields as f
from ingest.venues.base import (
    ACK,
    HEARTBEAT,
    IGNORED,
    PONG,
    ExchangeAdapter,
    Heartbeat,
    HistoryPage,
    HistoryQuery,
    ParseResult,
    check_ts,
    chunks,
    control_result,
    error_result,
    trade_result,
)

_STATUS: Final = control_result("info", "status")
_FIELDS: Final = f.TradeFields(
    "symbol", "trade_id", "price", "qty", "side", "timestamp", f.TAKER_SIDES, f.int_id,
    f.iso8601_to_ns,
)  # fmt: skip
_HISTORY_SIDES: Final[Mapping[str, Side]] = {"b": "buy", "s": "sell"}


class Kraken(ExchangeAdapter):
    name = "kraken"
    default_url = "wss://ws.kraken.com/v2"
    max_streams_per_connection = 1000
    max_symbols_per_message = 100
    subscribe_rate_per_s = 5.0
    trade_ids_sequential = True
    heartbeat = Heartbeat(
        ping_message='{"method":"ping"}',
        ping_interval_s=30.0,
        idle_timeout_s=10.0,
        server_heartbeat_s=1.0,
    )
    default_rest_url = "https://api.kraken.com"
    history_path = "/0/public/Trades"
    history_by_time = True

    def normalize(self, native: str) -> str:
        base, sep, quote = native.upper().partition("/")
        if not sep or not base or not quote or "/" in quote:
            raise BadInput("unknown_symbol", f"{native[:40]!r} is not BASE/QUOTE")
        return f"{base}-{quote}"

    def to_native(self, symbol: str) -> str:
        return symbol.upper().replace("-", "/", 1)

    def subscribe_messages(self, native_symbols: Sequence[str]) -> list[str]:
        return [
            orjson.dumps(
                {
                    "method": "subscribe",
                    "params": {"channel": "trade", "symbol": part, "snapshot": True},
                    "req_id": i,
                }
            ).decode()
            for i, part in enumerate(chunks(native_symbols, self.max_symbols_per_message), 1)
        ]

    def parse(self, frame: str | bytes, recv_ts_ns: int) -> ParseResult:
        """Parse one frame. Sample (Kraken v2 docs, ``trade`` update)::

            {"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell",
             "price":0.5117,"qty":40.0,"ord_type":"market","trade_id":4665906,
             "timestamp":"2023-09-25T07:49:37.708706Z"}]}

        Ack / pong / heartbeat::

            {"method":"subscribe","result":{"channel":"trade","snapshot":true,
             "symbol":"MATIC/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z",
             "time_out":"2023-09-25T09:04:31.742648Z"}
            {"method":"pong","req_id":101,"time_in":"2023-09-24T14:10:23.799685Z",
             "time_out":"2023-09-24T14:10:23.799703Z"}
            {"channel":"heartbeat"}
        """
        msg = f.load_object(frame, self.max_frame_bytes)
        channel = msg.get("channel")
        if channel == "trade":
            kind = msg.get("type")
            if kind not in ("snapshot", "update"):
                raise BadInput("bad_type", f"trade message type {kind!r:.40}")
            data = f.get_list(msg, "data")
            ticks = [self.read_trade(tr, _FIELDS, recv_ts_ns) for tr in data]
            ticks.sort(key=lambda t: int(t.trade_id))  # ids are integers (checked)
            return trade_result(ticks, kind == "snapshot")
        if channel == "heartbeat":
            return HEARTBEAT
        if channel == "status":
            return _STATUS
        method = msg.get("method")
        if method == "pong":
            return PONG
        if method in ("subscribe", "unsubscribe"):
            if msg.get("success") is True:
                return ACK
            return error_result(msg.get("error", ""))
        if "error" in msg:
            return error_result(msg["error"])
        return IGNORED  # book, ticker, ohlc, ...

    # ---- REST trade history ------------------------------------------------------------
    def history_params(self, query: HistoryQuery) -> dict[str, str]:
        if query.since_ns is None:
            raise ValueError("Kraken history pages by time: since_ns is needed")
        count = min(max(1, query.limit), self.history_max_limit)
        return {"pair": query.native, "since": str(query.since_ns), "count": str(count),
                "assetVersion": "1"}  # fmt: skip

    def parse_history(self, body: bytes, native: str, recv_ts_ns: int) -> HistoryPage:
        """A history page. Sample (Kraken docs, ``Trades``)::

        {"error":[],"result":{"XXBTZUSD":[["30243.40000","0.34507674",1688669597.8277369,
         "b","m","",61044952]],"last":"1688671969993150842"}}
        """
        if len(body) > 64 * self.max_frame_bytes:
            raise BadInput("frame_too_large", f"{len(body)} bytes")
        try:
            msg = json.loads(body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadInput("invalid_json", str(e)[:200]) from None
        if not isinstance(msg, dict):
            raise BadInput("unknown_frame", "history reply is not an object")
        if msg.get("error"):
            raise BadInput("unknown_frame", f"history error {str(msg['error'])[:200]}")
        result = f.get_dict(msg, "result")
        pairs = [v for k, v in result.items() if k != "last"]
        if len(pairs) != 1 or not isinstance(pairs[0], list):
            raise BadInput("unknown_frame", f"history result has {len(pairs)} pairs")
        ticks = [self._history_trade(row, native, recv_ts_ns) for row in pairs[0]]
        ticks.sort(key=lambda t: int(t.trade_id))
        last = result.get("last")
        cursor = int(last) if isinstance(last, str | int) and str(last).isdigit() else None
        return HistoryPage(ticks, cursor)

    def _history_trade(self, row: Any, native: str, recv_ts_ns: int) -> Tick:
        if not isinstance(row, list) or len(row) < 7:
            raise BadInput("bad_type", f"history row {str(row)[:80]}")
        price, qty, when, side, _, _, tid = row[:7]
        try:
            ts = int(Decimal(str(when)) * 1_000_000_000)
        except (InvalidOperation, ValueError):
            raise BadInput("bad_type", f"time {str(when)[:40]!r}") from None
        check_ts(ts)
        return self.make_tick(
            native,
            f.int_id(tid, "trade_id"),
            f.decimal_str(str(price), "price"),
            f.decimal_str(str(qty), "volume"),
            f.read_side(side, "side", _HISTORY_SIDES),
            ts,
            recv_ts_ns,
        )
