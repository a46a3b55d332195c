"""Exchange parsers on real frames: the recorded Binance session and documented samples."""

from __future__ import annotations

import orjson
import pytest

from common.contracts import Tick
from common.errors import BadInput
from ingest.venues import EXCHANGES, get_adapter
from ingest.venues.base import FrameKind
from tests.ingest_samples import (
    BINANCE_FUTURES_AGG,
    BINANCE_FUTURES_TRADE,
    BINANCE_TRADE_SELL,
    CONTROL_FRAMES,
    TRADE_FRAMES,
    recorded_lines,
)

RECV = 1_700_000_000_000_000_000


def test_binance_recording_all_trades_parse_contiguous_and_in_order() -> None:
    adapter = get_adapter("binance")
    ticks: list[Tick] = []
    kinds: dict[str, int] = {}
    for recv, frame in recorded_lines():
        result = adapter.parse(frame, recv)
        kinds[result.kind] = kinds.get(result.kind, 0) + 1
        if b'"btcusdt@trade"' in frame[:40]:
            assert result.kind == FrameKind.TRADE and len(result.ticks) == 1
            (tick,) = result.ticks
            data = orjson.loads(frame)["data"]
            assert tick.side == ("sell" if data["m"] else "buy")  # m: buyer is the maker
            assert tick.ts == data["T"] * 1_000_000 and tick.recv_ts == recv
            assert tick.price == float(data["p"]) and tick.qty == float(data["q"])
        else:  # depth, bookTicker and the REST depth snapshot are never ticks
            assert result.kind == FrameKind.IGNORED and not result.ticks
        ticks.extend(result.ticks)
    assert len(ticks) == 9757
    assert kinds == {FrameKind.TRADE: 9757, FrameKind.IGNORED: 41249 - 9757}
    ids = [int(t.trade_id) for t in ticks]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert {(t.exchange, t.symbol, t.native_symbol) for t in ticks} == {
        ("binance", "BTC-USDT", "BTCUSDT")
    }
    assert {t.side for t in ticks} == {"buy", "sell"}


def test_binance_side_of_sample_frames() -> None:
    adapter = get_adapter("binance")
    (sell,) = adapter.parse(BINANCE_TRADE_SELL, RECV).ticks
    assert sell.side == "sell"
    buy_frame = BINANCE_TRADE_SELL.replace('"m":true', '"m":false')
    assert adapter.parse(buy_frame, RECV).ticks[0].side == "buy"
    # The raw /ws form (no combined-stream wrapper) parses the same.
    bare = orjson.dumps(orjson.loads(BINANCE_TRADE_SELL)["data"])
    assert adapter.parse(bare, RECV).ticks == [sell]


@pytest.mark.parametrize(
    ("exchange", "frame", "snapshot", "expected"),
    [(ex, fr, snap, exp) for ex, cases in TRADE_FRAMES.items() for fr, snap, exp in cases],
)
def test_documented_trade_frames(
    exchange: str, frame: str, snapshot: bool, expected: list[tuple[object, ...]]
) -> None:
    result = get_adapter(exchange).parse(frame, RECV)
    assert result.kind == FrameKind.TRADE
    assert result.snapshot is snapshot
    assert [tuple(t)[1:8] for t in result.ticks] == expected
    assert all(t.exchange == exchange and t.recv_ts == RECV for t in result.ticks)
    # bytes in, same result
    assert get_adapter(exchange).parse(frame.encode(), RECV) == result


@pytest.mark.parametrize(
    ("exchange", "frame", "kind", "control"),
    [(ex, fr, k, c) for ex, cases in CONTROL_FRAMES.items() for fr, k, c in cases],
)
def test_control_frames_are_never_ticks(exchange: str, frame: str, kind: str, control: str) -> None:
    result = get_adapter(exchange).parse(frame, RECV)
    assert (result.kind, result.control, list(result.ticks)) == (kind, control, [])


