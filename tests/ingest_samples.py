"""Real frames for the ingest parser tests: the recorded Binance session in ``shared/data``
and, for the other exchanges, the sample payloads of their public documentation."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

# CI clones the repo into a temp dir with shared/ beside it: <repo>/../shared/data.
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BTC_RECORDING = DATA / "binance-spot-btcusdt-20240808.rec.gz"


def recorded_lines(path: Path = BTC_RECORDING) -> list[tuple[int, bytes]]:
    """(receive ns, frame) of every line of a recording; fails (never skips) if absent."""
    if not path.is_file():
        pytest.fail(f"recorded data missing: {path} (expected shared/data beside the repo)")
    out = []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            ts, _, frame = line.rstrip(b"\n").partition(b" ")
            out.append((int(ts), frame))
    return out


BINANCE_TRADE_SELL = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",'
    '"t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}'
)
BINANCE_FUTURES_AGG = (
    '{"e":"aggTrade","E":123456789,"s":"BTCUSDT","a":5933014,"p":"0.001","q":"100",'
    '"f":100,"l":105,"T":1591677567872,"m":true}'
)
#: USDⓈ-M futures raw trade stream (``btcusdt@trade``), the docs' sample with real values.
BINANCE_FUTURES_TRADE = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1591677567875,"T":1591677567872,'
    '"s":"BTCUSDT","t":4919283701,"p":"9721.50","q":"0.250","X":"MARKET","m":false}}'
)

#: exchange -> list of (frame, expected kind, expected control) — control frames only.
CONTROL_FRAMES: dict[str, list[tuple[str, str, str]]] = {
    "binance": [
        ('{"result":null,"id":1}', "control", "ack"),
        ('{"result":["btcusdt@trade"],"id":3}', "control", "ack"),
        ('{"error":{"code":2,"msg":"Invalid request: unknown variant"},"id":1}', "control",
         "error"),
        ('{"code":0,"msg":"Unknown property","id":1}', "control", "error"),
        ('{"e":"serverShutdown","E":1723161255343}', "control", "shutdown"),
        ('{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT",'
         '"b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}',
         "ignored", ""),
    ],
    "binance-futures": [
        (BINANCE_FUTURES_TRADE.replace('"MARKET"', '"INSURANCE_FUND"'), "ignored", ""),
        (BINANCE_FUTURES_TRADE.replace('"MARKET"', '"ADL"'), "ignored", ""),
        (BINANCE_FUTURES_TRADE.replace('"MARKET"', '"NA"'), "ignored", ""),
    ],
    "coinbase": [
        ('{"channel":"subscriptions","client_id":"","timestamp":"2023-02-09T20:32:59.9896Z",'
         '"sequence_num":1,"events":[{"subscriptions":{"market_trades":["BTC-USD"]}}]}',
         "control", "ack"),
        ('{"channel":"heartbeats","client_id":"","timestamp":"2023-06-23T20:31:26.122969572Z",'
         '"sequence_num":0,"events":[{"current_time":"2023-06-23 20:31:56.121961769 +0000 UTC '
         'm=+91717.525857105","heartbeat_counter":"3049"}]}', "control", "heartbeat"),
        ('{"type":"error","message":"failure to subscribe"}', "control", "error"),
        ('{"channel":"l2_data","client_id":"","timestamp":"2023-02-09T20:32:50.714964855Z",'
         '"sequence_num":0,"events":[{"type":"snapshot","product_id":"BTC-USD","updates":[]}]}',
         "ignored", ""),
    ],
    "kraken": [
        ('{"channel":"status","data":[{"api_version":"v2","connection_id":12393906104898154338,'
         '"system":"online","version":"2.0.0"}],"type":"update"}', "control", "info"),
        ('{"method":"subscribe","result":{"channel":"trade","snapshot":true,'
         '"symbol":"MATIC/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z",'
         '"time_out":"2023-09-25T09:04:31.742648Z"}', "control", "ack"),
        ('{"error":"Currency pair not supported XBT/USDX","method":"subscribe","success":false,'
         '"symbol":"XBT/USDX","time_in":"2023-09-25T09:04:31.742599Z",'
         '"time_out":"2023-09-25T09:04:31.742648Z"}', "control", "error"),
        ('{"method":"pong","req_id":101,"time_in":"2023-09-24T14:10:23.799685Z",'
         '"time_out":"2023-09-24T14:10:23.799703Z"}', "control", "pong"),
        ('{"channel":"heartbeat"}', "control", "heartbeat"),
        ('{"channel":"book","type":"update","data":[]}', "ignored", ""),
    ],
    "bybit": [
        ('{"success":true,"ret_msg":"","conn_id":"d5phu6rboasumi7uds7g-223s",'
         '"req_id":"100001","op":"subscribe"}', "control", "ack"),
        ('{"success":true,"ret_msg":"pong","conn_id":"0970e817-426e-429a-a679-ff7f55e0b16a",'
         '"op":"ping"}', "control", "pong"),
        ('{"success":false,"ret_msg":"error:handler not found","conn_id":"x","req_id":"",'
         '"op":"subscribe"}', "control", "error"),
        ('{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1672304484978,'
         '"data":{"s":"BTCUSDT","b":[],"a":[],"u":1,"seq":2}}', "ignored", ""),
    ],
    "bybit-linear": [
        ('{"req_id":"100001","op":"pong","args":["1661762767658"],'
         '"conn_id":"ce3dpomvha7dha97tvp0-2xh"}', "control", "pong"),
        ('{"success":true,"ret_msg":"","conn_id":"x","req_id":"","op":"subscribe"}', "control",
         "ack"),
    ],
    "okx": [
        ('{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},'
         '"connId":"a4d3ae55"}', "control", "ack"),
        ('{"event":"error","code":"60012","msg":"Invalid request: {\\"op\\": \\"subscribe\\"}",'
         '"connId":"a4d3ae55"}', "control", "error"),
        ('{"event":"notice","code":"64008","msg":"The connection will soon be closed for a '
         'service upgrade. Please reconnect.","connId":"a4d3ae55"}', "control", "shutdown"),
        ("pong", "control", "pong"),
        ('{"arg":{"channel":"books5","instId":"BTC-USDT"},"data":[{"asks":[],"bids":[],'
         '"instId":"BTC-USDT","ts":"1597026383085","seqId":123}]}', "ignored", ""),
    ],
}  # fmt: skip

#: exchange -> (documented trade frame, snapshot flag, expected ticks as
#: (symbol, native, trade_id, price, qty, side, ts_ns)).
Expected = tuple[str, str, str, float, float, str, int]
TRADE_FRAMES: dict[str, list[tuple[str, bool, list[Expected]]]] = {
    "binance": [
        (BINANCE_TRADE_SELL, False,
         [("BTC-USDT", "BTCUSDT", "3735683259", 61837.63, 0.02, "sell", 1723161255342000000)]),
    ],
    "binance-futures": [
        (BINANCE_FUTURES_AGG, False,
         [("BTC-USDT-PERP", "BTCUSDT", "5933014", 0.001, 100.0, "sell", 1591677567872000000)]),
        (BINANCE_FUTURES_TRADE, False,
         [("BTC-USDT-PERP", "BTCUSDT", "4919283701", 9721.5, 0.25, "buy", 1591677567872000000)]),
    ],
    "coinbase": [
        ('{"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z",'
         '"sequence_num":0,"events":[{"type":"snapshot","trades":[{"trade_id":"000000000",'
         '"product_id":"ETH-USD","price":"1260.01","size":"0.3","side":"BUY",'
         '"time":"2019-08-14T20:42:27.265Z"}]}]}', True,
         [("ETH-USD", "ETH-USD", "000000000", 1260.01, 0.3, "sell", 1565815347265000000)]),
        # An update with two trades, newest first as Coinbase sends them; nanosecond times.
        ('{"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z",'
         '"sequence_num":4,"events":[{"type":"update","trades":[{"trade_id":"541338061",'
         '"product_id":"BTC-USD","price":"21921.74","size":"0.00044","side":"SELL",'
         '"time":"2023-02-09T20:19:35.396137123Z"},{"trade_id":"541338060",'
         '"product_id":"BTC-USD","price":"21921.73","size":"0.0089","side":"BUY",'
         '"time":"2023-02-09T20:19:35.1Z"}]}]}', False,
         [("BTC-USD", "BTC-USD", "541338060", 21921.73, 0.0089, "sell", 1675973975100000000),
          ("BTC-USD", "BTC-USD", "541338061", 21921.74, 0.00044, "buy", 1675973975396137123)]),
    ],
    "kraken": [
        ('{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell",'
         '"price":0.5117,"qty":40.0,"ord_type":"market","trade_id":4665906,'
         '"timestamp":"2023-09-25T07:49:37.708706Z"}]}', False,
         [("MATIC-USD", "MATIC/USD", "4665906", 0.5117, 40.0, "sell", 1695628177708706000)]),
        ('{"channel":"trade","type":"snapshot","data":[{"symbol":"MATIC/USD","side":"buy",'
         '"price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,'
         '"timestamp":"2023-09-25T07:48:36.925533Z"},{"symbol":"MATIC/USD","side":"buy",'
         '"price":0.5147,"qty":1136.19677815,"ord_type":"limit","trade_id":4665847,'
         '"timestamp":"2023-09-25T07:49:36.925603Z"}]}', True,
         [("MATIC-USD", "MATIC/USD", "4665846", 0.5147, 6423.46326, "buy", 1695628116925533000),
          ("MATIC-USD", "MATIC/USD", "4665847", 0.5147, 1136.19677815, "buy",
           1695628176925603000)]),
    ],
    "bybit": [
        ('{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{'
         '"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick",'
         '"i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}', False,
         [("BTC-USDT", "BTCUSDT", "20f43950-d8dd-5b31-9112-a178eb6023af", 16578.5, 0.001,
           "buy", 1672304486865000000)]),
    ],
    "bybit-linear": [
        ('{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{'
         '"T":1672304486865,"s":"BTCUSDT","S":"Sell","v":"0.001","p":"16578.50",'
         '"L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}', False,
         [("BTC-USDT-PERP", "BTCUSDT", "20f43950-d8dd-5b31-9112-a178eb6023af", 16578.5, 0.001,
           "sell", 1672304486865000000)]),
    ],
    "okx": [
        ('{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT",'
         '"tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy",'
         '"ts":"1630048897897","count":"3","source":"0","seqId":1234}]}', False,
         [("BTC-USDT", "BTC-USDT", "130639474", 42219.9, 0.12060306, "buy",
           1630048897897000000)]),
        ('{"arg":{"channel":"trades","instId":"BTC-USD-231229-35000-C"},"data":[{'
         '"instId":"BTC-USD-231229-35000-C","tradeId":"4","px":"0.1525","sz":"21",'
         '"side":"sell","ts":"1681473269025","count":"1"}]}', False,
         [("BTC-USD-231229-35000-C", "BTC-USD-231229-35000-C", "4", 0.1525, 21.0, "sell",
           1681473269025000000)]),
    ],
}  # fmt: skip
