"""Batch cutting, without Redis: ticks and columns in, ``TickBatch`` entries per partition out.

``BatchCutter`` is the tick writer's buffer (``ingest.writer`` is the async shell that
flushes it). Producers offer ticks (:meth:`BatchCutter.offer`, one frame's worth) or trades
in columns (:meth:`BatchCutter.offer_columns`, ``parse_many``'s batch path: packed with
numpy by ``ingest.packing``, no ``Tick`` per trade); both are grouped by partition
(``partition_of(exchange, symbol, P)``), and a partition's ticks and columns keep the order
they were offered in. :meth:`take` hands everything buffered to the flusher and
:meth:`batches` cuts it into entries of at most ``batch_size`` trades each.

The buffer is bounded by ``max_pending`` ticks, counted from the offer until the flusher
reports them written (:meth:`done`): an offer is always accepted, its answer says whether
there is room for more (False: the producer must wait). ``wake`` is called when the
flusher has something to do: the first tick after an empty buffer (its latency clock
starts, ``first_at``), the first full batch, and a *boundary tick*.

Boundary ticks (``boundary_ns``, ``INGEST_BOUNDARY_FLUSH_MS``): the first tick of a
partition whose exchange time lies in a later interval of that length than any tick of the
partition before it is the tick that closes the partition's bars (the detectors close a bar
on the first tick past its end, and bar boundaries are whole seconds). It sets ``urgent``:
the flusher writes at once instead of waiting out the latency bound, so a bar closes ~one
flush interval sooner, for the price of one more (small) entry per partition and interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from common.contracts import Tick, TickBatch
from common.names import partition_of
from ingest.packing import Slice, merge_split, pack, segment_batches
from ingest.venues.batch import TradeColumns

#: What :meth:`BatchCutter.take` hands over: per partition its ticks (the per-frame path)
#: and its segments (the batch path, and ticks offered before a partition's columns).
Cut = tuple[dict[int, list[Tick]], dict[int, list[TickBatch | Slice]]]


def _nothing() -> None:
    pass


class BatchCutter:
    """Buffers ticks per partition and cuts them into ``TickBatch`` entries."""

    def __init__(
        self,
        partitions: int,
        *,
        batch_size: int,
        max_pending: int,
        wake: Callable[[], None] = _nothing,
        clock: Callable[[], float] = time.monotonic,
        boundary_ns: int = 0,
    ) -> None:
        if batch_size < 1 or max_pending < batch_size:
            raise ValueError("need 1 <= batch_size <= max_pending")
        self.partitions = partitions
        self.batch_size = batch_size
        self.max_pending = max_pending
        self._wake = wake
        self._clock = clock
        self._buffers: dict[int, list[Tick]] = {}
        # Per partition, its shares of offered columns (offer_columns), packed into batches
        # at flush time; a partition's ticks offered earlier are moved in first (as a
        # batch), so segments always precede _buffers[p].
        self._segments: dict[int, list[TickBatch | Slice]] = {}
        self._partition_cache: dict[tuple[str, str], int] = {}  # offer's, per tick
        self._partition_tables: dict[str, dict[str, int]] = {}  # offer_columns', per exchange
        self.pending = 0  # ticks buffered or taken and not yet reported done
        self.buffered = 0  # ticks buffered, not yet taken
        self.first_at: float | None = None  # clock time of the oldest buffered tick
        self.full = False  # pending reached max_pending: producers wait
        self.closed = False  # offers are refused (the writer is closing)
        self._batch_signalled = False  # wake was called for the current full batch
        self.boundary_ns = boundary_ns  # 0: no boundary flushes
        self._interval: dict[int, int] = {}  # per partition, the latest interval it reached
        self.urgent = False  # a boundary tick is buffered: flush now

    # --- producers -----------------------------------------------------------------
    def offer(self, ticks: Iterable[Tick]) -> bool:
        """Buffer ``ticks`` (always accepted); False when the buffer is now at its bound and
        the caller must wait before offering more. Memory stays within ``max_pending``
        plus one offer per producer."""
        if self.closed:
            raise RuntimeError("TickWriter is closed")
        # Inlined grouping by partition (this runs once per frame).
        buffers, cache = self._buffers, self._partition_cache
        n = 0
        latest: dict[int, int] = {}  # per partition, its latest tick time in this offer
        for t in ticks:
            key = (t.exchange, t.symbol)
            p = cache.get(key)
            if p is None:
                p = cache[key] = partition_of(t.exchange, t.symbol, self.partitions)
            buf = buffers.get(p)
            if buf is None:
                buffers[p] = [t]
            else:
                buf.append(t)
            if t.ts > latest.get(p, -1):
                latest[p] = t.ts
            n += 1
        if self.boundary_ns:
            self._reached(latest.keys(), latest.values())
        return self._added(n) if n else not self.full

    def offer_columns(self, cols: TradeColumns) -> bool:
        """``offer`` for trades in columns (``parse_many``): packed into ``TICK_DTYPE``
        records with numpy, no ``Tick`` per trade; each partition's share is kept as a slice
        of them and becomes ``TickBatch`` entries when cut. Same return value."""
        if self.closed:
            raise RuntimeError("TickWriter is closed")
        n = cols.size
        if not n:
            return not self.full
        parts = self._partitions_of(cols.exchange, cols.symbols)
        if parts.count(parts[0]) == n:
            if self.boundary_ns:
                self._reached(parts[:1], [int(cols.ts.max())])
            self._add_segment(parts[0], Slice(pack(cols), 0, n))
            return self._added(n)
        # One stable sort groups the trades by partition (order kept within each); each
        # partition's share is a slice of one packed copy.
        of_trade = np.array(parts, dtype=np.int64)
        order = np.argsort(of_trade, kind="stable")
        packed = pack(cols, order)
        grouped = of_trade[order]
        cuts = (np.flatnonzero(grouped[1:] != grouped[:-1]) + 1).tolist()
        present = grouped[[0, *cuts]].tolist()
        if self.boundary_ns:
            latest = np.maximum.reduceat(cols.ts[order], [0, *cuts]).tolist()
            self._reached(present, latest)
        for p, lo, hi in zip(present, [0, *cuts], [*cuts, n], strict=True):
            self._add_segment(p, Slice(packed, lo, hi))
        return self._added(n)

    def _reached(self, partitions: Iterable[int], latest_ts: Iterable[int]) -> None:
        """Each of ``partitions`` got ticks up to ``latest_ts`` (ns): a later interval than
        the partition had reached makes this a boundary offer (see the module docstring)."""
        reached = self._interval
        for p, ts in zip(partitions, latest_ts, strict=True):
            interval = ts // self.boundary_ns
            if interval > reached.get(p, interval - 1):
                if p in reached and not self.urgent:
                    self.urgent = True
                    self._wake()
                reached[p] = interval

    def _added(self, n: int) -> bool:
        """Account for ``n`` ticks just buffered; the value ``offer`` returns."""
        self.pending += n
        self.buffered += n
        # Wake the flusher only to start the latency timer or once for a full batch, not
        # on every offer (this runs per frame: even an Event.set call shows).
        if self.first_at is None:
            self.first_at = self._clock()
            self._wake()
        elif self.buffered >= self.batch_size and not self._batch_signalled:
            self._batch_signalled = True
            self._wake()
        if self.pending >= self.max_pending:
            self.full = True
        return not self.full

    def _partitions_of(self, exchange: str, symbols: list[str]) -> list[int]:
        """Each trade's partition (a table per exchange: one dict lookup a trade)."""
        table = self._partition_tables.get(exchange)
        if table is None:
            table = self._partition_tables[exchange] = {}
        try:
            return list(map(table.__getitem__, symbols))
        except KeyError:  # symbols not seen before
            for sym in dict.fromkeys(symbols):
                if sym not in table:
                    table[sym] = partition_of(exchange, sym, self.partitions)
            return list(map(table.__getitem__, symbols))

    def _add_segment(self, p: int, segment: Slice) -> None:
        segments = self._segments.get(p)
        if segments is None:
            segments = self._segments[p] = []
        ticks = self._buffers.pop(p, None)
        if ticks:  # offered before these columns: keep them first
            segments.append(TickBatch.from_ticks(ticks))
        segments.append(segment)

    # --- the flusher ---------------------------------------------------------------
    @property
    def empty(self) -> bool:
        """Nothing buffered (taken ticks may still be in flight: see ``pending``)."""
        return not self._buffers and not self._segments

    @property
    def flush_due(self) -> bool:
        """A full batch is buffered: a producer that never awaits should yield now."""
        return self.buffered >= self.batch_size

    def take(self) -> Cut:
        """Everything buffered, for one flush; the buffer starts over (``pending`` keeps
        counting the taken ticks until :meth:`done`)."""
        cut = self._buffers, self._segments
        self._buffers, self._segments = {}, {}
        self.buffered = 0
        self._batch_signalled = False
        self.first_at = None
        self.urgent = False
        return cut

    def done(self, n: int) -> bool:
        """``n`` taken ticks are written (or given up): True when there is room again."""
        self.pending -= n
        if self.pending < self.max_pending:
            self.full = False
        return not self.full

    def drop(self) -> int:
        """Give up everything buffered or taken (shutdown grace exceeded): how many."""
        n = self.pending
        self._buffers.clear()
        self._segments.clear()
        self.pending = self.buffered = 0
        self.full = False
        return n

    def batches(self, cut: Cut) -> list[tuple[int, TickBatch]]:
        """A cut as entries: per partition, its trades in offer order in batches of at most
        ``batch_size``, each with a symbol table of only the symbols it holds."""
        buffers, segments = cut
        size = self.batch_size
        out: list[tuple[int, TickBatch]] = []
        for p in {**segments, **buffers}:
            ticks = buffers.get(p, [])
            parts = segments.get(p)
            if parts is None:  # ticks only (the per-frame path)
                batches = [TickBatch.from_ticks(ticks[i : i + size])
                           for i in range(0, len(ticks), size)]  # fmt: skip
            else:
                batches = segment_batches(parts)
                if ticks:
                    batches.append(TickBatch.from_ticks(ticks))
                batches = merge_split(batches, size)
            out += [(p, batch) for batch in batches]
        return out


def cut_size(cut: Cut) -> int:
    """The number of trades in a cut."""
    buffers, segments = cut
    return sum(map(len, buffers.values())) + sum(len(b) for v in segments.values() for b in v)
