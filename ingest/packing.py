"""Columns to ``TickBatch`` without a ``Tick`` per trade (the writer's batch path).

``parse_many`` returns the trades of many frames as :class:`TradeColumns`; the writer packs
them, grouped by partition, into ``TICK_DTYPE`` records with a few numpy assignments
(:func:`pack`, once per offer however many partitions it touches) and keeps each partition's
share as a :class:`Slice`. At flush time a partition's consecutive slices become one
:class:`~common.contracts.TickBatch` (:func:`slices_batch`: one concatenation, one symbol
table), and what it buffered is cut into entries of at most ``batch_size`` trades
(:func:`merge_split`). With many symbols an offer touches every partition with a few trades
each; the per-partition work is then done once per flush, not once per offer. Order is
kept: trades stay in the order they were offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from common.contracts import TICK_DTYPE, TICK_RAW, TickBatch
from ingest.venues.batch import TradeColumns


class Packed(NamedTuple):
    """The trades of one ``offer_columns`` call as ``TICK_DTYPE`` records (``sym`` not set
    yet; viewed as ``TICK_RAW``) and lists, in the order the writer files them (grouped by
    partition): each partition's share is a :class:`Slice` of it, packed into a batch at
    flush time."""

    exchange: str
    records: npt.NDArray[np.void]  # TICK_RAW
    natives: list[str]
    symbols: list[str]
    trade_ids: list[str]


@dataclass(frozen=True, slots=True)
class Slice:
    """Trades ``lo:hi`` of a :class:`Packed`: one partition's share of one offer."""

    packed: Packed
    lo: int
    hi: int

    def __len__(self) -> int:
        return self.hi - self.lo


def pack(cols: TradeColumns, idx: npt.NDArray[np.intp] | None = None) -> Packed:
    """The trades of ``cols`` (those at ``idx``, in that order; all if None), packed."""
    natives, symbols, ids = cols.natives, cols.symbols, cols.trade_ids
    if idx is not None:
        pick = idx.tolist()
        natives = [natives[i] for i in pick]
        symbols = [symbols[i] for i in pick]
        ids = [ids[i] for i in pick]
    records = np.empty(len(ids), dtype=TICK_DTYPE)
    sl: npt.NDArray[np.intp] | slice = slice(None) if idx is None else idx
    records["side"] = cols.buy[sl]
    records["ts"] = cols.ts[sl]
    records["recv"] = cols.recv_ts
    records["price"] = cols.price[sl]
    records["qty"] = cols.qty[sl]
    return Packed(cols.exchange, records.view(TICK_RAW), natives, symbols, ids)


def slices_batch(slices: Sequence[Slice]) -> TickBatch:
    """The trades of ``slices`` (in order) as one batch; its symbol table holds the symbols
    of those trades in order of first appearance (as ``from_ticks`` makes it).

    Within one exchange a native symbol names one normalized symbol, so the table is built
    from the natives (from ``(exchange, native)`` when the slices mix exchanges)."""
    if len(slices) == 1:
        one = slices[0]
        pk, lo, hi = one.packed, one.lo, one.hi
        records = pk.records[lo:hi].view(TICK_DTYPE)  # this slice's own range: no copy
        ids, natives, symbols = pk.trade_ids[lo:hi], pk.natives[lo:hi], pk.symbols[lo:hi]
    else:
        records = np.concatenate([x.packed.records[x.lo : x.hi] for x in slices])
        records = records.view(TICK_DTYPE)
        ids = _joined([x.packed.trade_ids[x.lo : x.hi] for x in slices])
        natives = _joined([x.packed.natives[x.lo : x.hi] for x in slices])
        symbols = _joined([x.packed.symbols[x.lo : x.hi] for x in slices])
    exchanges = {x.packed.exchange for x in slices}
    if len(exchanges) == 1:
        ex = exchanges.pop()
        symbol_of = dict(zip(natives, symbols, strict=True))
        table = [(ex, symbol_of[n], n) for n in symbol_of]
        code: dict[object, int] = {n: i for i, n in enumerate(symbol_of)}
        keys: Sequence[object] = natives
    else:
        of_trade = [x.packed.exchange for x in slices for _ in range(len(x))]
        table = list(dict.fromkeys(zip(of_trade, symbols, natives, strict=True)))
        code = {(e, n): i for i, (e, _, n) in enumerate(table)}
        keys = list(zip(of_trade, natives, strict=True))
    records["sym"] = list(map(code.__getitem__, keys)) if len(code) > 1 else 0
    return TickBatch(table, records, ids)


def _joined(parts: list[list[str]]) -> list[str]:
    return list(chain.from_iterable(parts))


def columns_batch(cols: TradeColumns, idx: npt.NDArray[np.intp] | None = None) -> TickBatch:
    """The trades of ``cols`` (those at ``idx``, in order; all if None) as one batch."""
    packed = pack(cols, idx)
    return slices_batch([Slice(packed, 0, len(packed.trade_ids))])


def segment_batches(segments: Sequence[TickBatch | Slice]) -> list[TickBatch]:
    """A partition's segments (in order) as batches: each run of consecutive slices packed
    into one batch, batches kept as they are."""
    out: list[TickBatch] = []
    run: list[Slice] = []
    for seg in segments:
        if isinstance(seg, Slice):
            run.append(seg)
            continue
        if run:
            out.append(slices_batch(run))
            run = []
        out.append(seg)
    if run:
        out.append(slices_batch(run))
    return out


def merge_split(batches: list[TickBatch], size: int) -> list[TickBatch]:
    """``batches`` (in order) re-cut into batches of at most ``size`` trades, each with a
    symbol table of only the symbols it holds."""
    if len(batches) == 1 and len(batches[0]) <= size:
        return batches
    merged = TickBatch.concat(batches)
    records, symbols, ids = merged.records, merged.symbols, merged.trade_ids
    out = []
    for i in range(0, len(ids), size):
        rec = records[i : i + size].copy()
        used, inverse = np.unique(rec["sym"], return_inverse=True)
        rec["sym"] = inverse
        out.append(TickBatch([symbols[j] for j in used.tolist()], rec, ids[i : i + size]))
    return out
