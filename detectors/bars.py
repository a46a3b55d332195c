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
that continue an open finest bar, kept in arrays for that); closing and folding finished
bars into the coarser ones is array work too (the coarser bars are reduced from the finest
ones as the finest from ticks), so no Python runs per tick or per bar.
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
_EMPTY_CLOSED = (
    np.zeros(0, np.int64),
    np.zeros(0, np.int64),
    np.zeros(0, np.int64),
    np.zeros((0, 7), np.float64),
    np.zeros(0, np.int64),
)


@dataclass(slots=True)
class ClosedBars:
    """Bars closed by one step, as chunks of columns in the order they closed: ``sid``
    (series index), ``tf`` (timeframe index), ``open_time``, ``vals`` (bars x 7: open, high,
    low, close, volume, quote, taker) and ``trades``."""

    chunks: list[tuple[I64, I64, I64, F64, I64]] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(c[0]) for c in self.chunks)

    def add(self, sid: I64, tf: int | I64, open_time: I64, vals: F64, trades: I64) -> None:
        if len(sid):
            tfs = np.broadcast_to(np.asarray(tf, np.int64), sid.shape)
            self.chunks.append((sid, tfs, open_time, vals, trades))

    def columns(self) -> tuple[I64, I64, I64, F64, I64]:
        """``(sid, tf, open_time, vals, trades)`` of every bar, in closing order."""
        if len(self.chunks) == 1:
            return self.chunks[0]
        if not self.chunks:
            return _EMPTY_CLOSED
        sid, tf, open_time, vals, trades = zip(*self.chunks, strict=True)
        return (
            np.concatenate(sid),
            np.concatenate(tf),
            np.concatenate(open_time),
            np.concatenate(vals),
            np.concatenate(trades),
        )


@dataclass(slots=True)
class Counters:
    """Cumulative tick counts of a partition (exposed as metrics)."""

    ticks: int = 0
    duplicates: int = 0
    late: int = 0


