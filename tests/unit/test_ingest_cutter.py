"""The tick writer's buffer (``ingest.cutter.BatchCutter``) without Redis: the bound and its
answers, when it wakes the flusher, what a flush takes, and entries cut to ``batch_size``
(the order of a mix of ticks and columns: ``test_ingest_packing``)."""

from __future__ import annotations

import pytest

from common.contracts import Tick
from common.names import partition_of
from ingest.cutter import BatchCutter, cut_size
from tests.unit.test_ingest_packing import _columns


def _ticks(n: int, symbol: str = "BTC-USDT", start: int = 1) -> list[Tick]:
    native = symbol.replace("-", "")
    return [Tick("binance", symbol, native, str(i), 100.0, 0.5, "buy", i, 0)
            for i in range(start, start + n)]  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_offers_answer_whether_there_is_room_and_done_makes_room() -> None:
    cutter = BatchCutter(4, batch_size=2, max_pending=5)
    assert cutter.offer(_ticks(3))
    assert not cutter.offer(_ticks(2, start=4))  # at the bound: the producer must wait
    assert cutter.full and cutter.pending == 5
    assert not cutter.offer(_ticks(1, start=6))  # still accepted: nothing is dropped
    cut = cutter.take()
    assert cut_size(cut) == 6 and cutter.empty and cutter.pending == 6
    assert not cutter.done(0)
    assert cutter.done(6) and not cutter.full and cutter.pending == 0
    assert cutter.offer(())  # an empty offer only answers


def test_the_flusher_is_woken_for_the_first_tick_and_once_per_full_batch() -> None:
    woken: list[float] = []
    clock = Clock()
    cutter = BatchCutter(4, batch_size=3, max_pending=100, clock=clock,
                         wake=lambda: woken.append(clock.now))  # fmt: skip
    cutter.offer(_ticks(1))
    assert woken == [100.0] and cutter.first_at == 100.0  # the latency clock starts
    clock.now = 101.0
    cutter.offer(_ticks(1, start=2))
    assert len(woken) == 1 and not cutter.flush_due
    cutter.offer(_ticks(1, start=3))
    cutter.offer(_ticks(1, start=4))
    assert woken == [100.0, 101.0] and cutter.flush_due  # once for the full batch
    cutter.take()
    assert cutter.first_at is None and not cutter.flush_due
    clock.now = 102.0
    cutter.offer(_ticks(1, start=5))
    assert woken[-1] == 102.0 and cutter.first_at == 102.0


def test_entries_hold_at_most_batch_size_ticks_in_offer_order_per_partition() -> None:
    cutter = BatchCutter(8, batch_size=4, max_pending=100)
    btc, eth = _ticks(10), _ticks(3, "ETH-USDT")
    for i in range(10):
        cutter.offer(btc[i : i + 1] + eth[i : i + 1])
    got: dict[int, list[list[Tick]]] = {}
    for p, batch in cutter.batches(cutter.take()):
        got.setdefault(p, []).append(list(batch))
    assert [len(b) for b in got[partition_of("binance", "BTC-USDT", 8)]] == [4, 4, 2]
    assert [t for b in got[partition_of("binance", "BTC-USDT", 8)] for t in b] == btc
    assert [t for b in got[partition_of("binance", "ETH-USDT", 8)] for t in b] == eth


def test_drop_gives_up_everything_and_a_closed_cutter_refuses_offers() -> None:
    cutter = BatchCutter(4, batch_size=2, max_pending=4)
    cutter.offer(_ticks(5))
    assert cutter.full and cutter.drop() == 5
    assert cutter.empty and cutter.pending == 0 and not cutter.full
    cutter.closed = True
    with pytest.raises(RuntimeError, match="closed"):
        cutter.offer(_ticks(1))
    with pytest.raises(ValueError, match="batch_size"):
        BatchCutter(4, batch_size=10, max_pending=5)


SECOND = 1_000_000_000


def _at(symbol: str, trade_id: int, ts: int) -> Tick:
    return Tick("binance", symbol, symbol.replace("-", ""), str(trade_id), 1.0, 1.0, "buy", ts, 0)


@pytest.mark.parametrize("columns", [False, True], ids=["ticks", "columns"])
def test_the_first_tick_of_a_partition_in_a_new_second_makes_the_flush_urgent(
    columns: bool,
) -> None:
    woken: list[int] = []
    cutter = BatchCutter(4, batch_size=100, max_pending=1000, wake=lambda: woken.append(1),
                         boundary_ns=SECOND)  # fmt: skip
    a, b = "BTC-USDT", "ETH-USDT"
    assert partition_of("binance", a, 4) != partition_of("binance", b, 4)

    def offer(ticks: list[Tick]) -> None:
        if columns:
            cutter.offer_columns(_columns(ticks))
        else:
            cutter.offer(ticks)

    offer([_at(a, 1, 5 * SECOND + 10), _at(b, 1, 5 * SECOND + 20)])  # first seen: no boundary
    assert not cutter.urgent and woken == [1]  # only the latency clock started
    offer([_at(a, 2, 5 * SECOND + 900_000_000), _at(b, 2, 5 * SECOND + 999_999_999)])
    assert not cutter.urgent  # the same second
    offer([_at(b, 3, 5 * SECOND + 999_999_999), _at(a, 3, 6 * SECOND)])  # a's partition crosses
    assert cutter.urgent and woken == [1, 1]
    offer([_at(b, 4, 6 * SECOND + 1)])  # b's crossing while urgent: no second wake
    assert cutter.urgent and woken == [1, 1]
    cutter.take()
    assert not cutter.urgent
    offer([_at(a, 4, 6 * SECOND + 5)])  # a reached second 6 already: nothing to hurry
    assert not cutter.urgent
    offer([_at(b, 5, 8 * SECOND)])  # a jump of several seconds is a boundary too
    assert cutter.urgent


def test_without_a_boundary_length_no_tick_is_urgent() -> None:
    cutter = BatchCutter(4, batch_size=100, max_pending=1000)
    cutter.offer([_at("BTC-USDT", 1, SECOND)])
    cutter.offer([_at("BTC-USDT", 2, 9 * SECOND)])
    assert not cutter.urgent
