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

Speed: the per-tick work is numpy over the whole batch (symbol lookup, one sort by series for
dedup and late detection, the reduction of each (series, finest bucket) run, the merge of runs
that continue an open finest bar, kept in arrays for that); Python runs once per finest bar
that closes (emitting it and folding it into the coarser bars, kept as lists), not per tick.
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
from detectors.group_runs import group_runs, never_falls, prev_group_max
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

    A bar is a list ``[open_time, open, high, low, close, volume, quote_volume, trades,
    taker_buy_volume]`` (:meth:`fine_bar`). The finest timeframe's open bar of each series
    (fed by ticks, touched by every batch) lives in arrays — ``fine_time`` (``NONE``: no
    open bar), ``fine_vals`` (open, high, low, close, volume, quote, taker) and
    ``fine_trades`` — so a batch extends it column-wise; ``open_bars[sid][t>0]`` holds the
    coarser bar with the *finished* finest bars of its bucket folded in (one list per bar,
    updated once per finest bar that closes; ``open_bars[sid][0]`` stays None).
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
        self.fine_time: I64 = np.zeros(0, np.int64)  # open finest bar's start per series
        self.fine_vals: F64 = np.zeros((0, 7), np.float64)
        self.fine_trades: I64 = np.zeros(0, np.int64)
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
                self.fine_time = _grow(self.fine_time, cap, NONE)
                self.fine_trades = _grow(self.fine_trades, cap, 0)
                self.fine_vals = _grow(self.fine_vals, cap, 0)
        return sid

    def fine_bar(self, s: int) -> list[Any] | None:
        """Series ``s``'s open finest bar as a list (None: no open bar)."""
        t = int(self.fine_time[s])
        if t == NONE:
            return None
        o, h, lo, c, v, q, taker = self.fine_vals[s].tolist()
        return [t, o, h, lo, c, v, q, int(self.fine_trades[s]), taker]

    def fill_open_bars(self, time: I64, vals: F64, trades: I64) -> None:
        """Write every open bar of the first ``len(time)`` series into checkpoint arrays
        (``time`` (series, timeframes), ``NONE`` where none is open; ``vals`` (series,
        timeframes, >= 7): open, high, low, close, volume, quote, taker; ``trades``)."""
        n = len(time)
        open_fine = self.fine_time[:n] != NONE
        time[:, 0] = self.fine_time[:n]
        vals[open_fine, 0, :7] = self.fine_vals[:n][open_fine]
        trades[open_fine, 0] = self.fine_trades[:n][open_fine]
        for s, bars in enumerate(self.open_bars[:n]):
            for k in range(1, len(bars)):
                bar = bars[k]
                if bar is not None:
                    time[s, k] = bar[0]
                    vals[s, k, :7] = (*bar[1:7], bar[8])
                    trades[s, k] = bar[7]

    def restore_open_bars(self, time: I64, vals: F64, trades: I64) -> None:
        """Inverse of :meth:`fill_open_bars` (series registered already)."""
        n = len(time)
        open_fine = time[:, 0] != NONE
        self.fine_time[:n] = time[:, 0]
        self.fine_vals[:n][open_fine] = vals[open_fine, 0, :7]
        self.fine_trades[:n][open_fine] = trades[open_fine, 0]
        coarse = time[:, 1:] != NONE
        s_open, k_open = np.nonzero(coarse)
        for s, k, t, v, count in zip(
            s_open.tolist(),
            (k_open + 1).tolist(),
            time[:, 1:][coarse].tolist(),
            vals[:, 1:][coarse].tolist(),
            trades[:, 1:][coarse].tolist(),
            strict=True,
        ):
            self.open_bars[s][k] = [t, *v[:6], count, v[6]]

    @property
    def watermark(self) -> int:
        return (
            max(self.max_ts - self.lateness, self.forced_wm)
            if self.max_ts != NONE
            else (self.forced_wm)
        )

    def until_close(self) -> int | None:
        """Event time (ms) from the highest one seen to when the earliest open bar closes
        (its end plus the lateness; <= 0: due now), or None with no tick or no open bar."""
        n = len(self.series)
        if not n or self.max_ts == NONE:
            return None
        end = int(self.next_end[:n].min())
        return None if end >= _END else end + self.lateness - self.max_ts

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
        # One stable sort by series serves the duplicate and the lateness checks.
        order = np.argsort(sid, kind="stable")
        s_sorted = sid[order]
        starts, rank = group_runs(s_sorted)
        heads = s_sorted[starts]
        dup_s = self._duplicates(
            sid, batch.trade_ids, numeric_ids, order=order, runs=(starts, rank), heads=heads
        )
        keep_s = ~dup_s
        all_kept = bool(keep_s.all())

        # Watermark before each tick: from the ticks before it in partition order.
        if all_kept:
            tsk = ts
        else:
            dup = np.empty(n, np.bool_)
            dup[order] = dup_s
            tsk = np.where(dup, NONE, ts)
        seen = np.maximum.accumulate(tsk)
        prev = np.empty(n, np.int64)
        prev[0] = self.max_ts
        np.maximum(seen[:-1], self.max_ts, out=prev[1:])
        wm = np.maximum(np.where(prev == NONE, NONE, prev - self.lateness), self.forced_wm)
        self.max_ts = max(self.max_ts, int(seen[-1]))

        # Late: an older bucket than its series reached (duplicates reach nothing: they
        # count as the batch's lowest bucket, which raises no running maximum that matters),
        # or a bucket that ended at or before the watermark.
        f = self.ms[0]
        fb = ts - ts % f
        fb_s = fb[order]
        init = self.fine_max[heads]
        late_s = fb_s + f <= wm[order]
        if not (all_kept and never_falls(fb_s, starts, init, strict=False)):
            reached = fb_s if all_kept else np.where(keep_s, fb_s, fb_s.min())
            late_s |= fb_s < prev_group_max(rank, reached, init[rank])
        grp_max = np.maximum.reduceat(fb_s if all_kept else np.where(keep_s, fb_s, NONE), starts)
        self.fine_max[heads] = np.maximum(init, grp_max)
        if not all_kept:
            late_s &= keep_s
            self.counters.duplicates += n - int(keep_s.sum())
        n_late = int(late_s.sum())
        self.counters.late += n_late

        take = keep_s if n_late == 0 else keep_s & ~late_s
        if all_kept and n_late == 0:
            acc, s_acc, fb_acc = order, s_sorted, fb_s
        else:
            acc, s_acc, fb_acc = order[take], s_sorted[take], fb_s[take]
        if len(acc):
            price, qty, buy = rec["price"][acc], rec["qty"][acc], rec["side"][acc] == 1
            self._aggregate(s_acc, fb_acc, out, price=price, qty=qty, buy=buy)
        self.close_until(self.watermark, out)

    def _duplicates(
        self,
        sid: I64,
        ids: list[str],
        num: I64 | None,
        *,
        order: npt.NDArray[np.intp],
        runs: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]],
        heads: I64,
    ) -> npt.NDArray[np.bool_]:
        """Mark ticks whose (series, trade id) was seen before (see the module docstring),
        in the order ``order`` (the ticks sorted by series; ``runs``: its ``group_runs``;
        ``heads``: the series of each run)."""
        starts, rank = runs
        if num is None:
            try:
                num = np.array(ids, dtype=np.int64)
            except (ValueError, OverflowError):
                return self._duplicates_slow(sid, ids)[order]
        v = num[order]
        init = self.id_hwm[heads]
        self.id_hwm[heads] = np.maximum(init, np.maximum.reduceat(v, starts))
        if never_falls(v, starts, init, strict=True):  # ids in order: no duplicate
            return np.zeros(len(v), np.bool_)
        dup: npt.NDArray[np.bool_] = v <= prev_group_max(rank, v, init[rank])
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

    def _aggregate(
        self,
        sid: I64,
        fb: I64,
        out: ClosedBars,
        *,
        price: npt.NDArray[np.floating[Any]],
        qty: npt.NDArray[np.floating[Any]],
        buy: npt.NDArray[np.bool_],
    ) -> None:
        """Fold accepted ticks (sorted by series, stream order within; ``buy``: the taker
        bought) into the bars.

        Each (series, finest bucket) segment is reduced column-wise: open, high, low, close,
        count, and the three sums as exact left folds (:func:`segment_sums`). Only a series'
        first segment in the batch can continue its open bar (later ones are in later
        buckets); those that do are merged into the ``fine_*`` arrays at once, their sums
        starting from the bar's (the same additions in the same order as adding tick by
        tick). Python runs only for a segment that starts a new bar, i.e. once per finest
        bar, closing the bar before it."""
        price = price.astype(np.float64, copy=False)
        qty = qty.astype(np.float64, copy=False)
        n = len(sid)
        cut = np.flatnonzero((sid[1:] != sid[:-1]) | (fb[1:] != fb[:-1])) + 1
        starts = np.concatenate([[0], cut])
        ends = np.concatenate([cut, [n]])
        seg_sid = sid[starts]
        seg_fb = fb[starts]
        merge = self.fine_time[seg_sid] == seg_fb  # only a first segment can match
        m_sid = seg_sid[merge]
        init = np.zeros((3, len(starts)), np.float64)
        if len(m_sid):
            init[:, merge] = self.fine_vals[m_sid][:, 4:].T
        values = np.empty((3, n), np.float64)
        values[0] = qty
        np.multiply(price, qty, out=values[1])
        values[2] = np.where(buy, qty, 0.0)
        sums = segment_sums(values, starts, ends, init)
        high = np.maximum.reduceat(price, starts)
        low = np.minimum.reduceat(price, starts)
        close = price[ends - 1]
        count = ends - starts
        if len(m_sid):
            fv = self.fine_vals
            fv[m_sid, 1] = np.maximum(fv[m_sid, 1], high[merge])
            fv[m_sid, 2] = np.minimum(fv[m_sid, 2], low[merge])
            fv[m_sid, 3] = close[merge]
            fv[m_sid, 4:] = sums[:, merge].T
            self.fine_trades[m_sid] += count[merge]
        new = ~merge
        if not new.any():
            return
        # Each new segment closes the finest bar before it: its series' open bar (merged
        # above if the segment before it merged) or the segment before it.
        after = np.zeros(len(starts), np.bool_)  # the segment before is of the same series
        after[1:] = seg_sid[1:] == seg_sid[:-1]
        vals = np.stack([price[starts], high, low, close, sums[0], sums[1], sums[2]], axis=1)
        g_new = np.flatnonzero(new)
        s_new = seg_sid[g_new]
        from_seg = after[g_new] & new[g_new - 1]
        g_prev = g_new - 1
        prev_time = np.where(from_seg, seg_fb[g_prev], self.fine_time[s_new])
        prev_vals = np.where(from_seg[:, None], vals[g_prev], self.fine_vals[s_new])
        prev_trades = np.where(from_seg, count[g_prev], self.fine_trades[s_new])
        fine_ms = self.ms[0]
        nxt = []
        for s, bucket, p_time, (o, h, lo, c, v, q, taker), p_trades in zip(
            s_new.tolist(),
            seg_fb[g_new].tolist(),
            prev_time.tolist(),
            prev_vals.tolist(),
            prev_trades.tolist(),
            strict=True,
        ):
            fine = None if p_time == NONE else [p_time, o, h, lo, c, v, q, p_trades, taker]
            nxt.append(min(self._close(s, fine, bucket, out), bucket + fine_ms))
        # The last segment of a series with a new one is new: it is the open bar now.
        last = np.ones(len(g_new), np.bool_)
        last[:-1] = s_new[1:] != s_new[:-1]
        g_last, s_last = g_new[last], s_new[last]
        self.fine_time[s_last] = seg_fb[g_last]
        self.fine_vals[s_last] = vals[g_last]
        self.fine_trades[s_last] = count[g_last]
        self.next_end[s_last] = np.array(nxt, np.int64)[last]

    # --- whole bars (history files) ----------------------------------------------------
    def apply_bar(self, exchange: str, symbol: str, bar: list[Any], out: ClosedBars) -> None:
        """Take one finished finest-timeframe bar ``[open_time, open, high, low, close,
        volume, quote_volume, trades, taker_buy_volume]`` of a series, given in time order
        (``open_time`` on the finest bucket): the previous finest bar closes and is folded
        into the coarser bars exactly as if ticks had built it."""
        s = self.sid_of(exchange, symbol)
        if bar[0] <= self.fine_max[s]:
            raise ValueError(f"bar at {bar[0]} is not after {self.fine_max[s]}")
        nxt = self._advance(s, bar[0], out)
        self.fine_time[s] = bar[0]
        self.fine_vals[s] = (*bar[1:7], bar[8])
        self.fine_trades[s] = bar[7]
        self.fine_max[s] = bar[0]
        self.next_end[s] = min(nxt, bar[0] + self.ms[0])
        self.max_ts = max(self.max_ts, bar[0])

    # --- closing -----------------------------------------------------------------------
    def _advance(self, s: int, t: int, out: ClosedBars) -> int:
        """Close every open bar of series ``s`` that ends at or before event time ``t``;
        return (and store in ``next_end``) the earliest end among its bars still open."""
        start = int(self.fine_time[s])
        if start != NONE and start + self.ms[0] > t:  # the finest bar stays open
            nxt = min(self._close(s, None, t, out), start + self.ms[0])
        else:
            fine = self.fine_bar(s)
            self.fine_time[s] = NONE
            nxt = self._close(s, fine, t, out)
        self.next_end[s] = nxt
        return nxt

    def _close(self, s: int, fine: list[Any] | None, t: int, out: ClosedBars) -> int:
        """Emit series ``s``'s finished finest bar ``fine`` (if any) and fold it into the
        coarser bars, then close those that end at or before ``t``; return the earliest end
        among the coarser bars still open (``_END``: none)."""
        bars = self.open_bars[s]
        ms = self.ms
        if fine is not None:
            out.add(s, 0, fine)
            start, o, h, lo, c, v, q, trades, taker = fine
            for k in range(1, len(ms)):
                coarse = bars[k]
                if coarse is None:
                    bars[k] = [start - start % ms[k], o, h, lo, c, v, q, trades, taker]
                else:
                    coarse[2] = max(coarse[2], h)
                    coarse[3] = min(coarse[3], lo)
                    coarse[4] = c
                    coarse[5] += v
                    coarse[6] += q
                    coarse[7] += trades
                    coarse[8] += taker
        nxt = _END
        for k in range(1, len(ms)):
            bar = bars[k]
            if bar is None:
                continue
            end = bar[0] + ms[k]
            if end <= t:
                out.add(s, k, bar)
                bars[k] = None
            elif end < nxt:
                nxt = end
        return nxt

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


