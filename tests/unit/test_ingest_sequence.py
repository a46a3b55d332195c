"""Trade de-duplication and gap counting (``ingest.sequence``) and exact timestamps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.contracts import Tick
from common.errors import BadInput
from ingest.sequence import TradeDeduper
from ingest.simulator.venues.wire import ns_to_iso8601
from ingest.venues import get_adapter
from ingest.venues.fields import iso8601_to_ns


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


class _Reference:
    """The deduper's rules written plainly (one set and one deque of every remembered id):
    the run-based fast path must classify every id exactly as this does."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.highest: int | None = None
        self.order: list[str] = []
        self.accepted = 0

    def check(self, trade_id: str) -> tuple[bool, int, bool, bool]:
        if trade_id in self.order:
            return (False, 0, True, False)
        n, gap, late = int(trade_id), 0, False
        if self.highest is None or n == self.highest + 1:
            self.highest = n
        elif n > self.highest:
            gap, self.highest = n - self.highest - 1, n
        elif n <= self.highest - self.window:
            return (False, 0, True, False)
        else:
            late = True
        self.order = [*self.order, trade_id][-self.window :]
        self.accepted += 1
        return (True, gap, False, late)


@given(
    st.integers(min_value=1, max_value=6),
    st.lists(
        st.integers(min_value=0, max_value=40).map(str) | st.sampled_from(["007", "+8", "9"]),
        max_size=120,
    ),
    st.lists(st.integers(min_value=0, max_value=119), max_size=10),
)
def test_fast_path_classifies_exactly_like_the_plain_rules(
    window: int, ids: list[str], runs_at: list[int]
) -> None:
    """Mostly-consecutive feeds with repeats, gaps, late fills and odd spellings; some runs
    go through ``accept_run``, which must agree too (or decline)."""
    ids = sorted(ids, key=int)[: len(ids) // 2] + ids[len(ids) // 2 :]
    dd, ref = TradeDeduper(window=window, sequential_key=int), _Reference(window)
    i = 0
    while i < len(ids):
        if i in runs_at and ids[i] == str(int(ids[i])):
            first = int(ids[i])
            count = 1
            while i + count < len(ids) and ids[i + count] == str(first + count):
                count += 1
            expected = [ref.check(str(first + k)) for k in range(count)]
            if all(v == (True, 0, False, False) for v in expected) and dd.accept_run(
                "binance", "X-Y", first, count
            ):
                i += count
                continue
            ref = _replay(window, ids[:i])  # declined or not a clean run: undo, go on singly
        v = dd.check("binance", "X-Y", ids[i])
        assert (v.keep, v.gap, v.duplicate, v.late) == ref.check(ids[i]), (i, ids[i])
        i += 1
    assert dd.stats("binance", "X-Y").accepted == ref.accepted


def _replay(window: int, ids: list[str]) -> _Reference:
    ref = _Reference(window)
    for tid in ids:
        ref.check(tid)
    return ref


def test_accept_run_needs_the_next_id_of_a_known_stream() -> None:
    dd = TradeDeduper(window=5, sequential_key=int)
    assert not dd.accept_run("binance", "X-Y", 1, 3)  # unknown stream: check the first one
    assert dd.check("binance", "X-Y", "1").keep
    assert not dd.accept_run("binance", "X-Y", 3, 2)  # a gap: each id must be checked
    assert dd.accept_run("binance", "X-Y", 2, 10)
    assert dd.stats("binance", "X-Y").accepted == 11
    assert not dd.check("binance", "X-Y", "11").keep  # inside the window: a duplicate
    assert not dd.check("binance", "X-Y", "3").keep  # far below: an old replay
    assert dd.check("binance", "X-Y", "12").keep
    assert not TradeDeduper(window=5).accept_run("x", "y", 1, 1)  # not sequential
