"""The simulator's market model: replay clock, cursors, overlap, loop, gaps, frame faults."""

from __future__ import annotations

import orjson
import pytest

from common.contracts import Tick
from common.errors import BadInput
from ingest.simulator.market import Faults, Feed, FrameFaults, Subscription, malformed
from ingest.simulator.venues import get_server
from ingest.venues import get_adapter

MS = 1_000_000


def _ticks(
    symbol: str, n: int, start_ts: int = 1_700_000_000_000 * MS, step: int = MS
) -> list[Tick]:
    native = symbol.replace("-", "")
    return [
        Tick("binance", symbol, native, str(100 + i), 10.0 + i, 1.0, "buy", start_ts + i * step, 0)
        for i in range(n)
    ]


def test_due_follows_trade_time_and_speed_zero_releases_all() -> None:
    feed = Feed.build("binance", _ticks("BTC-USDT", 10))
    s = feed.symbols["BTCUSDT"]
    assert s.due(0, loop=False) == 1
    assert s.due(4.5 * MS, loop=False) == 5
    assert s.due(float("inf"), loop=False) == 10
    assert s.next_due_ns(7) == 7 * MS


def test_symbols_share_the_feed_clock() -> None:
    btc = _ticks("BTC-USDT", 3)
    eth = _ticks("ETH-USDT", 3, start_ts=btc[0].ts + 10 * MS)
    feed = Feed.build("binance", [*btc, *eth])
    assert feed.symbols["ETHUSDT"].offsets == [10 * MS, 11 * MS, 12 * MS]
    assert feed.symbols["ETHUSDT"].due(5 * MS, loop=False) == 0


def test_new_subscription_resends_the_overlap_and_head_advances() -> None:
    feed = Feed.build("binance", _ticks("BTC-USDT", 20))
    stream = feed.symbols["BTCUSDT"]
    first = Subscription.start(stream, overlap=5)
    assert [t.trade_id for t in first.take(20, limit=8)] == [str(100 + i) for i in range(8)]
    assert stream.head == 8
    second = Subscription.start(stream, overlap=5)  # a reconnect: the last 5 again...
    assert second.cursor == 3 and second.in_snapshot
    # ... on their own (a snapshot message where the exchange has one), then live trades
    overlap = [t.trade_id for t in second.take(20, limit=100)]
    assert overlap == ["103", "104", "105", "106", "107"]
    assert not second.in_snapshot
    assert second.take(20, limit=100)[0].trade_id == "108"
    assert stream.head == 20 and feed.finished()
    assert first.take(20, limit=100)[0].trade_id == "108"  # the old one goes on from its own cursor


def test_loop_shifts_ids_and_times_and_never_finishes() -> None:
    ticks = _ticks("BTC-USDT", 4)
    feed = Feed.build("binance", ticks, loop=True)
    s = feed.symbols["BTCUSDT"]
    t5 = s.tick_at(5)
    assert t5.trade_id == str(101 + 4) and t5.ts == ticks[1].ts + s.span_ns
    assert s.due(float("inf"), loop=True) > 10**9  # speed 0 and looping: endless
    assert s.due(s.span_ns + 1.5 * MS, loop=True) == 4 + 2
    sub = Subscription.start(s, 0)
    ids = [int(t.trade_id) for t in sub.take(12, 12)]
    assert ids == list(range(100, 112))
    assert not feed.finished()


def test_skip_every_removes_trades_and_lists_them() -> None:
    feed = Feed.build("binance", _ticks("BTC-USDT", 10), skip_every=3)
    s = feed.symbols["BTCUSDT"]
    assert feed.skipped == [("BTCUSDT", "102"), ("BTCUSDT", "105"), ("BTCUSDT", "108")]
    assert [t.trade_id for t in s.ticks] == ["100", "101", "103", "104", "106", "107", "109"]
    assert feed.total() == 7


def test_last_trade_is_never_skipped() -> None:
    # a gap is only visible when a later trade arrives: the last one always stays
    feed = Feed.build("binance", _ticks("BTC-USDT", 6), skip_every=3)
    assert feed.skipped == [("BTCUSDT", "102")]


def test_build_rejects_foreign_or_empty_input() -> None:
    with pytest.raises(ValueError, match="no trades"):
        Feed.build("binance", [])
    with pytest.raises(ValueError, match="kraken"):
        Feed.build("kraken", _ticks("BTC-USDT", 1))


def test_frame_faults_duplicate_and_malformed_positions() -> None:
    ff = FrameFaults(Faults(duplicate_every=2, malformed_every=3, drop_after_frames=6))
    out = ff.expand([f"f{i}" for i in range(1, 7)])
    assert out[:4] == ["f1", "f2", "f2", "f3"]
    assert out.count("f4") == 2 and out.count("f6") == 2
    assert len(out) == 6 + 3 + 2
    assert ff.should_drop()


def test_malformed_variants_are_bad_input_for_the_adapter() -> None:
    frame = get_server("binance").session().render_trades(_ticks("BTC-USDT", 1))[0]
    orjson.loads(frame)
    reasons = set()
    for k in range(3):
        with pytest.raises(BadInput) as err:
            get_adapter("binance").parse(malformed(frame, k), 0)
        reasons.add(err.value.reason)
    assert reasons == {"invalid_json", "non_positive"}