BAD: list[tuple[str, str, str]] = [
    ("binance", "{not json", "invalid_json"),
    ("binance", "[1,2]", "unknown_frame"),
    ("binance", BINANCE_TRADE_SELL.replace('"p":"61837.63000000",', ""), "missing_field"),
    ("binance", BINANCE_TRADE_SELL.replace('"61837.63000000"', '"NaN"'), "non_finite"),
    ("binance", BINANCE_TRADE_SELL.replace('"61837.63000000"', '"-1"'), "non_positive"),
    ("binance", BINANCE_TRADE_SELL.replace('"0.02000000"', '"0"'), "non_positive"),
    ("binance", BINANCE_TRADE_SELL.replace('"61837.63000000"', '"1e15"'), "absurd_value"),
    ("binance", BINANCE_TRADE_SELL.replace('"61837.63000000"', '"abc"'), "bad_type"),
    ("binance", BINANCE_TRADE_SELL.replace('"m":true', '"m":"yes"'), "bad_type"),
    ("binance", BINANCE_TRADE_SELL.replace("1723161255342", "17231612"), "absurd_value"),
    ("binance", BINANCE_TRADE_SELL.replace('"BTCUSDT"', '"FOO"'), "unknown_symbol"),
    ("kraken", TRADE_FRAMES["kraken"][0][0].replace("0.5117", '"inf"'), "non_finite"),
    ("kraken", TRADE_FRAMES["kraken"][0][0].replace("4665906", '"x"'), "bad_type"),
    ("kraken", TRADE_FRAMES["kraken"][0][0].replace("07:49:37", "25:49:37"), "bad_type"),
    ("kraken", TRADE_FRAMES["kraken"][0][0].replace('"sell"', '"short"'), "bad_type"),
    ("coinbase", TRADE_FRAMES["coinbase"][0][0].replace('"BUY"', '"buy"'), "bad_type"),
    ("coinbase", TRADE_FRAMES["coinbase"][0][0].replace('.265Z"', '.265+02:00"'), "bad_type"),
    ("bybit", TRADE_FRAMES["bybit"][0][0].replace('"v":"0.001",', ""), "missing_field"),
    ("okx", TRADE_FRAMES["okx"][0][0].replace('"42219.9"', '"0"'), "non_positive"),
    ("okx", TRADE_FRAMES["okx"][0][0].replace('"data":[{', '"data":[7,{'), "bad_type"),
    # Frames that carry trades the adapter does not take are bad input, never ignored.
    ("binance", BINANCE_FUTURES_AGG, "unknown_frame"),  # aggTrade on the spot adapter
    ("binance", BINANCE_TRADE_SELL.replace('"e":"trade"', '"e":"trades"'), "unknown_frame"),
    ("binance", BINANCE_TRADE_SELL.replace('"e":"trade",', ""), "unknown_frame"),
    ("binance-futures", BINANCE_FUTURES_TRADE.replace('"MARKET"', '"LIMIT"'), "bad_type"),
    ("binance-futures", BINANCE_FUTURES_TRADE.replace('"X":"MARKET",', ""), "missing_field"),
    ("binance-futures", BINANCE_FUTURES_TRADE.replace('"t":4919283701,', ""), "missing_field"),
    ("binance-futures", BINANCE_FUTURES_TRADE.replace('"9721.50"', '"-1"'), "non_positive"),
    ("okx", TRADE_FRAMES["okx"][0][0].replace('"trades"', '"trades-all"'), "unknown_frame"),
]


@pytest.mark.parametrize(("exchange", "frame", "reason"), BAD)
def test_bad_input_reasons(exchange: str, frame: str, reason: str) -> None:
    with pytest.raises(BadInput) as err:
        get_adapter(exchange).parse(frame, RECV)
    assert err.value.reason == reason


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_frame_too_large(exchange: str) -> None:
    adapter = type(get_adapter(exchange))(max_frame_bytes=64)
    with pytest.raises(BadInput) as err:
        adapter.parse(b"{" + b" " * 100 + b"}", RECV)
    assert err.value.reason == "frame_too_large"


SYMBOLS = [
    ("binance", "BTCUSDT", "BTC-USDT"),
    ("binance", "ETHFDUSD", "ETH-FDUSD"),
    ("binance", "ETHBTC", "ETH-BTC"),
    ("binance-futures", "1000PEPEUSDT", "1000PEPE-USDT-PERP"),
    ("binance-futures", "BTCUSDT_250926", "BTC-USDT-250926"),
    ("coinbase", "BTC-USD", "BTC-USD"),
    ("kraken", "BTC/USD", "BTC-USD"),
    ("bybit", "SOLUSDC", "SOL-USDC"),
    ("bybit-linear", "BTCUSDT", "BTC-USDT-PERP"),
    ("bybit-linear", "BTCPERP", "BTC-USDC-PERP"),
    ("bybit-linear", "BTC-27DEC24", "BTC-USDC-27DEC24"),
    ("bybit-linear", "BTCUSDT-27DEC24", "BTC-USDT-27DEC24"),
    ("okx", "BTC-USDT", "BTC-USDT"),
    ("okx", "BTC-USDT-SWAP", "BTC-USDT-PERP"),
    ("okx", "BTC-USD-240927", "BTC-USD-240927"),
]


@pytest.mark.parametrize(("exchange", "native", "symbol"), SYMBOLS)
def test_symbol_normalization_round_trips(exchange: str, native: str, symbol: str) -> None:
    adapter = get_adapter(exchange)
    assert adapter.normalize(native) == symbol
    assert adapter.to_native(symbol) == native


