"""Trade de-duplication and gap counting (``ingest.sequence``) and exact timestamps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.contracts import Tick
from common.errors import BadInput
from ingest.exchanges import get_adapter
from ingest.exchanges.fields import iso8601_to_ns, ns_to_iso8601
from ingest.sequence import TradeDeduper


def _tick(tid: int | str, symbol: str = "BTC-USDT") -> Tick:
    return Tick("binance", symbol, symbol.replace("-", ""), str(tid), 1.0, 1.0, "buy", 0, 0)


def test_sequential_ids_count_gaps_drop_duplicates_and_keep_late_fills() -> None:
    dd = TradeDeduper(window=100, sequential_key=get_adapter("binance").trade_id_key)
    kept, missing = dd.filter(_tick(i) for i in [10, 11, 11, 14, 12, 15, 10])
    assert [t.trade_id for t in kept] == ["10", "11", "14", "12", "15"]
    assert missing == 2  # 12 and 13 were missing when 14 arrived
    stats = dd.stats("binance", "BTC-USDT")
    assert (stats.accepted, stats.duplicates, stats.gaps, stats.missing, stats.late) == (
        5, 2, 1, 2, 1,
    )  # fmt: skip


def test_first_id_is_a_baseline_and_streams_are_independent() -> None:
    dd = TradeDeduper(sequential_key=int)
    assert dd.check("binance", "BTC-USDT", "500").gap == 0
    assert dd.check("binance", "ETH-USDT", "7").gap == 0
    assert dd.check("binance", "ETH-USDT", "9").gap == 1
    assert set(dd.streams()) == {("binance", "BTC-USDT"), ("binance", "ETH-USDT")}


def test_old_sequential_ids_beyond_the_window_are_duplicates() -> None:
    dd = TradeDeduper(window=3, sequential_key=int)
    for i in range(1, 11):
        assert dd.check("kraken", "BTC-USD", str(i)).keep
    verdict = dd.check("kraken", "BTC-USD", "2")
    assert not verdict.keep and verdict.duplicate


def test_non_sequential_ids_dedupe_within_a_bounded_window() -> None:
    dd = TradeDeduper(window=2)
    kept, missing = dd.filter(_tick(x) for x in ["a", "b", "a", "c", "a"])
    # "a" left the window after "b", "c" were remembered, so the last "a" is new again.
    assert [t.trade_id for t in kept] == ["a", "b", "c", "a"] and missing == 0


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=80))
def test_replayed_overlap_never_yields_an_id_twice(ids: list[int]) -> None:
    dd = TradeDeduper(window=1000, sequential_key=int)
    seen: list[str] = []
    for i in ids + ids:  # a reconnect replays everything again
        if dd.check("binance", "X-Y", str(i)).keep:
            seen.append(str(i))
    assert sorted(seen) == sorted({str(i) for i in ids})


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        TradeDeduper(window=0)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2023-02-09T20:19:35.39625135Z", 1675973975396251350),
        ("2023-09-25T07:49:37.708706Z", 1695628177708706000),
        ("2019-08-14T20:42:27.265Z", 1565815347265000000),
        ("2024-02-29T23:59:59.999999999Z", 1709251199999999999),
        ("2024-02-29T23:59:59+00:00", 1709251199000000000),
    ],
)
def test_iso8601_is_exact_to_the_nanosecond(text: str, ns: int) -> None:
    assert iso8601_to_ns(text) == ns


@pytest.mark.parametrize(
    "text",
    ["2023-02-30T00:00:00Z", "2023-02-09T20:19:35.Z", "2023-02-09T20:19:35.1234567890Z",
     "2023-02-09T20:19:35+01:00", "2023-02-09 20:19:35", "1999-01-01T00:00:00Z",
     "2023-02-09T20:19:60Z", "２０２３-02-09T20:19:35Z", 1675973975],
)  # fmt: skip
def test_iso8601_rejects_what_it_cannot_read_exactly(text: object) -> None:
    with pytest.raises(BadInput):
        iso8601_to_ns(text)


@given(st.integers(min_value=1_262_304_000_000_000_000, max_value=4_102_444_799_999_999_999))
def test_iso8601_round_trip(ns: int) -> None:
    assert iso8601_to_ns(ns_to_iso8601(ns)) == ns
