"""Coinbase's side of the Advanced Trade ``market_trades`` and ``heartbeats`` channels.

Every message carries the connection's ``sequence_num``; a subscribe is answered with the
``subscriptions`` message, trades go out newest first (a ``snapshot`` event for the overlap a
new subscription gets, then ``update``), with the maker's side as Coinbase sends it, and one
heartbeat a second once ``heartbeats`` is subscribed. The client protocol is
``ingest.venues.coinbase``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from common.contracts import Tick
from ingest.simulator.venues.base import ServerReply, ServerSession, VenueServer
from ingest.simulator.venues.wire import client_request, fmt_decimal, json_text, ns_to_iso8601
from ingest.venues.base import chunks

#: Taker side → the maker side Coinbase prints.
_MAKER: Final = {"buy": "SELL", "sell": "BUY"}
_MAX_TRADES_PER_FRAME: Final = 100


class CoinbaseServer(VenueServer):
    def session(self) -> ServerSession:
        return _CoinbaseSession()


class _CoinbaseSession(ServerSession):
    """Coinbase's side of one connection: a per-connection ``sequence_num`` on every message."""

    def __init__(self) -> None:
        super().__init__()
        self.sequence = 0
        self.heartbeats = False
        self.counter = 0

    def _envelope(self, channel: str, events: list[dict[str, Any]]) -> str:
        msg = {
            "channel": channel,
            "client_id": "",
            "timestamp": ns_to_iso8601(time.time_ns()),
            "sequence_num": self.sequence,
            "events": events,
        }
        self.sequence += 1
        return json_text(msg)

    def handle(self, message: str | bytes) -> ServerReply:
        req = client_request(message)
        if req is None or req.get("type") not in ("subscribe", "unsubscribe"):
            err = {"type": "error", "message": "failure to subscribe"}
            return ServerReply([json_text(err)])
        channel = req.get("channel")
        products = [p for p in req.get("product_ids") or [] if isinstance(p, str)]
        reply = ServerReply()
        if channel == "heartbeats":
            self.heartbeats = req["type"] == "subscribe"
        elif channel == "market_trades":
            reply = self.subscription_change(req["type"], products)
        else:
            err = {"type": "error", "message": f"unsupported channel {channel!r}"}
            return ServerReply([json_text(err)])
        subs: dict[str, list[str]] = {"market_trades": sorted(self.subscribed)}
        if self.heartbeats:
            subs["heartbeats"] = ["heartbeats"]
        reply.frames.append(self._envelope("subscriptions", [{"subscriptions": subs}]))
        return reply

    def render_trades(self, ticks: Sequence[Tick], *, snapshot: bool = False) -> list[str]:
        frames = []
        for part in chunks(list(range(len(ticks))), _MAX_TRADES_PER_FRAME):
            trades = [
                {
                    "trade_id": ticks[i].trade_id,
                    "product_id": ticks[i].native_symbol,
                    "price": fmt_decimal(ticks[i].price),
                    "size": fmt_decimal(ticks[i].qty),
                    "side": _MAKER[ticks[i].side],
                    "time": ns_to_iso8601(ticks[i].ts),
                }
                for i in reversed(part)  # newest first, as Coinbase sends them
            ]
            event = {"type": "snapshot" if snapshot else "update", "trades": trades}
            frames.append(self._envelope("market_trades", [event]))
        return frames

    def heartbeat(self) -> list[str]:
        if not self.heartbeats:
            return []
        self.counter += 1
        now = time.time_ns()
        stamp = ns_to_iso8601(now).replace("T", " ").removesuffix("Z")
        event = {"current_time": f"{stamp} +0000 UTC", "heartbeat_counter": str(self.counter)}
        return [self._envelope("heartbeats", [event])]
