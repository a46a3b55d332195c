"""Bybit's side of the v5 public ``publicTrade`` streams (spot and linear).

Subscribe requests are acked (``success``/``ret_msg``, at most ``max_symbols_per_message``
args), pings answered with each market's own pong (spot: an ack with ``ret_msg:"pong"``,
linear: ``op:"pong"``), trades pushed per symbol as ``{"topic","type":"snapshot","data"}``.
The client protocol is ``ingest.venues.bybit``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import groupby
from typing import Final

from common.contracts import Tick
from ingest.simulator.venues.base import ServerReply, ServerSession, VenueServer
from ingest.simulator.venues.wire import client_request, fmt_decimal, json_text
from ingest.venues.bybit import TOPIC, Bybit, BybitSpot

_SIDES: Final = {"buy": "Buy", "sell": "Sell"}


class BybitServer(VenueServer):
    adapter: Bybit

    def session(self) -> ServerSession:
        return _BybitSession(self.adapter)


class _BybitSession(ServerSession):
    """Bybit's side of one connection: subscribe acks, the market's own pong, pushes."""

    def __init__(self, adapter: Bybit) -> None:
        super().__init__()
        self.adapter = adapter
        self.conn_id = "sim-" + adapter.name

    def handle(self, message: str | bytes) -> ServerReply:
        req = client_request(message)
        if req is None:
            return ServerReply([self._reply("", False, "error:invalid json", "")])
        op, rid = req.get("op"), str(req.get("req_id", ""))
        if op == "ping":
            if isinstance(self.adapter, BybitSpot):
                return ServerReply([self._reply("ping", True, "pong", rid)])
            pong = {"req_id": rid, "op": "pong", "args": [str(_ms())], "conn_id": self.conn_id}
            return ServerReply([json_text(pong)])
        args = req.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            return ServerReply([self._reply(str(op), False, "error:handler not found", rid)])
        if len(args) > self.adapter.max_symbols_per_message:
            msg = f"args size >{self.adapter.max_symbols_per_message}"
            return ServerReply([self._reply(op, False, msg, rid)])
        natives = [a[len(TOPIC) :] for a in args if isinstance(a, str) and a.startswith(TOPIC)]
        reply = self.subscription_change(op, natives)
        reply.frames.append(self._reply(op, True, "", rid))
        return reply

    def _reply(self, op: str, success: bool, ret_msg: str, rid: str) -> str:
        body = {"success": success, "ret_msg": ret_msg, "conn_id": self.conn_id,
                "req_id": rid, "op": op}  # fmt: skip
        return json_text(body)

    def render_trades(self, ticks: Sequence[Tick], *, snapshot: bool = False) -> list[str]:
        del snapshot  # Bybit sends no initial trade snapshot
        frames = []
        for native, run in groupby(ticks, key=lambda t: t.native_symbol):
            group = list(run)
            data = [
                {
                    "T": t.ts // 1_000_000,
                    "s": t.native_symbol,
                    "S": _SIDES[t.side],
                    "v": fmt_decimal(t.qty),
                    "p": fmt_decimal(t.price),
                    "L": "ZeroPlusTick",
                    "i": t.trade_id,
                    "BT": False,
                }
                for t in group
            ]
            ts = max(t.ts for t in group) // 1_000_000
            msg = {"topic": TOPIC + native, "type": "snapshot", "ts": ts, "data": data}
            frames.append(json_text(msg))
        return frames


def _ms() -> int:
    return time.time_ns() // 1_000_000
