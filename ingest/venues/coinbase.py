"""Coinbase Advanced Trade WebSocket: ``market_trades`` with ``heartbeats``.

Docs: docs.cdp.coinbase.com, "Advanced Trade WebSocket Overview" and "Channels". What this
module relies on:

* Endpoint ``wss://advanced-trade-ws.coinbase.com``; a subscribe message per channel,
  ``{"type":"subscribe","product_ids":[...],"channel":"market_trades"}``, must arrive within
  5 s of connecting. Every server message is ``{"channel", "client_id", "timestamp",
  "sequence_num", "events": [...]}``; errors are ``{"type":"error","message":...}``.
* ``market_trades`` batches the trades of the last 250 ms; its first message after
  subscribing is a ``snapshot`` event with recent trades (returned with ``snapshot=True``,
  to be de-duplicated by trade id), then ``update`` events. Trades arrive newest first; the
  parser returns them oldest first.
* Channels without traffic close after 60–90 s unless ``heartbeats`` is subscribed: it
  sends one message per second, so a 10 s silence means the connection is dead.
* **Side:** ``side`` in public market trades is the **maker's** side, so the taker side is
  the opposite (``BUY`` → taker sold). Sources: NautilusTrader's Coinbase adapter
  (``coinbase_side_to_aggressor``: "Coinbase reports the maker side on public market trades,
  so the aggressor is the opposite side") and c9s/bbgo PR #2509 "correct market trade side
  to taker side"; Coinbase Exchange's ``match`` channel documents the same maker-side
  convention. (cryptofeed passes the field through unchanged; we do not follow it.)

Symbols are already ``BASE-QUOTE`` (``BTC-USD``) and are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from common.contracts import Side, Tick
from common.errors import BadInput
from ingest.venues import fields as f
from ingest.venues.base import (
    ACK,
    HEARTBEAT,
    IGNORED,
    ExchangeAdapter,
    Heartbeat,
    ParseResult,
    chunks,
    error_result,
    trade_result,
)

#: Maker side as sent → taker side.
_TAKER: Final[dict[str, Side]] = {"BUY": "sell", "SELL": "buy"}
_FIELDS: Final = f.TradeFields(
    "product_id", "trade_id", "price", "size", "side", "time", _TAKER, f.str_id, f.iso8601_to_ns
)


class Coinbase(ExchangeAdapter):
    name = "coinbase"
    default_url = "wss://advanced-trade-ws.coinbase.com"
    # Coinbase documents no per-connection product cap; 100 keeps one subscribe message
    # small and a reconnect cheap. Unauthenticated clients may send 8 messages/s per IP.
    max_streams_per_connection = 100
    max_symbols_per_message = 100
    subscribe_rate_per_s = 8.0
    trade_ids_sequential = False
    heartbeat = Heartbeat(
        ping_message=None, ping_interval_s=0.0, idle_timeout_s=10.0, server_heartbeat_s=1.0
    )

    def normalize(self, native: str) -> str:
        return native.upper()

    def to_native(self, symbol: str) -> str:
        return symbol.upper()

    def subscribe_messages(self, native_symbols: Sequence[str]) -> list[str]:
        msgs = [
            orjson.dumps({"type": "subscribe", "product_ids": part, "channel": "market_trades"})
            for part in chunks(list(native_symbols), self.max_symbols_per_message)
        ]
        msgs.append(orjson.dumps({"type": "subscribe", "channel": "heartbeats"}))
        return [m.decode() for m in msgs]

    def parse(self, frame: str | bytes, recv_ts_ns: int) -> ParseResult:
        """Parse one frame. Sample (Advanced Trade docs, ``market_trades``)::

            {"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z",
             "sequence_num":0,"events":[{"type":"snapshot","trades":[{"trade_id":"000000000",
             "product_id":"ETH-USD","price":"1260.01","size":"0.3","side":"BUY",
             "time":"2019-08-14T20:42:27.265Z"}]}]}

        Heartbeat::

            {"channel":"heartbeats","client_id":"","timestamp":"2023-06-23T20:31:26.122969572Z",
             "sequence_num":0,"events":[{"current_time":"2023-06-23 20:31:56.121961769 +0000
             UTC m=+91717.525857105","heartbeat_counter":"3049"}]}
        """
        msg = f.load_object(frame, self.max_frame_bytes)
        channel = msg.get("channel")
        if channel == "market_trades":
            return self._trades(msg, recv_ts_ns)
        if channel == "heartbeats":
            return HEARTBEAT
        if channel == "subscriptions":
            return ACK
        if msg.get("type") == "error":
            return error_result(msg.get("message", ""))
        return IGNORED  # l2_data, ticker, status, ... ("clients are expected to ignore")

    def _trades(self, msg: dict[str, Any], recv_ts_ns: int) -> ParseResult:
        ticks: list[Tick] = []
        snapshot = False
        for event in f.get_list(msg, "events"):
            ev = f.as_dict(event, "event")
            kind = ev.get("type")
            if kind not in ("snapshot", "update"):
                raise BadInput("bad_type", f"market_trades event type {kind!r:.40}")
            snapshot = snapshot or kind == "snapshot"
            for raw in f.get_list(ev, "trades"):
                ticks.append(self.read_trade(raw, _FIELDS, recv_ts_ns))
        # Newest first on the wire; oldest first out (ties: by numeric trade id).
        ticks.sort(key=_order)
        return trade_result(ticks, snapshot)


def _order(t: Tick) -> tuple[int, int]:
    tid = t.trade_id
    return t.ts, int(tid) if tid.isascii() and tid.isdigit() else 0
