"""Bar aggregation rules: closing, watermark, late ticks, duplicates, empty intervals, and
independence from batch boundaries (hypothesis)."""

from __future__ import annotations

import copy
import itertools
import operator
from functools import reduce
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.contracts import Side, Tick, TickBatch
from common.errors import ConfigError
from detectors.bars import BarAggregator, ClosedBars, segment_sums
from detectors.group_runs import group_runs, never_falls, prev_group_max, prev_group_max_loop
from detectors.timeframes import parse_timeframes

MIN = 60_000
T0 = 1_723_161_600_000  # 2024-08-09T00:00:00Z, a day boundary
TFS = parse_timeframes("1m,5m")


def tick(sym: str, tid: int | str, t_ms: int, price: float = 100.0, qty: float = 1.0) -> Tick:
    ns = t_ms * 1_000_000
    side: Side = "buy" if int(t_ms) % 2 else "sell"
    return Tick("x", sym, sym, str(tid), price, qty, side, ns, ns)


def run(agg: BarAggregator, *batches: list[Tick]) -> list[tuple[Any, ...]]:
    out = ClosedBars()
    for b in batches:
        agg.apply(TickBatch.from_ticks(b), out)
    return rows(agg, out)


def rows(agg: BarAggregator, out: ClosedBars) -> list[tuple[Any, ...]]:
    columns = (c.tolist() for c in out.columns())
    return [
        (agg.series[s][1], agg.timeframes[t].name, ot, *v[:6], n, v[6])
        for s, t, ot, v, n in zip(*columns, strict=True)
    ]


def test_timeframes_are_validated() -> None:
    assert [t.ms for t in parse_timeframes("1d,1m,5m")] == [MIN, 5 * MIN, 1440 * MIN]
    for bad in ("", "1x", "2m,3m", "1m,60s", "0m"):
        with pytest.raises(ConfigError, match="TIMEFRAMES"):
            parse_timeframes(bad)


def test_bar_closes_when_a_later_tick_of_the_symbol_arrives() -> None:
    agg = BarAggregator(TFS, allowed_lateness_ms=10 * MIN)
    got = run(agg, [tick("A", 1, T0 + 1000, 10.0, 2.0), tick("A", 2, T0 + 2000, 12.0, 1.0)])
    assert got == []
    got = run(agg, [tick("A", 3, T0 + MIN + 5, 11.0)])
    assert got == [("A", "1m", T0, 10.0, 12.0, 10.0, 12.0, 3.0, 32.0, 2, 0.0)]
    got = run(agg, [tick("A", 4, T0 + 5 * MIN, 9.0)])
    assert [(r[1], r[2]) for r in got] == [("1m", T0 + MIN), ("5m", T0)]
    five = got[1]
    assert five[3:10] == (10.0, 12.0, 10.0, 11.0, 4.0, 43.0, 3)


def test_watermark_closes_idle_symbols_and_late_ticks_are_dropped() -> None:
    agg = BarAggregator(TFS, allowed_lateness_ms=30_000)
    run(agg, [tick("A", 1, T0 + 1000)])
    # B's tick at 1:29.999 -> watermark 0:59.999: A's bar [0:00,1:00) not yet closed.
    assert run(agg, [tick("B", 1, T0 + 89_999)]) == []
    got = run(agg, [tick("B", 2, T0 + 90_000)])  # watermark reaches 1:00
    assert [(r[0], r[1], r[2]) for r in got] == [("A", "1m", T0)]
    # A tick of A in the closed minute is late, one in the next minute is not.
    run(agg, [tick("A", 2, T0 + 59_000), tick("A", 3, T0 + 61_000)])
    assert agg.counters.late == 1
    assert agg.counters.ticks == 5