class BarAggregator:
    """Open bars and closing logic of all series of one partition.

    Every open bar lives in arrays, so a step extends and closes them column-wise: the
    finest timeframe's (fed by ticks, touched by every batch) in ``fine_time`` (``NONE``:
    no open bar), ``fine_vals`` (open, high, low, close, volume, quote, taker) and
    ``fine_trades``; the coarser ones, with the *finished* finest bars of their bucket
    folded in, in ``coarse_time[sid, k]``, ``coarse_vals[sid, k]`` and
    ``coarse_trades[sid, k]`` for timeframe ``k >= 1`` (column 0 unused).
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
        # Each series' exchange and symbol by series index, for a step's many-bar lookups.
        self.exchange_of: npt.NDArray[np.object_] = np.zeros(0, object)
        self.symbol_of: npt.NDArray[np.object_] = np.zeros(0, object)
        self.id_hwm: I64 = np.zeros(0, np.int64)  # highest numeric trade id per series
        self.fine_max: I64 = np.zeros(0, np.int64)  # latest finest bucket reached per series
        self.next_end: I64 = np.zeros(0, np.int64)  # earliest end among the series' open bars
        self.fine_time: I64 = np.zeros(0, np.int64)  # open finest bar's start per series
        self.fine_vals: F64 = np.zeros((0, 7), np.float64)
        self.fine_trades: I64 = np.zeros(0, np.int64)
        k = len(self.ms)
        self.coarse_time: I64 = np.zeros((0, k), np.int64)
        self.coarse_vals: F64 = np.zeros((0, k, 7), np.float64)
        self.coarse_trades: I64 = np.zeros((0, k), np.int64)
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
            if sid >= len(self.id_hwm):
                cap = max(16, 2 * len(self.id_hwm))
                self.exchange_of = _grow(self.exchange_of, cap, "")
                self.symbol_of = _grow(self.symbol_of, cap, "")
                self.id_hwm = _grow(self.id_hwm, cap, NONE)
                self.fine_max = _grow(self.fine_max, cap, NONE)
                self.next_end = _grow(self.next_end, cap, _END)
                self.fine_time = _grow(self.fine_time, cap, NONE)
                self.fine_trades = _grow(self.fine_trades, cap, 0)
                self.fine_vals = _grow(self.fine_vals, cap, 0)
                self.coarse_time = _grow(self.coarse_time, cap, NONE)
                self.coarse_vals = _grow(self.coarse_vals, cap, 0)
                self.coarse_trades = _grow(self.coarse_trades, cap, 0)
            self.exchange_of[sid], self.symbol_of[sid] = key
        return sid

    def fill_open_bars(self, time: I64, vals: F64, trades: I64) -> None:
        """Write every open bar of the first ``len(time)`` series into checkpoint arrays
        (``time`` (series, timeframes), ``NONE`` where none is open; ``vals`` (series,
        timeframes, >= 7): open, high, low, close, volume, quote, taker; ``trades``)."""
        n = len(time)
        open_fine = self.fine_time[:n] != NONE
        time[:, 0] = self.fine_time[:n]
        vals[open_fine, 0, :7] = self.fine_vals[:n][open_fine]
        trades[open_fine, 0] = self.fine_trades[:n][open_fine]
        time[:, 1:] = self.coarse_time[:n, 1:]
        coarse = time[:, 1:] != NONE
        vals[:, 1:, :7][coarse] = self.coarse_vals[:n, 1:][coarse]
        trades[:, 1:][coarse] = self.coarse_trades[:n, 1:][coarse]

    def restore_open_bars(self, time: I64, vals: F64, trades: I64) -> None:
        """Inverse of :meth:`fill_open_bars` (series registered already)."""
        n = len(time)
        open_fine = time[:, 0] != NONE
        self.fine_time[:n] = time[:, 0]
        self.fine_vals[:n][open_fine] = vals[open_fine, 0, :7]
        self.fine_trades[:n][open_fine] = trades[open_fine, 0]
        coarse = time[:, 1:] != NONE
        self.coarse_time[:n, 1:] = time[:, 1:]
        self.coarse_vals[:n, 1:][coarse] = vals[:, 1:, :7][coarse]
        self.coarse_trades[:n, 1:][coarse] = trades[:, 1:][coarse]

    @property
    def watermark(self) -> int:
        return (
            max(self.max_ts - self.lateness, self.forced_wm)
            if self.max_ts != NONE
            else (self.forced_wm)
        )

    def until_close(self, held_ms: int = NONE) -> int | None:
        """Event time (ms) from the highest one seen (applied, or ``held_ms``: the highest
        of ticks read but not applied yet) to the end of the earliest open bar, or None with
        no tick or no open bar. From its end on, a bar closes with the next tick of its
        series, whatever the lateness (which only bounds how long the watermark waits for
        one): <= 0 means a close may come with any entry."""
        n = len(self.series)
        highest = max(self.max_ts, held_ms)
        if not n or highest == NONE:
            return None
        end = int(self.next_end[:n].min())
        return None if end >= _END else end - highest

    def may_close(self, ts_ms: I64) -> bool:
        """Whether applying ticks of event times ``ts_ms`` (ms) could close a bar: one
        reaches the end of an open bar, or of a finest bar that another of them would open
        (a bar closes with a tick at or past its end, or with the watermark, which stays
        below the highest tick). False: applying them now or later gives no output sooner
        (the runner reads on instead of stepping, :mod:`detectors.runner` step 6)."""
        if not len(ts_ms):
            return False
        highest = int(ts_ms.max())
        n = len(self.series)
        if n and highest >= int(self.next_end[:n].min()):
            return True
        f = self.ms[0]
        return highest >= int((ts_ms - ts_ms % f).min()) + f

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
        # The last segment of a series with a new one is new: it is the open bar now.
        last = np.ones(len(g_new), np.bool_)
        last[:-1] = s_new[1:] != s_new[:-1]
        g_last, s_last = g_new[last], s_new[last]
        closing = prev_time != NONE
        fine = (s_new[closing], prev_time[closing], prev_vals[closing], prev_trades[closing])
        nxt = self._close_bars(s_last, seg_fb[g_last], fine, out)
        self.fine_time[s_last] = seg_fb[g_last]
        self.fine_vals[s_last] = vals[g_last]
        self.fine_trades[s_last] = count[g_last]
        self.next_end[s_last] = np.minimum(nxt, seg_fb[g_last] + self.ms[0])

    # --- whole bars (history files) ----------------------------------------------------
    def apply_bars(
        self, exchange: str, symbol: str, bars: list[list[Any]], out: ClosedBars
    ) -> None:
        """Take finished finest-timeframe bars ``[open_time, open, high, low, close, volume,
        quote_volume, trades, taker_buy_volume]`` of one series, in time order (``open_time``
        on the finest bucket; ``ValueError``, and nothing taken, if one is not after the one
        before it): each closes the one before it, which is folded into the coarser bars
        exactly as if ticks had built it; the last one stays open."""
        s = self.sid_of(exchange, symbol)
        if not bars:
            return
        times = np.array([bar[0] for bar in bars], np.int64)
        before = np.concatenate([self.fine_max[s : s + 1], times[:-1]])
        bad = np.flatnonzero(times <= before)
        if len(bad):
            i = int(bad[0])
            raise ValueError(f"bar at {times[i]} is not after {before[i]}")
        vals = np.array([(*bar[1:7], bar[8]) for bar in bars], np.float64)
        trades = np.array([bar[7] for bar in bars], np.int64)
        ser = np.array([s], np.int64)
        nxt = self._advance(ser, times[:1], out)  # the open finest bar closes before the first
        if len(bars) > 1:
            fine = (np.full(len(bars) - 1, s, np.int64), times[:-1], vals[:-1], trades[:-1])
            nxt = self._close_bars(ser, times[-1:], fine, out)
        self.fine_time[s] = times[-1]
        self.fine_vals[s] = vals[-1]
        self.fine_trades[s] = trades[-1]
        self.fine_max[s] = times[-1]
        self.next_end[s] = min(int(nxt[0]), int(times[-1]) + self.ms[0])
        self.max_ts = max(self.max_ts, int(times[-1]))

    # --- closing -----------------------------------------------------------------------
    def _advance(self, ser: I64, t: I64, out: ClosedBars) -> I64:
        """Close every open bar of the distinct series ``ser`` (ascending) that ends at or
        before event time ``t`` (one per series); return (and store in ``next_end``) the
        earliest end among each one's bars still open."""
        start = self.fine_time[ser]
        is_open = start != NONE
        stays = is_open & (start + self.ms[0] > t)  # the finest bar stays open
        ends = is_open & ~stays
        s_end = ser[ends]
        fine = (s_end, start[ends], self.fine_vals[s_end], self.fine_trades[s_end])
        self.fine_time[s_end] = NONE
        nxt = self._close_bars(ser, t, fine, out)
        nxt = np.where(stays, np.minimum(nxt, start + self.ms[0]), nxt)
        self.next_end[ser] = nxt
        return nxt

    def _close_bars(
        self, ser: I64, t: I64, fine: tuple[I64, I64, F64, I64], out: ClosedBars
    ) -> I64:
        """Emit the finished finest bars ``fine`` = (series, open time, values, trades), in
        (series, time) order, each of them before its series' next one or its ``t``, and
        fold them into the coarser bars; then close the coarser bars that end at or before
        their series' ``t``. ``ser``: the distinct series concerned, ascending (with or
        without a finished finest bar), ``t`` each one's event time. Returns per series the
        earliest end among its coarser bars still open (``_END``: none).

        A coarser bar is built from its finest bars as a finest bar from its ticks: each
        (series, coarser bucket) run of finest bars is reduced column-wise, the sums as
        exact left folds (:func:`segment_sums`) starting from the open bar's when the run
        continues it. A run before its series' last one is complete (a later finest bar
        lies in a later bucket); the last one is the series' open bar, closed if its end
        has passed ``t``. The same additions in the same order as folding bar by bar."""
        f_sid, f_time, f_vals, f_trades = fine
        out.add(f_sid, 0, f_time, f_vals, f_trades)
        nxt = np.full(len(ser), _END, np.int64)
        for k in range(1, len(self.ms)):
            ms = self.ms[k]
            closed: list[tuple[I64, I64, F64, I64]] = []
            if len(f_sid):
                closed.append(self._fold(k, f_sid, f_time - f_time % ms, f_vals, f_trades))
            c_time = self.coarse_time[ser, k]
            is_open = c_time != NONE
            end = c_time + ms
            due = is_open & (end <= t)
            if due.any():
                s_due = ser[due]
                closed.append(
                    (s_due, c_time[due], self.coarse_vals[s_due, k], self.coarse_trades[s_due, k])
                )
                self.coarse_time[s_due, k] = NONE
            nxt = np.where(is_open & ~due, np.minimum(nxt, end), nxt)
            if len(closed) == 2 and len(closed[0][0]) and len(closed[1][0]):
                # In (series, time) order: a series' complete runs before its open bar.
                cols = [np.concatenate(c) for c in zip(*closed, strict=True)]
                order = np.argsort(cols[0], kind="stable")
                closed = [(cols[0][order], cols[1][order], cols[2][order], cols[3][order])]
            for s_c, time_c, vals_c, trades_c in closed:
                out.add(s_c, k, time_c, vals_c, trades_c)
        return nxt

    def _fold(
        self, k: int, f_sid: I64, bucket: I64, f_vals: F64, f_trades: I64
    ) -> tuple[I64, I64, F64, I64]:
        """Fold finished finest bars (in (series, time) order, ``bucket``: each one's bucket
        of timeframe ``k``) into the coarser bars of timeframe ``k``: each series' last run
        becomes its open bar; return the bars this completes, in (series, time) order (see
        :meth:`_close_bars`): the runs before each series' last, and an open bar that its
        series' first run does not continue (the watermark closed the finest bar before the
        run's, and the run lies in a later bucket)."""
        m = len(f_sid)
        cut = np.flatnonzero((f_sid[1:] != f_sid[:-1]) | (bucket[1:] != bucket[:-1])) + 1
        starts = np.concatenate([[0], cut])
        ends = np.concatenate([cut, [m]])
        r_sid, r_time = f_sid[starts], bucket[starts]
        base_time = self.coarse_time[r_sid, k]
        cont = base_time == r_time  # continues the open bar
        base = self.coarse_vals[r_sid, k]
        base_trades = self.coarse_trades[r_sid, k]
        init = np.where(cont[:, None], base[:, 4:], 0.0).T
        vals = np.empty((len(starts), 7), np.float64)
        vals[:, 0] = np.where(cont, base[:, 0], f_vals[starts, 0])
        if len(starts) == m:  # one finest bar a run (live: a bar of each series a step)
            high, low = f_vals[:, 1], f_vals[:, 2]
            vals[:, 4:] = init.T + f_vals[:, 4:]
            trades = f_trades.copy()
        else:
            high = np.maximum.reduceat(f_vals[:, 1], starts)
            low = np.minimum.reduceat(f_vals[:, 2], starts)
            vals[:, 4:] = segment_sums(f_vals[:, 4:].T, starts, ends, init).T
            trades = np.add.reduceat(f_trades, starts)
        vals[:, 1] = np.where(cont, np.maximum(base[:, 1], high), high)
        vals[:, 2] = np.where(cont, np.minimum(base[:, 2], low), low)
        vals[:, 3] = f_vals[ends - 1, 3]
        trades += np.where(cont, base_trades, 0)
        change = r_sid[1:] != r_sid[:-1]
        last = np.ones(len(starts), np.bool_)
        last[:-1] = change
        s_last = r_sid[last]
        self.coarse_time[s_last, k] = r_time[last]
        self.coarse_vals[s_last, k] = vals[last]
        self.coarse_trades[s_last, k] = trades[last]
        done = ~last
        complete = r_sid[done], r_time[done], vals[done], trades[done]
        first = np.ones(len(starts), np.bool_)
        first[1:] = change
        displaced = first & ~cont & (base_time != NONE)
        if not displaced.any():
            return complete
        older = r_sid[displaced], base_time[displaced], base[displaced], base_trades[displaced]
        cols = [np.concatenate(c) for c in zip(older, complete, strict=True)]
        order = np.argsort(cols[0], kind="stable")  # a series' displaced bar before its runs
        return cols[0][order], cols[1][order], cols[2][order], cols[3][order]

    def close_until(self, t: int, out: ClosedBars) -> None:
        """Close every bar of the partition that ends at or before event time ``t``."""
        if t == NONE:
            return
        n = len(self.series)
        ser = np.flatnonzero(self.next_end[:n] <= t)
        if len(ser):
            self._advance(ser, np.full(len(ser), t, np.int64), out)

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


def _grow(arr: npt.NDArray[Any], cap: int, fill: int | str) -> npt.NDArray[Any]:
    """``arr`` with ``cap`` rows (the same dtype and row shape), new rows set to ``fill``."""
    bigger = np.full((cap, *arr.shape[1:]), fill, arr.dtype)
    bigger[: len(arr)] = arr
    return bigger
