"""Columns to ``TickBatch`` without a ``Tick`` per trade (the writer's batch path).

``parse_many`` returns the trades of many frames as :class:`TradeColumns`; the writer turns
each partition's share of them straight into the ``TICK_DTYPE`` records of a
:class:`~common.contracts.TickBatch` with a few numpy assignments (:func:`columns_batch`),
then cuts what a partition buffered into entries of at most ``batch_size`` trades
(:func:`merge_split`). Order is kept: trades stay in the order they were offered.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.contracts import TICK_DTYPE, TickBatch
from ingest.exchanges.batch import TradeColumns


def columns_batch(cols: TradeColumns, idx: npt.NDArray[np.intp] | None = None) -> TickBatch:
    """The trades of ``cols`` (those at ``idx``, in order; all if None) as one batch.

    Within one exchange a native symbol names one normalized symbol, so the symbol table is
    built from the distinct natives, in order of first appearance (as ``from_ticks`` does).
    """
    natives, symbols, ids = cols.natives, cols.symbols, cols.trade_ids
    if idx is not None:
        pick = idx.tolist()
        natives = [natives[i] for i in pick]
        symbols = [symbols[i] for i in pick]
        ids = [ids[i] for i in pick]
    symbol_of = dict(zip(natives, symbols, strict=True))
    code = {native: i for i, native in enumerate(symbol_of)}
    ex = cols.exchange
    records = np.empty(len(ids), dtype=TICK_DTYPE)
    records["sym"] = list(map(code.__getitem__, natives)) if len(code) > 1 else 0
    sl: npt.NDArray[np.intp] | slice = slice(None) if idx is None else idx
    records["side"] = cols.buy[sl]
    records["ts"] = cols.ts[sl]
    records["recv"] = cols.recv_ts
    records["price"] = cols.price[sl]
    records["qty"] = cols.qty[sl]
    return TickBatch([(ex, symbol_of[n], n) for n in symbol_of], records, ids)


def merge_split(batches: list[TickBatch], size: int) -> list[TickBatch]:
    """``batches`` (in order) re-cut into batches of at most ``size`` trades, each with a
    symbol table of only the symbols it holds."""
    if len(batches) == 1 and len(batches[0]) <= size:
        return batches
    table: dict[tuple[str, str, str], int] = {}
    parts = []
    ids: list[str] = []
    for b in batches:
        remap = np.array([table.setdefault(s, len(table)) for s in b.symbols], dtype=np.uint16)
        rec = b.records.copy()
        if len(rec):
            rec["sym"] = remap[rec["sym"]]
        parts.append(rec)
        ids += b.trade_ids
    records = np.concatenate(parts)
    symbols = list(table)
    out = []
    for i in range(0, len(ids), size):
        rec = records[i : i + size].copy()
        used, inverse = np.unique(rec["sym"], return_inverse=True)
        rec["sym"] = inverse
        out.append(TickBatch([symbols[j] for j in used.tolist()], rec, ids[i : i + size]))
    return out
