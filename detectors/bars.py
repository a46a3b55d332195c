"""Tick -> OHLCV bar aggregation for one partition, for every timeframe at once (pure).

Rules (docs/design.md repeats them, section Bars):

* **Event time.** A tick belongs to the bucket of its exchange trade time (``ts``, ns, floored
  to ms). Buckets are UTC epoch-aligned (:mod:`detectors.timeframes`).
* **Closing.** A symbol's bar closes when a tick of that symbol arrives in a later bucket,
  or when the partition's *watermark* passes the bar's end. The watermark is the highest
  event time of any (non-duplicate) tick seen so far in the partition minus
  ``allowed_lateness_ms``. It depends only on the sequence of ticks, never on when they are
  read, so bars do not depend on batch boundaries, replay speed or restarts.
  In live mode the worker may also raise the watermark while a whole partition is idle
  (:meth:`BarAggregator.advance_to`, fed with an event time extrapolated from the wall
  clock); replay never does. Such an idle close gives the same bars as replay unless a
  tick later arrives whose event time lies in a bucket the idle close already closed (i.e.
  the partition was silent for longer than the lateness and then received old trades).
* **Late ticks.** A tick whose finest bucket is older than a bucket its symbol already
  reached, or whose finest bucket already ended at or before the watermark, is late: it is
  counted and dropped (for every timeframe; timeframes nest, so late for the finest bucket
  is the same as late for any).
* **Duplicates.** Same exchange, symbol and trade id never count twice. Numeric ids (all an
  exchange's ids parse as integers, e.g. Binance) are compared with the symbol's highest id
  so far: an id at or below it is a duplicate (exchanges publish a symbol's trades in id
  order, so this is exact with O(1) memory per symbol). Other ids are remembered in a set
  of the symbol's last ``dedup_window`` ids (bounded memory).
* **Empty intervals produce no bar.** A bucket without trades has no bar (no flat bar
  carrying the previous close); indicators therefore advance per traded bar, as TA-Lib does
  on the series of bars that exist.
* **Sums.** Volume, quote volume and taker-buy volume of the finest bar are added tick by
  tick in stream order; a coarser bar adds up its finest bars in order. The float results
  are therefore bit-identical however the ticks were batched.

Speed: the per-tick work is numpy over the whole batch (decode, symbol lookup, dedup, late
detection, grouping); Python loops run once per (symbol, finest bucket) segment of a batch.
"""

from __future__ import annotations

import operator
from collections import deque
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import numpy as np
import numpy.typing as npt

from common.contracts import TickBatch
from detectors.group_runs import group_runs, prev_group_max
from detectors.timeframes import Timeframe

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
NONE = -(2**62)  # "no value" for int64 times and ids (room left for arithmetic)
_END = 2**62


@dataclass(slots=True)
class ClosedBars:
    """Bars closed by one step, as columns (``sid`` = series index, ``tf`` = timeframe index)."""

    sid: list[int] = field(default_factory=list)
    tf: list[int] = field(default_factory=list)
    open_time: list[int] = field(default_factory=list)
    open: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)
    volume: list[float] = field(default_factory=list)
    quote: list[float] = field(default_factory=list)
    trades: list[int] = field(default_factory=list)
    taker: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sid)

    def add(self, sid: int, tf: int, bar: list[Any]) -> None:
        self.sid.append(sid)
        self.tf.append(tf)
        self.open_time.append(bar[0])
        self.open.append(bar[1])
        self.high.append(bar[2])
        self.low.append(bar[3])
        self.close.append(bar[4])
        self.volume.append(bar[5])
        self.quote.append(bar[6])
        self.trades.append(bar[7])
        self.taker.append(bar[8])


@dataclass(slots=True)
class Counters:
    """Cumulative tick counts of a partition (exposed as metrics)."""

    ticks: int = 0
    duplicates: int = 0
    late: int = 0


