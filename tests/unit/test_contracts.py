from __future__ import annotations

import pytest

from common.contracts import Bar, PatternEvent, Tick, TickBatch
from common.errors import DecodeError
from common.names import Keys, partition_of


def _tick(i: int, symbol: str = "BTC-USDT", side: str = "buy") -> Tick:
    return Tick(
        "binance",
        symbol,
        symbol.replace("-", ""),
        str(1000 + i),
        61000.5 + i,
        0.25,
        side,
        1_723_161_255_342_000_000 + i,
        1_723_161_255_400_000_000 + i,
    )  # type: ignore[arg-type]


def test_tick_batch_round_trips_through_its_stream_encoding() -> None:
    ticks = [_tick(0), _tick(1, "ETH-USDT", "sell"), _tick(2)]
    batch = TickBatch.decode(TickBatch.from_ticks(ticks).encode())
    assert list(batch) == ticks
    assert batch.symbols == [("binance", "BTC-USDT", "BTCUSDT"), ("binance", "ETH-USDT", "ETHUSDT")]


def test_empty_tick_batch_round_trips() -> None:
    assert list(TickBatch.decode(TickBatch.from_ticks([]).encode())) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda f: f.pop(b"a"),
        lambda f: f.__setitem__(b"n", b"7"),
        lambda f: f.__setitem__(b"v", b"9"),
        lambda f: f.__setitem__(b"s", b"not json"),
        lambda f: f.__setitem__(b"a", b"\x00" * 5),
        lambda f: f.__setitem__(b"s", b"[]"),
    ],
)
def test_malformed_tick_batch_raises_decode_error(mutate: object) -> None:
    fields = TickBatch.from_ticks([_tick(0), _tick(1)]).encode()
    mutate(fields)  # type: ignore[operator]
    with pytest.raises(DecodeError):
        TickBatch.decode(fields)


def test_bar_and_pattern_event_round_trip_with_deterministic_ids() -> None:
    bar = Bar(
        "binance", "BTC-USDT", "1m", 1_723_161_240_000, 1.0, 2.0, 0.5, 1.5, 10.0, 15.0, 7, 4.0, 1.5
    )
    assert Bar.decode(bar.encode()) == bar
    assert bar.id == "binance:BTC-USDT:1m:1723161240000"
    ev = PatternEvent(bar, {"CDLHAMMER": 100}, {"rsi": 42.0, "trend": -1}, [])
    assert PatternEvent.decode(ev.encode()) == ev
    assert ev.id == bar.id
    with pytest.raises(DecodeError):
        PatternEvent.decode({b"v": b"1", b"d": b'{"patterns": {}}'})


def test_partition_is_stable_and_keys_share_the_partition_hash_tag() -> None:
    # CRC-32 is fixed by definition: these values must never change between releases.
    assert partition_of("binance", "BTC-USDT", 16) == partition_of("binance", "BTC-USDT", 16)
    assert {partition_of("binance", f"S{i}-USDT", 8) for i in range(200)} == set(range(8))
    k = Keys(partitions=8, namespace="ns:")
    assert k.ticks(3) == "ns:ticks:{3}"
    assert k.lease(3).endswith("{3}") and k.checkpoint(3).endswith("{3}")
    assert k.signal_ids == "{ns:signals}:ids"
    assert k.dlq(k.bars) == "ns:dlq:bars"