#: Segments up to this long are summed column-wise; the rest of a longer one in Python.
SHORT_SEGMENT = 16


def segment_sums(values: F64, starts: I64, ends: I64, init: F64, short: int = SHORT_SEGMENT) -> F64:
    """Left-fold sums of runs: for each row ``r`` of ``values`` (shape ``(m, n)``) and run
    ``g`` = ``[starts[g], ends[g])`` (consecutive, covering ``values``), ``(((init[r, g] +
    v[a]) + v[a+1]) + ...)`` in exactly that order (``np.add.reduce`` sums pairwise, which
    rounds differently).

    The runs are laid out as columns of a zero-padded grid whose first row is ``init`` and
    summed with one ``np.add.accumulate`` down the rows (sequential by definition; adding
    the +0.0 padding changes no value but a -0.0 total, which sums of volumes never are).
    Elements past ``short`` of a longer run are added in Python (cheap per element there)."""
    acc = np.array(init, np.float64, copy=True)
    if len(starts) == 0:
        return acc
    lengths = ends - starts
    seg = np.repeat(np.arange(len(starts)), lengths)
    pos = np.arange(values.shape[1]) - np.repeat(starts, lengths)
    longest = int(lengths.max())
    grid = np.zeros((min(longest, short) + 1, *acc.shape), np.float64)
    grid[0] = acc
    if longest <= short:
        grid[pos + 1, :, seg] = values.T
    else:
        inside = pos < short
        grid[pos[inside] + 1, :, seg[inside]] = values[:, inside].T
    sums: F64 = np.add.accumulate(grid, axis=0)[-1]
    if longest > short:
        add = operator.add
        rows = values.tolist()
        for g in np.flatnonzero(lengths > short).tolist():
            a, b = int(starts[g]) + short, int(ends[g])
            for r, row in enumerate(rows):
                sums[r, g] = reduce(add, row[a:b], float(sums[r, g]))
    return sums


def _grow(arr: npt.NDArray[Any], cap: int, fill: int) -> npt.NDArray[Any]:
    """``arr`` with ``cap`` rows (the same dtype and row shape), new rows set to ``fill``."""
    bigger = np.full((cap, *arr.shape[1:]), fill, arr.dtype)
    bigger[: len(arr)] = arr
    return bigger