class BarAggregator:
    """Open bars and closing logic of all series of one partition.

    A bar in progress is a list ``[open_time, open, high, low, close, volume, quote_volume,
    trades, taker_buy_volume]``. ``open_bars[sid][0]`` is the finest timeframe's bar (fed by
    ticks); ``open_bars[sid][t>0]`` holds the coarser bar with the *finished* finest bars of
    its bucket folded in.
    """

    def __init__(
        self, timeframes: tuple[Timeframe, ...], allowed_lateness_ms: int, dedup_window: int = 4096
    ) -> None:
        self.timeframes = timeframes
        self.ms = [t.ms for t in timeframes]
        self.lateness = allowed_lateness_ms
        self.dedup_window = dedup_window
        self.series: list[tuple[str, str]] = []
        self.index: dict[tuple[str, str], int] = {}
        self.open_bars: list[list[list[Any] | None]] = []
        self.id_hwm: I64 = np.zeros(0, np.int64)  # highest numeric trade id per series
        self.fine_max: I64 = np.zeros(0, np.int64)  # latest finest bucket reached per series
        self.next_end: I64 = np.zeros(0, np.int64)  # earliest end among the series' open bars
        self.str_ids: dict[int, tuple[deque[str], set[str]]] = {}
        self.max_ts = NONE  # highest event time (ms) of the partition
        self.forced_wm = NONE  # watermark raised by the live idle timer
        self.counters = Counters()

    # --- series registry ---------------------------------------------------------------
    def sid_of(self, exchange: str, symbol: str) -> int:
        key = (exchange, symbol)
        sid = self.index.get(key)
        if sid is None:
            sid = len(self.series)
            self.index[key] = sid
            self.series.append(key)
            self.open_bars.append([None] * len(self.ms))
            if sid >= len(self.id_hwm):
                cap = max(16, 2 * len(self.id_hwm))
                self.id_hwm = _grow(self.id_hwm, cap, NONE)
                self.fine_max = _grow(self.fine_max, cap, NONE)
                self.next_end = _grow(self.next_end, cap, _END)
        return sid

    @property
    def watermark(self) -> int:
        return (
            max(self.max_ts - self.lateness, self.forced_wm)
            if self.max_ts != NONE
            else (self.forced_wm)
        )

    # --- ticks -------------------------------------------------------------------------
    def apply(
        self,
        batch: TickBatch,
        out: ClosedBars,
        numeric_ids: I64 | None = None,
        series: I64 | None = None,
    ) -> None:
        """Apply one batch of ticks (in order); append every bar it closes to ``out``.
        ``numeric_ids``: the trade ids as int64 if the caller parsed them already (all
        numeric); ``series``: the series index of each of ``batch.symbols`` if the caller
        looked them up already (all registered) — each spares this step a second pass."""
        n = len(batch)
        if n == 0:
            return
        rec = batch.records
        lut = (
            series
            if series is not None
            else np.array([self.sid_of(ex, sym) for ex, sym, _ in batch.symbols], np.int64)
        )
        sid = lut[rec["sym"].astype(np.intp)]
        ts = rec["ts"] // 1_000_000
        self.counters.ticks += n
        dup = self._duplicates(sid, batch.trade_ids, numeric_ids)

        # Watermark before each tick: from the ticks before it in partition order.
        tsk = np.where(dup, NONE, ts)
        seen = np.maximum.accumulate(tsk)
        prev = np.empty(n, np.int64)
        prev[0] = self.max_ts
        np.maximum(seen[:-1], self.max_ts, out=prev[1:])
        wm = np.maximum(np.where(prev == NONE, NONE, prev - self.lateness), self.forced_wm)
        self.max_ts = max(self.max_ts, int(seen[-1]))

        f = self.ms[0]
        fb = ts - ts % f
        keep = np.flatnonzero(~dup)
        order = keep[np.argsort(sid[keep], kind="stable")]
        s_sorted = sid[order]
        fb_sorted = fb[order]
        starts, rank = group_runs(s_sorted)
        init = self.fine_max[s_sorted[starts]]
        prev_b = prev_group_max(rank, fb_sorted, init[rank])
        late = (fb_sorted < prev_b) | (fb_sorted + f <= wm[order])
        grp_max = np.maximum.reduceat(fb_sorted, starts) if len(starts) else fb_sorted[:0]
        self.fine_max[s_sorted[starts]] = np.maximum(init, grp_max)
        self.counters.duplicates += int(dup.sum())
        self.counters.late += int(late.sum())

        acc = order[~late]
        if len(acc):
            self._aggregate(sid[acc], fb[acc], rec[acc], out)
        self.close_until(self.watermark, out)

    def _duplicates(
        self, sid: I64, ids: list[str], num: I64 | None = None
    ) -> npt.NDArray[np.bool_]:
        """Mark ticks whose (series, trade id) was seen before (see the module docstring)."""
        if num is None:
            try:
                num = np.array(ids, dtype=np.int64)
            except (ValueError, OverflowError):
                return self._duplicates_slow(sid, ids)
        order = np.argsort(sid, kind="stable")
        s_sorted = sid[order]
        v = num[order]
        starts, rank = group_runs(s_sorted)
        init = self.id_hwm[s_sorted[starts]]
        prev = prev_group_max(rank, v, init[rank])
        dup = np.empty(len(ids), np.bool_)
        dup[order] = v <= prev
        self.id_hwm[s_sorted[starts]] = np.maximum(init, np.maximum.reduceat(v, starts))
        return dup

    def _duplicates_slow(self, sid: I64, ids: list[str]) -> npt.NDArray[np.bool_]:
        """Per-tick path for batches holding non-numeric trade ids."""
        dup = np.zeros(len(ids), np.bool_)
        hwm = self.id_hwm
        for i, (s, tid) in enumerate(zip(sid.tolist(), ids, strict=True)):
            try:
                num = int(tid)
            except ValueError:
                seen = self.str_ids.get(s)
                if seen is None:
                    seen = self.str_ids[s] = (deque(), set())
                if tid in seen[1]:
                    dup[i] = True
                    continue
                seen[0].append(tid)
                seen[1].add(tid)
                if len(seen[0]) > self.dedup_window:
                    seen[1].discard(seen[0].popleft())
                continue
            if num <= hwm[s]:
                dup[i] = True
            else:
                hwm[s] = num
        return dup

    def _aggregate(self, sid: I64, fb: I64, rec: npt.NDArray[np.void], out: ClosedBars) -> None:
        """Fold accepted ticks (sorted by series, stream order within) into the bars."""
        price = rec["price"].astype(np.float64)
        qty = rec["qty"].astype(np.float64)
        cut = np.flatnonzero((sid[1:] != sid[:-1]) | (fb[1:] != fb[:-1])) + 1
        starts = np.concatenate([[0], cut])
        ends = np.concatenate([cut, [len(sid)]])
        highs = np.maximum.reduceat(price, starts).tolist()
        lows = np.minimum.reduceat(price, starts).tolist()
        qty_l = qty.tolist()
        quote_l = (price * qty).tolist()
        taker_l = np.where(rec["side"] == 1, qty, 0.0).tolist()
        price_l = price.tolist()
        add = operator.add
        fine_ms = self.ms[0]
        for a, b, s, bucket, hi, lo in zip(
            starts.tolist(),
            ends.tolist(),
            sid[starts].tolist(),
            fb[starts].tolist(),
            highs,
            lows,
            strict=True,
        ):
            bars = self.open_bars[s]
            cur = bars[0]
            if cur is not None and cur[0] != bucket:
                self._advance(s, bucket, out)
                cur = None
            elif cur is None:
                self._advance(s, bucket, out)  # close coarser bars that ended before it
            if cur is None:
                bars[0] = [
                    bucket,
                    price_l[a],
                    hi,
                    lo,
                    price_l[b - 1],
                    reduce(add, qty_l[a:b], 0.0),
                    reduce(add, quote_l[a:b], 0.0),
                    b - a,
                    reduce(add, taker_l[a:b], 0.0),
                ]
                end = bucket + fine_ms
                self.next_end[s] = min(self.next_end[s], end)
            else:
                cur[2] = max(cur[2], hi)
                cur[3] = min(cur[3], lo)
                cur[4] = price_l[b - 1]
                cur[5] = reduce(add, qty_l[a:b], cur[5])
                cur[6] = reduce(add, quote_l[a:b], cur[6])
                cur[7] += b - a
                cur[8] = reduce(add, taker_l[a:b], cur[8])

    # --- whole bars (history files) ----------------------------------------------------
    def apply_bar(self, exchange: str, symbol: str, bar: list[Any], out: ClosedBars) -> None:
        """Take one finished finest-timeframe bar ``[open_time, open, high, low, close,
        volume, quote_volume, trades, taker_buy_volume]`` of a series, given in time order
        (``open_time`` on the finest bucket): the previous finest bar closes and is folded
        into the coarser bars exactly as if ticks had built it."""
        s = self.sid_of(exchange, symbol)
        if bar[0] <= self.fine_max[s]:
            raise ValueError(f"bar at {bar[0]} is not after {self.fine_max[s]}")
        self._advance(s, bar[0], out)
        self.open_bars[s][0] = bar
        self.fine_max[s] = bar[0]
        self.next_end[s] = min(self.next_end[s], bar[0] + self.ms[0])
        self.max_ts = max(self.max_ts, bar[0])

    # --- closing -----------------------------------------------------------------------
    def _advance(self, s: int, t: int, out: ClosedBars) -> None:
        """Close every open bar of series ``s`` that ends at or before event time ``t``."""
        bars = self.open_bars[s]
        ms = self.ms
        fine = bars[0]
        if fine is not None and fine[0] + ms[0] <= t:
            out.add(s, 0, fine)
            bars[0] = None
            for k in range(1, len(ms)):
                bucket = fine[0] - fine[0] % ms[k]
                coarse = bars[k]
                if coarse is None:
                    bars[k] = [bucket, *fine[1:]]
                else:
                    coarse[2] = max(coarse[2], fine[2])
                    coarse[3] = min(coarse[3], fine[3])
                    coarse[4] = fine[4]
                    coarse[5] += fine[5]
                    coarse[6] += fine[6]
                    coarse[7] += fine[7]
                    coarse[8] += fine[8]
        nxt = _END
        for k in range(len(ms)):
            bar = bars[k]
            if bar is None:
                continue
            end = bar[0] + ms[k]
            if k and end <= t:
                out.add(s, k, bar)
                bars[k] = None
            elif end < nxt:
                nxt = end
        self.next_end[s] = nxt

    def close_until(self, t: int, out: ClosedBars) -> None:
        """Close every bar of the partition that ends at or before event time ``t``."""
        if t == NONE:
            return
        n = len(self.series)
        for s in np.flatnonzero(self.next_end[:n] <= t).tolist():
            self._advance(s, t, out)

    def advance_to(self, event_time_ms: int, out: ClosedBars) -> None:
        """Live idle timer: raise the watermark to ``event_time_ms - lateness`` and close."""
        self.forced_wm = max(self.forced_wm, event_time_ms - self.lateness)
        self.close_until(self.watermark, out)

    def close_all(self, out: ClosedBars) -> None:
        """End of a replay: close every open bar, finest first within each series."""
        self.close_until(_END - 1, out)


def _grow(arr: I64, cap: int, fill: int) -> I64:
    bigger = np.full(cap, fill, np.int64)
    bigger[: len(arr)] = arr
    return bigger