def test_until_close_is_the_event_time_left_before_the_earliest_open_bar_can_close() -> None:
    agg = BarAggregator(TFS, allowed_lateness_ms=30_000)
    assert agg.until_close() is None  # no tick yet
    run(agg, [tick("A", 1, T0 + 1000)])
    assert agg.until_close() == MIN - 1000  # A's 1m bar: its end - highest, not + lateness:
    assert agg.until_close(T0 + 50_000) == MIN - 50_000  # ticks held unapplied count too
    assert agg.until_close(T0) == MIN - 1000  # (the applied ones still do)
    run(agg, [tick("B", 1, T0 + 89_000)])  # A's next tick closes it from its end on
    assert agg.until_close() == MIN - 89_000  # past its end, still open: due with any entry
    got = run(agg, [tick("B", 2, T0 + 90_000)])  # the watermark closes A's 1m bar, not its 5m
    assert [(r[0], r[1]) for r in got] == [("A", "1m")]
    assert agg.until_close() == 2 * MIN - 90_000  # now B's 1m bar is the earliest
    out = ClosedBars()
    agg.close_all(out)
    assert agg.until_close() is None  # nothing open


def test_older_bucket_than_the_symbol_reached_is_late() -> None:
    agg = BarAggregator(TFS, allowed_lateness_ms=10 * MIN)
    got = run(agg, [tick("A", 1, T0 + MIN), tick("A", 2, T0 + 1000), tick("A", 3, T0 + MIN + 1)])
    assert got == [] and agg.counters.late == 1
    out = ClosedBars()
    agg.close_all(out)
    assert [(r[1], r[2], r[9]) for r in rows(agg, out)] == [("1m", T0 + MIN, 2), ("5m", T0, 2)]


def test_duplicates_never_count_twice() -> None:
    agg = BarAggregator(TFS, allowed_lateness_ms=MIN)
    batch = [tick("A", 5, T0 + 1), tick("A", 5, T0 + 1), tick("B", 5, T0 + 2), tick("A", 4, T0 + 3)]
    run(agg, batch, [tick("A", 5, T0 + 1), tick("A", 6, T0 + 4)])
    assert agg.counters.duplicates == 3
    out = ClosedBars()
    agg.close_all(out)
    trades = {(r[0], r[1]): r[9] for r in rows(agg, out)}
    assert trades == {("A", "1m"): 2, ("A", "5m"): 2, ("B", "1m"): 1, ("B", "5m"): 1}


def test_non_numeric_trade_ids_use_a_bounded_memory() -> None:
    agg = BarAggregator(TFS, allowed_lateness_ms=MIN, dedup_window=2)
    run(agg, [tick("A", "a", T0), tick("A", "b", T0), tick("A", "a", T0)], [tick("A", "c", T0)])
    assert agg.counters.duplicates == 1
    run(agg, [tick("A", "a", T0 + 1)])  # "a" fell out of the window of 2: counted again
    assert agg.counters.duplicates == 1
    assert len(agg.str_ids[0][0]) == 2


def test_intervals_without_trades_produce_no_bar() -> None:
    agg = BarAggregator(TFS, allowed_lateness_ms=0)
    got = run(agg, [tick("A", 1, T0), tick("A", 2, T0 + 3 * MIN)])
    assert [(r[1], r[2]) for r in got] == [("1m", T0)]
    out = ClosedBars()
    agg.close_all(out)
    assert [(r[1], r[2]) for r in rows(agg, out)] == [("1m", T0 + 3 * MIN), ("5m", T0)]


def test_idle_advance_closes_by_event_time() -> None:
    agg = BarAggregator(TFS, allowed_lateness_ms=5000)
    run(agg, [tick("A", 1, T0 + 1000)])
    out = ClosedBars()
    agg.advance_to(T0 + MIN + 4999, out)
    assert len(out) == 0
    agg.advance_to(T0 + MIN + 5000, out)
    assert [(r[1], r[2]) for r in rows(agg, out)] == [("1m", T0)]


def _sequence(draw: st.DrawFn) -> list[Tick]:
    n = draw(st.integers(1, 120))
    ticks = []
    t = T0
    next_id = {"A": 1, "B": 1, "C": 1}
    for _ in range(n):
        sym = draw(st.sampled_from("ABC"))
        t += draw(st.integers(-40_000, 50_000))
        tid = next_id[sym]
        if draw(st.integers(0, 9)) == 0:
            tid = max(1, tid - draw(st.integers(1, 3)))  # a duplicate / replayed id
        else:
            next_id[sym] += 1
        price = draw(st.integers(100, 200)) / 100
        qty = draw(st.integers(1, 10_000)) / 1000
        ticks.append(tick(sym, tid, t, float(price), float(qty)))
    return ticks