@pytest.mark.parametrize(
    ("exchange", "native"),
    [
        ("binance", "eth-usdt"),
        ("binance", "ETH/USDT"),
        ("binance", "ETH USDT"),
        ("binance-futures", "eth-usdt"),
        ("bybit", "ETH-USDT"),
    ],
)
def test_concatenated_symbols_with_a_separator_are_rejected(exchange: str, native: str) -> None:
    """Binance/Bybit glue base and quote: ``eth-usdt`` used to become ``ETH--USDT``."""
    with pytest.raises(BadInput) as err:
        get_adapter(exchange).normalize(native)
    assert err.value.reason == "unknown_symbol"


def test_lowercase_concatenated_symbol_still_normalizes() -> None:
    assert get_adapter("binance").normalize("ethusdt") == "ETH-USDT"


def test_get_adapter_names_and_unknown() -> None:
    assert {get_adapter(n).name for n in EXCHANGES} == set(EXCHANGES)
    with pytest.raises(KeyError, match="unknown exchange"):
        get_adapter("mtgox")


_SPOT = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",'
    b'"t":%s,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":%s}%s}'
)
_FUTURES = (
    b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":123456789,"a":%s,"s":"BTCUSDT",'
    b'"p":"0.001","q":"100","f":100,"l":105,"T":1723161255342,"m":true%s}}'
)
#: Frames the typed (msgspec) decoding must refuse or read exactly as orjson does: out-of-
#: range numbers and bad UTF-8 in fields the parser does not use, ids past int64, duplicate
#: keys, fields Binance does not send, wrong types.
_TYPED_EDGE_CASES = [
    _SPOT % (b"3735683259", b"true", b""),  # the plain frame
    _SPOT % (b"3735683259", b"1e400", b""),  # orjson: number out of range
    _SPOT % (b"3735683259", b'"\xff"', b""),  # invalid UTF-8 in an unused field
    _SPOT % (b"3735683259", b"true", b',"x":"\xff"'),  # ... in a field Binance does not send
    _SPOT % (b"3735683259", b"true", b',"x":1e400'),
    _SPOT % (b"9223372036854775808", b"true", b""),  # above int64: orjson still an int
    _SPOT % (b"18446744073709551616", b"true", b""),  # above uint64: orjson gives a float
    _SPOT % (b"-5", b"true", b""),
    _SPOT % (b"3735683259", b"true", b',"data":5'),  # duplicate key: the last one wins
    _SPOT % (b'3735683259,"t":7', b"true", b""),
    _SPOT % (b"1.0", b"true", b""),
    _SPOT % (b"3735683259", b"true", b',"data":{"e":"depthUpdate"}'),
    _SPOT.replace(b'"e":"trade"', b'"e":"aggTrade"') % (b"1", b"true", b""),
    _SPOT.replace(b'"p":"61837.63000000"', b'"p":"nan"') % (b"1", b"true", b""),
    _SPOT.replace(b'"p":"61837.63000000"', b'"p":"1_0"') % (b"1", b"true", b""),
    _SPOT.replace(b'"T":1723161255342', b'"T":1') % (b"1", b"true", b""),
    _SPOT.replace(b'"m":true', b'"m":1') % (b"1", b"true", b""),
    _SPOT.replace(b'"s":"BTCUSDT"', b'"s":"\\ud800"') % (b"1", b"true", b""),
]


def _outcome(parse: object, frame: bytes) -> object:
    try:
        return parse(frame, RECV)  # type: ignore[operator]
    except BadInput as e:
        return ("bad", e.reason, e.detail)


@pytest.mark.parametrize("frame", _TYPED_EDGE_CASES)
def test_typed_decoding_reads_binance_frames_exactly_as_the_json_path(frame: bytes) -> None:
    adapter = get_adapter("binance")
    assert _outcome(adapter.parse, frame) == _outcome(adapter._parse_json, frame)


@pytest.mark.parametrize(
    "frame",
    [
        _FUTURES % (b"5933014", b""),
        _FUTURES % (b"5933014", b',"nq":"100"'),
        _FUTURES % (b"1e400", b""),
        _FUTURES % (b"5933014", b',"x":"\xff"'),
    ],
)
def test_typed_decoding_reads_futures_frames_exactly_as_the_json_path(frame: bytes) -> None:
    adapter = get_adapter("binance-futures")
    assert _outcome(adapter.parse, frame) == _outcome(adapter._parse_json, frame)


def test_typed_decoding_takes_the_plain_frames() -> None:
    """The recorded trade frames go through the typed decoder, not the JSON fallback."""
    adapter = get_adapter("binance")
    frame = _SPOT % (b"3735683259", b"true", b"")
    assert adapter._decoder.decode(frame).data.t == 3735683259
    assert adapter.parse(frame, RECV).ticks[0].trade_id == "3735683259"
