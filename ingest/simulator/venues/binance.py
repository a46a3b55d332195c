"""Binance's side of the spot and USDⓈ-M futures market streams and REST trade history.

Streams named in the URL (``/stream?streams=btcusdt@trade/...`` or ``/ws/btcusdt@trade``) are
subscribed on connect; ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS`` are answered as
Binance does (``{"result":null,"id":N}``, an ``error`` object for anything else); trades go
out one event per frame, wrapped as ``{"stream","data"}`` on ``/stream``. The client
protocol is ``ingest.venues.binance``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from common.contracts import Tick
from ingest.simulator.venues.base import ServerReply, ServerSession, VenueServer
from ingest.simulator.venues.wire import client_request, fmt_decimal, history_request, json_text
from ingest.venues.base import HistoryQuery
from ingest.venues.binance import Binance


class BinanceServer(VenueServer):
    adapter: Binance

    def session(self) -> ServerSession:
        return _BinanceSession(self.adapter)

    def history_query(self, params: Mapping[str, str]) -> HistoryQuery:
        native, from_id, limit = history_request(params, ("symbol", "fromId", "limit"), 500)
        return HistoryQuery(native, from_id, None, min(limit, self.adapter.history_max_limit))

    def render_history(self, ticks: Sequence[Tick], query: HistoryQuery) -> bytes:
        fields = self.adapter.history_fields
        kid, kp, kq, kt, km = fields.trade_id, fields.price, fields.qty, fields.time, fields.side
        rows: list[dict[str, Any]] = []
        for t in ticks:
            tid = int(t.trade_id)
            row: dict[str, Any] = {kid: tid, kp: fmt_decimal(t.price, 8),
                                   kq: fmt_decimal(t.qty, 8)}  # fmt: skip
            if kid == "a":
                row |= {"f": tid, "l": tid}
            row |= {kt: t.ts // 1_000_000, km: t.side == "sell"}
            if kid == "id":
                row["isBestMatch"] = True
            rows.append(row)
        return orjson.dumps(rows)


class _BinanceSession(ServerSession):
    """Binance's side of one connection: URL streams, SUBSCRIBE acks, trade events."""

    def __init__(self, adapter: Binance) -> None:
        super().__init__()
        self.adapter = adapter
        self.combined = True

    def _native_of(self, stream: str) -> str | None:
        name, _, kind = stream.partition("@")
        return name.upper() if "@" + kind == self.adapter.stream_suffix and name else None

    def on_connect(self, path: str) -> ServerReply:
        parts = urlsplit(path)
        self.combined = not parts.path.startswith("/ws")
        streams: list[str] = []
        for value in parse_qs(parts.query).get("streams", []):
            streams += value.split("/")
        if parts.path.startswith("/ws/"):
            streams += parts.path[4:].split("/")
        natives = [n for n in map(self._native_of, streams) if n]
        self.subscribed.update(natives)
        return ServerReply(subscribed=natives)

    def handle(self, message: str | bytes) -> ServerReply:
        req = client_request(message)
        if req is None or req.get("method") not in (
            "SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS",
        ):  # fmt: skip
            err = {"code": 2, "msg": "Invalid request: unknown method or malformed JSON"}
            rid = req.get("id") if req is not None else None
            return ServerReply([json_text({"error": err, "id": rid})])
        rid = req.get("id")
        params = req.get("params") or []
        natives = [n for n in map(self._native_of, params) if isinstance(n, str) and n]
        result: Any = None
        if req["method"] == "LIST_SUBSCRIPTIONS":
            reply = ServerReply()
            suffix = self.adapter.stream_suffix
            result = sorted(n.lower() + suffix for n in self.subscribed)
        else:
            reply = self.subscription_change(req["method"].lower(), natives)
        reply.frames.append(json_text({"result": result, "id": rid}))
        return reply

    def render_trades(self, ticks: Sequence[Tick], *, snapshot: bool = False) -> list[str]:
        del snapshot  # Binance sends no trade snapshot
        a = self.adapter
        frames = []
        for t in ticks:
            ms = t.ts // 1_000_000
            payload: dict[str, Any] = {"e": a.event, "E": ms, "s": t.native_symbol}
            payload[a.id_key] = int(t.trade_id)
            payload |= {"p": fmt_decimal(t.price, 8), "q": fmt_decimal(t.qty, 8)}
            if a.event == "aggTrade":
                payload |= {"f": int(t.trade_id), "l": int(t.trade_id)}
            payload |= {"T": ms, "m": t.side == "sell"}
            if a.event == "trade":
                payload["M"] = True
            if self.combined:
                payload = {"stream": t.native_symbol.lower() + a.stream_suffix, "data": payload}
            frames.append(json_text(payload))
        return frames
