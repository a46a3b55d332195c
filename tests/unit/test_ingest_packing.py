"""The writer's batch path packing (``BatchCutter.offer_columns`` → ``ingest.packing``):
whatever mix of per-tick offers and column offers, of many symbols over many partitions and
two exchanges, the entries a flush makes hold each partition's ticks in the order they were
offered, at most ``batch_size`` a batch, each with a table of exactly the symbols it holds.
No Redis: the cutter is the writer's pure part."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from common.contracts import Tick, TickBatch
from common.names import partition_of
from ingest.cutter import BatchCutter
from ingest.packing import Slice, pack, segment_batches, slices_batch
from ingest.venues.batch import TradeColumns

PARTITIONS = 8


def _columns(ticks: list[Tick]) -> TradeColumns:
    """``ticks`` (one exchange, one receive time) as ``parse_many`` would return them."""
    return TradeColumns(
        ticks[0].exchange,
        [t.symbol for t in ticks],
        [t.native_symbol for t in ticks],
        [t.trade_id for t in ticks],
        np.array([int(t.trade_id) for t in ticks], dtype=np.int64),
        np.array([t.price for t in ticks]),
        np.array([t.qty for t in ticks]),
        np.array([t.ts for t in ticks], dtype=np.int64),
        np.array([t.side == "buy" for t in ticks]),
        ticks[0].recv_ts,
    )


@st.composite
def _offers(draw: st.DrawFn) -> list[tuple[bool, list[Tick]]]:
    """Offers in order: (in columns?, ticks); a column offer is of one exchange."""
    n_symbols = draw(st.integers(min_value=1, max_value=60))
    offers = []
    tid = 0
    for k in range(draw(st.integers(min_value=1, max_value=12))):
        ex = draw(st.sampled_from(["binance", "kraken"]))
        ticks = []
        for _ in range(draw(st.integers(min_value=1, max_value=40))):
            i = draw(st.integers(min_value=0, max_value=n_symbols - 1))
            tid += 1
            side = "buy" if tid % 3 else "sell"
            ticks.append(Tick(ex, f"S{i}-USD", f"S{i}USD", str(tid), 1.0 + tid, 0.5, side,
                              tid * 1000, k))  # fmt: skip
        offers.append((draw(st.booleans()), ticks))
    return offers


@settings(max_examples=150, deadline=None)
@given(_offers(), st.integers(min_value=1, max_value=50))
def test_flushed_entries_keep_each_partitions_ticks_in_offer_order(
    offers: list[tuple[bool, list[Tick]]], batch_size: int
) -> None:
    cutter = BatchCutter(PARTITIONS, batch_size=batch_size, max_pending=10_000)
    expected: dict[int, list[Tick]] = {}
    for in_columns, ticks in offers:
        if in_columns:
            cutter.offer_columns(_columns(ticks))
        else:
            cutter.offer(ticks)
        for t in ticks:
            expected.setdefault(partition_of(t.exchange, t.symbol, PARTITIONS), []).append(t)
    got: dict[int, list[Tick]] = {}
    for p, cut in cutter.batches(cutter.take()):
        batch = TickBatch.decode(cut.encode())  # as the entry stores it
        assert 1 <= len(batch) <= batch_size
        held = {(t.exchange, t.symbol, t.native_symbol) for t in batch}
        assert len(batch.symbols) == len(held) and set(batch.symbols) == held
        got.setdefault(p, []).extend(batch)
    assert got == expected


def test_slices_of_one_offer_and_of_several_pack_like_from_ticks() -> None:
    ticks = [
        Tick("binance", f"S{i % 5}-USD", f"S{i % 5}USD", str(i), 1.0 + i, 2.0, "sell", i, 9)
        for i in range(30)
    ]
    order = np.argsort(np.array([i % 5 for i in range(30)]), kind="stable")
    packed = pack(_columns(ticks), order)
    by_symbol = [ticks[i] for i in order.tolist()]
    one = slices_batch([Slice(packed, 6, 18)])  # S1 and S2
    assert list(one) == by_symbol[6:18]
    assert one.records.tobytes() == TickBatch.from_ticks(by_symbol[6:18]).records.tobytes()
    other = pack(_columns([t._replace(exchange="kraken", recv_ts=3) for t in ticks[:4]]))
    parts: list[Any] = [Slice(packed, 0, 3), TickBatch.from_ticks(ticks[:2]),
                        Slice(packed, 24, 30), Slice(other, 1, 4)]  # fmt: skip
    batches = segment_batches(parts)
    assert len(batches) == 3
    want = [*by_symbol[0:3], *ticks[:2], *by_symbol[24:30], *_kraken(ticks[1:4])]
    assert [t for b in batches for t in b] == want
    assert batches[2].symbols == TickBatch.from_ticks(want[5:]).symbols


def _kraken(ticks: list[Tick]) -> list[Tick]:
    return [t._replace(exchange="kraken", recv_ts=3) for t in ticks]
