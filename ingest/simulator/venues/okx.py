"""OKX's side of the v5 public ``trades`` channel.

One ack per subscribe arg (``{"event":"subscribe","arg":...}``), an ``error`` event for a
request OKX would refuse, the text ``pong`` to the text ``ping``, trades pushed per symbol as
``{"arg","data"}``. The client protocol is ``ingest.venues.okx``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Final

from common.contracts import Tick
from ingest.simulator.venues.base import ServerReply, ServerSession, VenueServer
from ingest.simulator.venues.wire import client_request, fmt_decimal, json_text


class OkxServer(VenueServer):
    def session(self) -> ServerSession:
        return _OkxSession()


class _OkxSession(ServerSession):
    """OKX's side of one connection: one ack per arg, text pong, trade pushes."""

    conn_id: Final = "sim0okx1"

    def handle(self, message: str | bytes) -> ServerReply:
        if message in {"ping", b"ping"}:
            return ServerReply(["pong"])
        req = client_request(message)
        op = req.get("op") if req is not None else None
        args = req.get("args") if req is not None else None
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            err = {"event": "error", "code": "60012", "msg": f"Invalid request: {message!s:.200}",
                   "connId": self.conn_id}  # fmt: skip
            return ServerReply([json_text(err)])
        reply = ServerReply()
        for arg in args:
            if not isinstance(arg, dict) or not isinstance(arg.get("instId"), str):
                err = {"event": "error", "code": "60018", "msg": f"Wrong URL or channel:{arg}",
                       "connId": self.conn_id}  # fmt: skip
                reply.frames.append(json_text(err))
                continue
            ack = {"event": op, "arg": arg, "connId": self.conn_id}
            reply.frames.append(json_text(ack))
            if arg.get("channel") != "trades":
                continue
            if op == "subscribe":
                self.subscribed.add(arg["instId"])
                reply.subscribed.append(arg["instId"])
            else:
                self.subscribed.discard(arg["instId"])
                reply.unsubscribed.append(arg["instId"])
        return reply

    def render_trades(self, ticks: Sequence[Tick], *, snapshot: bool = False) -> list[str]:
        del snapshot  # OKX sends no initial trade snapshot
        frames = []
        for native, group in groupby(ticks, key=lambda t: t.native_symbol):
            data = [
                {
                    "instId": native,
                    "tradeId": t.trade_id,
                    "px": fmt_decimal(t.price),
                    "sz": fmt_decimal(t.qty),
                    "side": t.side,
                    "ts": str(t.ts // 1_000_000),
                    "count": "1",
                    "source": "0",
                }
                for t in group
            ]
            msg = {"arg": {"channel": "trades", "instId": native}, "data": data}
            frames.append(json_text(msg))
        return frames
