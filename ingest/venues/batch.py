"""Batch parsing: many frames in, trades out in columns (no ``Tick`` per trade).

``ExchangeAdapter.parse`` builds one validated ``Tick`` and one ``ParseResult`` per frame;
at a million frames a second those two tuples cost more than decoding the JSON. A reader
that holds several frames at once calls ``parse_many(frames, recv_ts_ns)`` instead:

* when **every** frame is a plain live trade frame that the adapter's fast path accepts,
  the trades come back as one :class:`TradeColumns` (numpy arrays for the numbers, lists
  for the strings), validated with the same bounds as ``parse`` but over whole arrays;
* otherwise — any control frame, any bad input, anything unusual — the batch falls back to
  ``parse`` frame by frame (:func:`parse_each`), so every ``BadInput`` is attributed to its
  own frame with the same reason ``parse`` gives. The fallback is the slow path by design:
  bad frames are rare, and exactness matters more than their speed.

``TradeColumns.ticks()`` materializes the ``Tick`` tuples ``parse`` would have returned
(equal field by field), for consumers that want them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from common.contracts import Tick
from common.errors import BadInput
from ingest.venues.base import ParseResult

_new: Final = tuple.__new__


class TradeColumns(NamedTuple):
    """The trades of a batch of frames, oldest first, one entry per trade in every column."""

    exchange: str
    symbols: list[str]  # normalized
    natives: list[str]
    trade_ids: list[str]
    seq: npt.NDArray[np.int64]  # the trade ids as integers (sequential exchanges)
    price: npt.NDArray[np.float64]
    qty: npt.NDArray[np.float64]
    ts: npt.NDArray[np.int64]  # exchange trade time, ns
    buy: npt.NDArray[np.bool_]  # the taker bought
    recv_ts: int

    @property
    def size(self) -> int:
        """Number of trades (``len()`` of a NamedTuple is its field count)."""
        return len(self.trade_ids)

    def ticks(self) -> list[Tick]:
        """The trades as ``Tick`` tuples, exactly as ``parse`` returns them."""
        ex, recv = self.exchange, self.recv_ts
        return [
            _new(Tick, (ex, sym, nat, tid, p, q, "buy" if b else "sell", ts, recv))
            for sym, nat, tid, p, q, b, ts in zip(
                self.symbols,
                self.natives,
                self.trade_ids,
                self.price.tolist(),
                self.qty.tolist(),
                self.buy.tolist(),
                self.ts.tolist(),
                strict=True,
            )
        ]


class ParsedBatch(NamedTuple):
    """The outcome of ``parse_many``: either ``columns`` (every frame was a trade frame of
    the fast path; ``outcomes`` is empty) or, per frame in order, what ``parse`` returned
    or the ``BadInput`` it raised (``columns`` is None)."""

    columns: TradeColumns | None
    outcomes: Sequence[ParseResult | BadInput] = ()

    def ticks(self) -> list[Tick]:
        """Every trade of the batch as ``Tick`` tuples (bad frames contribute none)."""
        if self.columns is not None:
            return self.columns.ticks()
        return [t for r in self.outcomes if isinstance(r, ParseResult) for t in r.ticks]


def parse_each(
    parse: Callable[[str | bytes, int], ParseResult],
    frames: Sequence[str | bytes],
    recv_ts_ns: int,
) -> ParsedBatch:
    """The exact path: ``parse`` per frame, each ``BadInput`` kept with its frame."""
    outcomes: list[ParseResult | BadInput] = []
    for frame in frames:
        try:
            outcomes.append(parse(frame, recv_ts_ns))
        except BadInput as e:
            outcomes.append(e)
    return ParsedBatch(None, outcomes)


def in_bounds(values: npt.NDArray[np.float64], upper: float) -> bool:
    """Every value finite, > 0 and < ``upper`` (NaN fails every comparison)."""
    return bool(((values > 0.0) & (values < upper)).all())