@st.composite
def sequences(draw: st.DrawFn) -> tuple[list[Tick], list[int], int]:
    ticks = _sequence(draw)
    cuts = sorted(set(draw(st.lists(st.integers(1, len(ticks)), max_size=10))))
    lateness = draw(st.sampled_from([0, 10_000, 60_000, 200_000]))
    return ticks, cuts, lateness


def split(ticks: list[Tick], cuts: list[int]) -> list[list[Tick]]:
    bounds = [0, *cuts, len(ticks)]
    return [ticks[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def reference(ticks: list[Tick], lateness: int) -> tuple[list[tuple[Any, ...]], int, int]:
    """The rules, one tick at a time, bars built from each bucket's accepted ticks."""
    hwm: dict[str, int] = {}
    reached: dict[str, int] = {}
    max_ts = None
    accepted: list[Tick] = []
    dups = late = 0
    for t in ticks:
        if int(t.trade_id) <= hwm.get(t.symbol, -1):
            dups += 1
            continue
        hwm[t.symbol] = int(t.trade_id)
        ms = t.ts // 1_000_000
        b = ms - ms % MIN
        wm = None if max_ts is None else max_ts - lateness
        if b < reached.get(t.symbol, b) or (wm is not None and b + MIN <= wm):
            late += 1
        else:
            accepted.append(t)
        reached[t.symbol] = max(reached.get(t.symbol, b), b)
        max_ts = ms if max_ts is None else max(max_ts, ms)
    bars = []
    for sym in sorted({t.symbol for t in accepted}):
        mine = [t for t in accepted if t.symbol == sym]
        buckets = sorted({(t.ts // 1_000_000) // MIN * MIN for t in mine})
        for b in buckets:
            ts_ = [t for t in mine if (t.ts // 1_000_000) // MIN * MIN == b]
            p = [t.price for t in ts_]
            q = [t.qty for t in ts_]
            quote = [t.price * t.qty for t in ts_]
            taker = [t.qty if t.side == "buy" else 0.0 for t in ts_]
            sums = [reduce(operator.add, x, 0.0) for x in (q, quote, taker)]
            bars.append((sym, "1m", b, p[0], max(p), min(p), p[-1], *sums[:2], len(ts_), sums[2]))
    return bars, dups, late


@settings(max_examples=150, deadline=None)
@given(sequences())
def test_same_ticks_give_same_bars_whatever_the_batches(case: tuple[Any, ...]) -> None:
    ticks, cuts, lateness = case
    whole = BarAggregator(TFS, lateness)
    parts = BarAggregator(TFS, lateness)
    out_whole, out_parts = ClosedBars(), ClosedBars()
    whole.apply(TickBatch.from_ticks(ticks), out_whole)
    for chunk in split(ticks, cuts):
        parts.apply(TickBatch.from_ticks(chunk), out_parts)
    # Bars closed before the end: the same set (emission order may differ across batches).
    assert sorted(rows(whole, out_whole)) == sorted(rows(parts, out_parts))
    whole.close_all(out_whole)
    parts.close_all(out_parts)
    a, b = sorted(rows(whole, out_whole)), sorted(rows(parts, out_parts))
    assert a == b
    ref, dups, late = reference(ticks, lateness)
    assert [r for r in a if r[1] == "1m"] == ref
    assert (whole.counters.duplicates, whole.counters.late) == (dups, late)
    # A 5m bar for every 5m bucket with a 1m bar, none for any other; each the fold of its 1m bars.
    buckets = {(r[0], r[2] - r[2] % (5 * MIN)) for r in a if r[1] == "1m"}
    assert {(r[0], r[2]) for r in a if r[1] == "5m"} == buckets
    for r in (r for r in a if r[1] == "5m"):
        ones = [x for x in a if x[0] == r[0] and x[1] == "1m" and r[2] <= x[2] < r[2] + 5 * MIN]
        assert r[9] == sum(x[9] for x in ones)
        assert r[3] == ones[0][3] and r[6] == ones[-1][6]
        assert r[4] == max(x[4] for x in ones) and r[5] == min(x[5] for x in ones)


@settings(max_examples=100, deadline=None)
@given(sequences())
def test_ticks_that_may_close_nothing_close_nothing(case: tuple[Any, ...]) -> None:
    """``may_close`` may say yes where nothing closes, never no where something does: from
    every cut of a random sequence on, the next chunks taken together (as the runner defers
    them, applied as one step or one by one) close no bar when it says no."""
    ticks, cuts, lateness = case
    agg = BarAggregator(TFS, lateness)
    chunks = split(ticks, cuts)
    said_no = 0
    for i, chunk in enumerate(chunks):
        for j in range(i, len(chunks)):
            held = [t for c in chunks[i : j + 1] for t in c]
            if agg.may_close(np.array([t.ts // 1_000_000 for t in held], np.int64)):
                break  # (and so would any longer run)
            said_no += 1
            assert run(copy.deepcopy(agg), held) == []
            assert run(copy.deepcopy(agg), *chunks[i : j + 1]) == []
        run(agg, chunk)


def test_may_close_looks_at_open_bars_and_at_the_bars_the_ticks_would_open() -> None:
    agg = BarAggregator(TFS, allowed_lateness_ms=0)

    def may_close(*t_ms: int) -> bool:
        return agg.may_close(np.array(t_ms, np.int64))

    assert not may_close()
    assert not may_close(T0 + 1000, T0 + 59_999)  # one 1m bucket: nothing to close yet
    assert may_close(T0 + 1000, T0 + MIN)  # the first opens a bar the second closes
    run(agg, [tick("A", 1, T0 + 1000)])
    assert not may_close(T0 + 2000, T0 + 59_999)
    assert may_close(T0 + 2000, T0 + MIN)  # A's bar (or, by the watermark, any) ends there
    # B's first ticks: an older bucket's bar (ending at T0 + 5) and a tick past its end.
    assert not may_close(T0 - MIN + 5)
    assert may_close(T0 - MIN + 5, T0 + 10)
    run(agg, [tick("A", 2, T0 + MIN + 1)])  # closes A's 1m bar; its 5m one stays open
    assert not may_close(T0 + 2 * MIN - 1)
    assert may_close(T0 + 2 * MIN)


@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(-(2**40), 2**61)), min_size=1),
    st.lists(st.integers(-(2**61), 2**61), min_size=6, max_size=6),
)
def test_grouped_running_max_matches_the_loop(
    items: list[tuple[int, int]], inits: list[int]
) -> None:
    items.sort(key=lambda x: x[0])
    groups = np.array([g for g, _ in items], np.int64)
    _, rank = group_runs(groups)
    v = np.array([x for _, x in items], np.int64)
    init = np.array(inits, np.int64)[groups]
    fast = prev_group_max(rank, v, init)
    slow = prev_group_max_loop(rank, v, init)
    expected = []
    for i, (g, _) in enumerate(items):
        earlier = [x for h, x in items[:i] if h == g]
        expected.append(max([inits[g], *earlier]))
    assert slow.tolist() == expected
    # The fast path may clip "nothing seen" to just below the smallest value.
    lo = int(v.min()) - 1
    assert fast.tolist() == [max(e, lo) for e in expected]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=12),
    st.integers(1, 20),
    st.randoms(use_true_random=False),
)
def test_segment_sums_are_left_folds_in_stream_order(
    lengths: list[int], short: int, rnd: Any
) -> None:
    # Values of very different magnitudes, so a different order of additions would show.
    n = sum(lengths)
    values = np.array(
        [[rnd.choice([1e-9, 0.1, 3.0, 1e6, 7e15]) * rnd.random() for _ in range(n)] for _ in "ab"]
    )
    init = np.array([[rnd.choice([0.0, 0.3, 1e12]) for _ in lengths] for _ in "ab"])
    ends = np.cumsum(lengths)
    starts = ends - np.array(lengths)
    got = segment_sums(values, starts, ends, init, short=short)
    for r in range(2):
        for g, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            expected = reduce(operator.add, values[r, a:b].tolist(), float(init[r, g]))
            assert got[r, g] == expected


def test_long_runs_of_one_bucket_sum_in_stream_order() -> None:
    """Many ticks of one bucket in one batch (past the column-wise part of the fold)."""
    qty = [0.1 * (i % 7) + 1e-7 * i + 1e3 * (i % 3 == 0) for i in range(1, 200)]
    ticks = [tick("A", i + 1, T0 + i, 100.0 + i % 5, q) for i, q in enumerate(qty)]
    agg = BarAggregator(TFS, allowed_lateness_ms=0)
    got = run(agg, ticks[:50], ticks[50:], [tick("A", 999, T0 + MIN, 1.0)])
    assert got[0][7] == reduce(operator.add, qty, 0.0)
    assert got[0][9] == len(qty)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(-5, 5)), min_size=1),
    st.lists(st.integers(-6, 5), min_size=5, max_size=5),
    st.booleans(),
)
def test_never_falls_means_nothing_is_below_its_previous_maximum(
    items: list[tuple[int, int]], inits: list[int], strict: bool
) -> None:
    items.sort(key=lambda x: x[0])
    groups = np.array([g for g, _ in items], np.int64)
    starts, rank = group_runs(groups)
    v = np.array([x for _, x in items], np.int64)
    prev = prev_group_max_loop(rank, v, np.array(inits, np.int64)[groups])
    expected = bool((v > prev).all() if strict else (v >= prev).all())
    head_init = np.array(inits, np.int64)[groups[starts]]
    assert never_falls(v, starts, head_init, strict=strict) == expected


def test_history_bars_fold_like_the_ticks_that_would_build_them() -> None:
    rng = np.random.default_rng(5)
    minutes = sorted(rng.choice(40, 25, replace=False).tolist())  # gaps: empty intervals
    prices = (100 + rng.normal(0, 1, len(minutes))).tolist()
    pairs = enumerate(zip(minutes, prices, strict=True))
    ticks = [tick("A", i, T0 + m * MIN + 7, p, 2.0) for i, (m, p) in pairs]
    from_ticks = BarAggregator(TFS, 0)
    got_ticks = run(from_ticks, ticks[:9], ticks[9:10], ticks[10:])
    out = ClosedBars()
    from_ticks.close_all(out)
    bars = [
        [T0 + m * MIN, p, p, p, p, 2.0, p * 2.0, 1, 2.0 if t.side == "buy" else 0.0]
        for m, p, t in zip(minutes, prices, ticks, strict=True)
    ]
    from_bars = BarAggregator(TFS, 0)
    mine = ClosedBars()
    from_bars.apply_bars("x", "A", bars[:9], mine)
    with pytest.raises(ValueError, match="is not after"):  # refused whole: nothing taken
        from_bars.apply_bars("x", "A", [bars[9], bars[3]], mine)
    from_bars.apply_bars("x", "A", bars[9:], mine)
    from_bars.close_all(mine)
    assert sorted(rows(from_bars, mine)) == sorted(got_ticks + rows(from_ticks, out))
    assert len(mine) == len(minutes) + len({m // 5 for m in minutes})


def test_a_coarser_bar_closes_when_its_series_comes_back_after_a_watermark_close() -> None:
    # A's 1m bar closes by watermark (B's later tick), its 5m bar stays open; A's next batch
    # opens two finest bars in the next 5m bucket: the 5m bar before them closes first.
    agg = BarAggregator(TFS, 0)
    got = run(agg, [tick("A", 1, T0 + 5), tick("B", 1, T0 + MIN + 5)])
    assert [(r[0], r[1], r[2]) for r in got] == [("A", "1m", T0)]
    got = run(agg, [tick("A", 2, T0 + 5 * MIN + 5), tick("A", 3, T0 + 6 * MIN + 5)])
    assert sorted((r[0], r[1], r[2]) for r in got) == [
        ("A", "1m", T0 + 5 * MIN),
        ("A", "5m", T0),
        ("B", "1m", T0 + MIN),
        ("B", "5m", T0),
    ]
