"""Bybit v5 public WebSocket, ``publicTrade`` topic: spot and linear (USDT/USDC contracts).

Docs: bybit-exchange.github.io/docs/v5/ws/connect and v5/websocket/public/trade. What this
module relies on:

* Endpoints ``wss://stream.bybit.com/v5/public/spot`` and ``.../v5/public/linear`` — two
  adapters (``bybit``, ``bybit-linear``) because the URL, the limits and the pong differ.
* Subscribe ``{"op":"subscribe","args":["publicTrade.BTCUSDT",...],"req_id":"1"}``; spot
  takes at most 10 args per request. Ack ``{"success":true,"ret_msg":"","conn_id":...,
  "op":"subscribe"}``; failure has ``success:false`` and the reason in ``ret_msg``.
* Heartbeat: the client sends ``{"op":"ping"}`` every 20 s. Spot answers
  ``{"success":true,"ret_msg":"pong","op":"ping",...}``, linear
  ``{"op":"pong","args":["<ms>"],...}``; both parse as ``pong``.
* Trade fields: ``T`` trade time (ms), ``s`` symbol, ``S`` the **taker** side
  (``Buy``/``Sell``), ``v`` size and ``p`` price (strings), ``i`` trade id (a number string
  on spot, a UUID on linear: ids only identify, no gap detection), ``BT`` block trade.
  Every ``publicTrade`` message says ``"type":"snapshot"`` — that is Bybit's name for a
  full push, not an initial snapshot, so ``snapshot`` stays False.

Symbols: spot ``BTCUSDT`` → ``BTC-USDT``; linear ``BTCUSDT`` → ``BTC-USDT-PERP``,
``BTCPERP`` (USDC perpetual) → ``BTC-USDC-PERP``, ``BTC-27DEC24`` (USDC futures) →
``BTC-USDC-27DEC24``, ``BTCUSDT-27DEC24`` → ``BTC-USDT-27DEC24``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import orjson

from common.errors import BadInput
from ingest.venues import fields as f
from ingest.venues.base import (
    ACK,
    IGNORED,
    PONG,
    ExchangeAdapter,
    Heartbeat,
    ParseResult,
    chunks,
    error_result,
    trade_result,
)
from ingest.venues.symbols import CONCAT_QUOTES, ConcatSpot, derivative_parts, split_concatenated

#: Topic prefix of the trade channel (``publicTrade.BTCUSDT``).
TOPIC: Final = "publicTrade."
_FIELDS: Final = f.TradeFields("s", "i", "p", "v", "S", "T", {"Buy": "buy", "Sell": "sell"})


class Bybit(ExchangeAdapter):
    max_streams_per_connection = 500  # Bybit caps args at 21,000 characters per connection
    subscribe_rate_per_s = 10.0
    trade_ids_sequential = False
    heartbeat = Heartbeat(ping_message='{"op":"ping"}', ping_interval_s=20.0, idle_timeout_s=45.0)

    def subscribe_messages(self, native_symbols: Sequence[str]) -> list[str]:
        topics = [TOPIC + s.upper() for s in native_symbols]
        return [
            orjson.dumps({"op": "subscribe", "args": part, "req_id": str(i)}).decode()
            for i, part in enumerate(chunks(topics, self.max_symbols_per_message), 1)
        ]

    def parse(self, frame: str | bytes, recv_ts_ns: int) -> ParseResult:
        """Parse one frame. Sample (Bybit v5 docs, ``publicTrade``)::

            {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,
             "data":[{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50",
             "L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}

        Ack and pongs::

            {"success":true,"ret_msg":"","conn_id":"d5phu6rboasumi7uds7g-223s",
             "req_id":"100001","op":"subscribe"}
            {"success":true,"ret_msg":"pong","conn_id":"0970e817-426e-429a-a679-ff7f55e0b16a",
             "op":"ping"}
            {"req_id":"100001","op":"pong","args":["1661762767658"],
             "conn_id":"ce3dpomvha7dha97tvp0-2xh"}
        """
        msg = f.load_object(frame, self.max_frame_bytes)
        topic = msg.get("topic")
        if isinstance(topic, str):
            if not topic.startswith(TOPIC):
                return IGNORED  # orderbook, tickers, kline, ...
            data = f.get_list(msg, "data")
            ticks = [self.read_trade(tr, _FIELDS, recv_ts_ns) for tr in data]
            return trade_result(ticks)
        op = msg.get("op")
        if op == "pong" or (op == "ping" and msg.get("ret_msg") == "pong"):
            return PONG
        if op in ("subscribe", "unsubscribe"):
            if msg.get("success") is True:
                return ACK
            return error_result(msg.get("ret_msg", ""))
        if msg.get("success") is False:
            return error_result(msg.get("ret_msg", ""))
        return IGNORED


class BybitSpot(ConcatSpot, Bybit):
    name = "bybit"
    default_url = "wss://stream.bybit.com/v5/public/spot"
    max_symbols_per_message = 10


class BybitLinear(Bybit):
    name = "bybit-linear"
    default_url = "wss://stream.bybit.com/v5/public/linear"
    max_symbols_per_message = 100

    def normalize(self, native: str) -> str:
        up = native.upper()
        pair, _, expiry = up.partition("-")
        if pair.endswith("PERP") and len(pair) > 4 and not expiry:
            return f"{pair[:-4]}-USDC-PERP"
        try:
            base, quote = split_concatenated(pair, CONCAT_QUOTES)
        except BadInput:
            if not expiry:
                raise
            base, quote = pair, "USDC"  # BTC-27DEC24: USDC-settled futures
        return f"{base}-{quote}-{expiry or 'PERP'}"

    def to_native(self, symbol: str) -> str:
        base, quote, kind = derivative_parts(symbol)
        if kind == "PERP":
            return f"{base}PERP" if quote == "USDC" else base + quote
        return f"{base}-{kind}" if quote == "USDC" else f"{base}{quote}-{kind}"
