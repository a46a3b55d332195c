"""Kraken's side of the Spot WebSocket v2 ``trade`` channel and the REST ``Trades`` history.

A ``status`` message on connect, one ack per subscribed symbol, ``pong`` to ``ping``,
``heartbeat`` about once a second while subscribed, trades per symbol (``snapshot`` for the
overlap a new subscription gets, then ``update``); the REST history pages by time (``since``
in ns, ``last`` the next cursor). The client protocol is ``ingest.venues.kraken``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any

from common.contracts import Tick
from ingest.simulator.venues.base import ServerReply, ServerSession, VenueServer
from ingest.simulator.venues.wire import (
    client_request,
    fmt_decimal,
    history_request,
    json_text,
    ns_to_iso8601,
)
from ingest.venues.base import HistoryQuery


class KrakenServer(VenueServer):
    def session(self) -> ServerSession:
        return _KrakenSession()

    def history_query(self, params: Mapping[str, str]) -> HistoryQuery:
        native, since, count = history_request(params, ("pair", "since", "count"), 1000)
        return HistoryQuery(native, None, since, min(count, self.adapter.history_max_limit))

    def render_history(self, ticks: Sequence[Tick], query: HistoryQuery) -> bytes:
        rows = []
        for t in ticks:
            sec, us = divmod(t.ts // 1000, 1_000_000)
            rows.append(
                f'["{fmt_decimal(t.price)}","{fmt_decimal(t.qty)}",{sec}.{us:06d},'
                f'"{t.side[0]}","m","",{int(t.trade_id)}]'
            )
        last = ticks[-1].ts if ticks else query.since_ns
        pair = json.dumps(query.native)
        return (f'{{"error":[],"result":{{{pair}:[{",".join(rows)}],"last":"{last}"}}}}').encode()


def _now() -> str:
    return ns_to_iso8601(time.time_ns(), 6)


class _KrakenSession(ServerSession):
    """Kraken's side of one connection: status on connect, one ack per symbol, pongs."""

    def on_connect(self, path: str) -> ServerReply:
        status = {
            "channel": "status",
            "type": "update",
            "data": [
                {
                    "version": "2.0.0",
                    "system": "online",
                    "api_version": "v2",
                    "connection_id": 12393906104898154338,
                }
            ],
        }
        return ServerReply([json_text(status)])

    def handle(self, message: str | bytes) -> ServerReply:
        req = client_request(message)
        if req is None:
            return ServerReply([_error(None, "Malformed request", None)])
        method, rid = req.get("method"), req.get("req_id")
        if method == "ping":
            pong = {"method": "pong", "time_in": _now(), "time_out": _now()}
            if rid is not None:
                pong["req_id"] = rid
            return ServerReply([json_text(pong)])
        params = req.get("params")
        if method not in ("subscribe", "unsubscribe") or not isinstance(params, dict):
            return ServerReply([_error(method, "Method not found", rid)])
        if params.get("channel") != "trade":
            return ServerReply([_error(method, "Channel not supported", rid)])
        symbols = [s for s in params.get("symbol") or [] if isinstance(s, str)]
        reply = self.subscription_change(method, symbols)
        for sym in symbols:
            result: dict[str, Any] = {"channel": "trade", "symbol": sym}
            if method == "subscribe":
                result["snapshot"] = bool(params.get("snapshot", True))
            ack: dict[str, Any] = {"method": method, "result": result, "success": True,
                                   "time_in": _now(), "time_out": _now()}  # fmt: skip
            if rid is not None:
                ack["req_id"] = rid
            reply.frames.append(json_text(ack))
        return reply

    def render_trades(self, ticks: Sequence[Tick], *, snapshot: bool = False) -> list[str]:
        frames = []
        for _, group in groupby(ticks, key=lambda t: t.native_symbol):
            data = [
                {
                    "symbol": t.native_symbol,
                    "side": t.side,
                    "price": t.price,
                    "qty": t.qty,
                    "ord_type": "market",
                    "trade_id": int(t.trade_id),
                    "timestamp": ns_to_iso8601(t.ts, 6),
                }
                for t in group
            ]
            msg = {"channel": "trade", "type": "snapshot" if snapshot else "update", "data": data}
            frames.append(json_text(msg))
        return frames

    def heartbeat(self) -> list[str]:
        return ['{"channel":"heartbeat"}'] if self.subscribed else []


def _error(method: Any, error: str, rid: Any) -> str:
    msg: dict[str, Any] = {"error": error, "success": False, "time_in": _now(),
                           "time_out": _now()}  # fmt: skip
    if method is not None:
        msg["method"] = method
    if rid is not None:
        msg["req_id"] = rid
    return json_text(msg)
