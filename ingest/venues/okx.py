"""OKX v5 public WebSocket, ``trades`` channel (any instrument type).

Docs: okx.com/docs-v5/en, "WebSocket" overview and "Trades channel". What this module relies
on:

* Endpoint ``wss://ws.okx.com:8443/ws/v5/public``. Subscribe with
  ``{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},...]}`` (the request
  must stay under 64 KB; we send 100 args at most); ack ``{"event":"subscribe","arg":{...},
  "connId":...}``, failure ``{"event":"error","code":"60012","msg":...}``. OKX allows 3
  connection/subscribe requests per second and 480 subscribe requests per hour per
  connection.
* Keep-alive: the server closes a connection silent for 30 s; the client sends the text
  ``ping`` and gets the text ``pong`` (not JSON). ``{"event":"notice","code":"64008"}``
  announces a service upgrade disconnect: reported as ``shutdown``.
* Trade fields: ``side`` is the **taker** side; ``px``/``sz`` strings; ``ts`` trade time in
  ms as a string; ``tradeId`` a string. The channel may aggregate several fills of one taker
  order (``count``), so ids are not consecutive: no gap detection.

Symbols: ``BTC-USDT`` (spot) kept; ``BTC-USDT-SWAP`` → ``BTC-USDT-PERP``; futures and
options keep their suffix (``BTC-USD-240927``, ``BTC-USD-231229-35000-C``).
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
    control_result,
    error_result,
    trade_result,
)

_SHUTDOWN: Final = control_result("shutdown", "64008")
_FIELDS: Final = f.TradeFields("instId", "tradeId", "px", "sz", "side", "ts", f.TAKER_SIDES)


class Okx(ExchangeAdapter):
    name = "okx"
    default_url = "wss://ws.okx.com:8443/ws/v5/public"
    max_streams_per_connection = 1000
    max_symbols_per_message = 100
    subscribe_rate_per_s = 3.0
    trade_ids_sequential = False
    heartbeat = Heartbeat(ping_message="ping", ping_interval_s=20.0, idle_timeout_s=45.0)

    def normalize(self, native: str) -> str:
        parts = native.upper().split("-")
        if len(parts) < 2 or not all(parts):
            raise BadInput("unknown_symbol", f"{native[:40]!r} is not an OKX instId")
        if len(parts) == 3 and parts[2] == "SWAP":
            return f"{parts[0]}-{parts[1]}-PERP"
        return "-".join(parts)

    def to_native(self, symbol: str) -> str:
        up = symbol.upper()
        return up.removesuffix("-PERP") + "-SWAP" if up.endswith("-PERP") else up

    def subscribe_messages(self, native_symbols: Sequence[str]) -> list[str]:
        args = [{"channel": "trades", "instId": s} for s in native_symbols]
        return [
            orjson.dumps({"op": "subscribe", "args": part}).decode()
            for part in chunks(args, self.max_symbols_per_message)
        ]

    def parse(self, frame: str | bytes, recv_ts_ns: int) -> ParseResult:
        """Parse one frame. Sample (OKX v5 docs, ``trades``)::

            {"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT",
             "tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy",
             "ts":"1630048897897","count":"3","source":"0","seqId":1234}]}

        Ack, error, pong::

            {"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},
             "connId":"a4d3ae55"}
            {"event":"error","code":"60012","msg":"Invalid request: {\\"op\\": \\"subscribe\\",
             \\"argss\\":[{ \\"channel\\" : \\"trades\\", \\"instId\\" : \\"BTC-USDT\\"}]}",
             "connId":"a4d3ae55"}
            pong
        """
        if frame in {"pong", b"pong"}:
            return PONG
        msg = f.load_object(frame, self.max_frame_bytes)
        event = msg.get("event")
        if event is not None:
            if event in ("subscribe", "unsubscribe"):
                return ACK
            if event == "error":
                return error_result(f"{msg.get('code')}: {msg.get('msg')}")
            if event == "notice" and msg.get("code") == "64008":
                return _SHUTDOWN
            return control_result("info", str(event)[:100])
        arg = msg.get("arg")
        if isinstance(arg, dict) and "data" in msg:
            channel = arg.get("channel")
            if channel != "trades":
                if type(channel) is str and channel.startswith("trades"):
                    # trades-all (business endpoint): trades, not subscribed, not parsed here.
                    raise BadInput("unknown_frame", f"channel {channel[:40]!r} is not parsed")
                return IGNORED  # books, tickers, ...
            data = f.get_list(msg, "data")
            return trade_result([self.read_trade(tr, _FIELDS, recv_ts_ns) for tr in data])
        return IGNORED
