"""Which consecutive ``ticks:{p}`` entries a partition runner applies as one batch, and how
long a caught-up runner lets the next ones gather."""

from __future__ import annotations

from common.contracts import Tick, TickBatch
from common.stream_consumer import Entry
from detectors.runner import coalesce_delay_ms, merge_run_end


def _entry(n: int, symbols: int = 1) -> Entry:
    ticks = [
        Tick("binance", f"S{i % symbols}", f"S{i % symbols}", str(i), 1.0, 1.0, "buy", i, i)
        for i in range(n)
    ]
    return Entry("ticks:0", f"1-{n}", TickBatch.from_ticks(ticks).encode())


def test_entries_merge_up_to_the_tick_limit() -> None:
    entries = [_entry(3) for _ in range(10)]
    assert merge_run_end(entries, 0, limit=9) == 3
    assert merge_run_end(entries, 3, limit=10) == 6  # a fourth would pass the limit
    assert merge_run_end(entries, 0, limit=1000) == 10
    assert merge_run_end(entries, 9, limit=1000) == 10


def test_an_entry_larger_than_the_limit_runs_alone() -> None:
    entries = [_entry(3), _entry(50), _entry(3)]
    assert merge_run_end(entries, 0, limit=20) == 1
    assert merge_run_end(entries, 1, limit=20) == 2


def test_symbol_tables_count_against_the_limit() -> None:
    entries = [_entry(6, symbols=6) for _ in range(4)]
    assert merge_run_end(entries, 0, limit=13) == 2  # 12 symbols, not 18


def test_an_entry_that_does_not_say_its_size_runs_alone() -> None:
    entries = [_entry(3), Entry("ticks:0", "1-9", {b"x": b"1"}), _entry(3), _entry(3)]
    assert merge_run_end(entries, 0) == 1
    assert merge_run_end(entries, 1) == 2
    assert merge_run_end(entries, 2) == 4
    assert merge_run_end([Entry("ticks:0", "1-9", {})], 0) == 1


def test_a_caught_up_runner_waits_until_the_last_window_before_a_close() -> None:
    window = 50
    assert coalesce_delay_ms(10_000, window) == window  # far from any close: a whole window
    assert coalesce_delay_ms(80, window) == 30  # wakes with a window left before the close
    assert coalesce_delay_ms(window, window) == 0  # inside the last window: reads at once
    assert coalesce_delay_ms(3, window) == 0
    assert coalesce_delay_ms(-5, window) == 0  # due already (the next tick closes it)
    assert coalesce_delay_ms(None, window) == 0  # no open bar: nothing to estimate from
    assert coalesce_delay_ms(10_000, 0) == 0  # COALESCE_MS=0: always at once
