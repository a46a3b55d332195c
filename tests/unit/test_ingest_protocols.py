"""Client and simulator sides of each exchange protocol agree: subscribe → ack, ping → pong,
rendered trades parse back to the same ticks, limits are respected."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.contracts import Tick
from ingest.simulator.venues import get_server
from ingest.venues import EXCHANGES, get_adapter
from ingest.venues.base import FrameKind

NATIVE = {
    "binance": ["BTCUSDT", "ETHUSDT"],
    "binance-futures": ["BTCUSDT", "ETHUSDT_250926"],
    "coinbase": ["BTC-USD", "ETH-USD"],
    "kraken": ["BTC/USD", "ETH/EUR"],
    "bybit": ["BTCUSDT", "ETHUSDC"],
    "bybit-linear": ["BTCUSDT", "BTCPERP"],
    "okx": ["BTC-USDT", "BTC-USDT-SWAP"],
}
#: Time precision each exchange sends: ms, except Kraken (µs) and Coinbase (ns).
TS_UNIT = {"kraken": 1_000, "coinbase": 1}


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_subscribe_is_acked_and_registers_symbols(exchange: str) -> None:
    adapter = get_adapter(exchange)
    session = get_server(adapter.name).session()
    for frame in session.on_connect(get_server(adapter.name).path).frames:
        assert adapter.parse(frame, 0).kind == FrameKind.CONTROL
    subscribed: list[str] = []
    controls: list[str] = []
    for msg in adapter.subscribe_messages(NATIVE[exchange]):
        reply = session.handle(msg)
        subscribed += reply.subscribed
        controls += [adapter.parse(f, 0).control for f in reply.frames]
    assert sorted(subscribed) == sorted(NATIVE[exchange])
    assert session.subscribed == set(NATIVE[exchange])
    assert controls and set(controls) == {"ack"}


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_ping_gets_pong_or_protocol_uses_ws_pings(exchange: str) -> None:
    adapter = get_adapter(exchange)
    ping = adapter.heartbeat.ping_message
    if ping is None:  # Binance (WebSocket pings) and Coinbase (server heartbeats)
        assert adapter.heartbeat.server_heartbeat_s or adapter.heartbeat.idle_timeout_s is None
        return
    (pong,) = get_server(adapter.name).session().handle(ping).frames
    assert adapter.parse(pong, 0).control == "pong"


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_junk_client_message_gets_an_error_reply(exchange: str) -> None:
    adapter = get_adapter(exchange)
    reply = get_server(adapter.name).session().handle("{junk")
    assert reply.frames and not reply.subscribed
    assert {adapter.parse(f, 0).control for f in reply.frames} == {"error"}


@pytest.mark.parametrize("exchange", ["coinbase", "kraken"])
def test_server_heartbeats_parse_as_heartbeats(exchange: str) -> None:
    adapter = get_adapter(exchange)
    session = get_server(adapter.name).session()
    for msg in adapter.subscribe_messages(NATIVE[exchange]):
        session.handle(msg)
    (beat,) = session.heartbeat()
    assert adapter.parse(beat, 0).control == "heartbeat"


def test_binance_url_streams_subscribe_on_connect() -> None:
    session = get_server("binance").session()
    reply = session.on_connect("/stream?streams=btcusdt@trade/ethusdt@trade/btcusdt@depth")
    assert sorted(reply.subscribed) == ["BTCUSDT", "ETHUSDT"]
    listing = session.handle('{"method":"LIST_SUBSCRIPTIONS","id":9}').frames
    assert orjson.loads(listing[0]) == {"result": ["btcusdt@trade", "ethusdt@trade"], "id": 9}


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_subscribe_messages_respect_limits(exchange: str) -> None:
    adapter = get_adapter(exchange)
    natives = [f"S{i}" for i in range(2 * adapter.max_symbols_per_message + 1)]
    msgs = adapter.subscribe_messages(natives)
    session = get_server(adapter.name).session()
    got: list[str] = []
    for m in msgs:
        reply = session.handle(m)
        assert {adapter.parse(f, 0).control for f in reply.frames} == {"ack"}
        got += reply.subscribed
    assert sorted(got) == sorted(natives)
    assert len(msgs) >= 3
    plan = adapter.connection_plan(natives * 2)
    assert all(len(group) <= adapter.max_streams_per_connection for group in plan)
    assert sum(len(group) for group in plan) == len(natives)


def _ticks(exchange: str, draws: list[tuple[float, float, bool, int]]) -> list[Tick]:
    adapter = get_adapter(exchange)
    unit = TS_UNIT.get(exchange, 1_000_000)
    ticks = []
    ts = 1_723_161_255_342_000_000
    for i, (price, qty, buy, step) in enumerate(draws):
        ts += step * unit
        native = NATIVE[exchange][i % 3 // 2]  # runs of one symbol, then another
        ticks.append(
            Tick(
                exchange,
                adapter.normalize(native),
                native,
                str(1000 + i),
                price,
                qty,
                "buy" if buy else "sell",
                ts,
                42,
            )
        )
    return ticks


prices = st.floats(min_value=1e-8, max_value=1e8, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("exchange", EXCHANGES)
@settings(max_examples=40, deadline=None)
@given(
    draws=st.lists(
        st.tuples(prices, prices, st.booleans(), st.integers(min_value=0, max_value=10**7)),
        min_size=1,
        max_size=8,
    ),
    snapshot=st.booleans(),
)
def test_render_then_parse_round_trips(
    exchange: str, draws: list[tuple[float, float, bool, int]], snapshot: bool
) -> None:
    adapter = get_adapter(exchange)
    ticks = _ticks(exchange, draws)
    session = get_server(adapter.name).session()
    parsed: list[Tick] = []
    for frame in session.render_trades(ticks, snapshot=snapshot):
        result = adapter.parse(frame, 42)
        assert result.kind == FrameKind.TRADE
        if exchange in {"coinbase", "kraken"}:  # the two that send trade snapshots
            assert result.snapshot is snapshot
        parsed += result.ticks
    assert parsed == ticks
