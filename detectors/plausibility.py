"""Decoded ticks screened before the aggregator applies them (pure; ``common.plausibility``).

Anything may be written into ``ticks:{p}``, so the detectors do not trust that ingest judged
a tick: a NaN price, a negative quantity, a time in 2099 or an id of 10^15 applied once would
close bars in the wrong place, stop later trades as "late" or "duplicate", and live on in
every checkpoint. Each tick, judged against the partition's state just before it (every
earlier plausible tick applied), is rejected with a reason when:

* ``bad_price`` / ``bad_qty`` — not finite, not > 0, or not below ``MAX_PRICE`` / ``MAX_QTY``;
* ``bad_time`` — its time is at or after 2100 (any past date is fine: history files replay
  decades-old trades; the 2010..2100 window is ingest's check of live exchange frames);
* ``bad_id`` — a numeric trade id below 0 or beyond 2^62 (no exchange's sequence is near);
* ``time_ahead`` — its time is more than ``max_ahead_s`` ahead of both its receive time (the
  ``recv`` ingest recorded; 0 = unknown) and the partition's highest event time so far
  (``BarAggregator.max_ts``). Being ahead of only one of them is normal: a partition that
  was quiet for hours resumes far ahead of its last event time but not of its receipt;
* ``id_jump`` — a numeric trade id more than ``max_id_jump + max_ids_per_s * elapsed`` above
  its series' highest id, ``elapsed`` being the tick's time minus the start of the series'
  latest finest bucket (``BarAggregator.fine_max``). A series' first tick has no reference.

A rejected tick is never applied: it moves no watermark, no dedup high-water mark, no bar.
The verdicts depend only on the ticks and the state, never on batch boundaries or the wall
clock, so live and ``alphapulse replay`` agree. Speed: the stateless checks and a
conservative first pass of the stateful ones are numpy over the batch; a tick that the
first pass cannot clear (rare: a real anomaly, a quiet symbol's large jump, or a producer
that records no receive time) is judged exactly after the ticks before it are applied.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.contracts import Tick, TickBatch
from common.plausibility import (
    ID_JUMP,
    MAX_PRICE,
    MAX_QTY,
    MAX_TS_NS,
    TIME_AHEAD,
    PlausibilityLimits,
)
from detectors.bars import NONE, BarAggregator, ClosedBars

BAD_PRICE = "bad_price"
BAD_QTY = "bad_qty"
BAD_TIME = "bad_time"
BAD_ID = "bad_id"
#: Every reason a tick is rejected for (metric label, dead letter ``reason``).
REASONS = (BAD_PRICE, BAD_QTY, BAD_TIME, BAD_ID, TIME_AHEAD, ID_JUMP)
_MAX_ID = 2**62

Rejected = list[tuple[int, str]]  # (index in the batch, reason)


def apply_plausible(
    agg: BarAggregator, batch: TickBatch, limits: PlausibilityLimits, out: ClosedBars
) -> Rejected:
    """Apply the plausible ticks of ``batch`` to ``agg`` (bars closed go to ``out``); return
    the rejected ones with their reasons, in batch order."""
    n = len(batch)
    if n == 0:
        return []
    rec = batch.records
    num, all_numeric = _numeric_ids(batch.trade_ids)  # NONE where an id is not a number
    lut = np.array([agg.index.get((ex, s), -1) for ex, s, _ in batch.symbols], np.int64)
    ahead_ms = int(limits.max_ahead_s * 1000)
    if _all_clear(
        agg, rec, lut, num, limits=limits, ahead_ms=ahead_ms
    ):  # the common case: all at once
        agg.apply(batch, out, num if all_numeric else None, lut)
        return []
    bad = _invalid(rec) | (num == _BAD)
    ahead_ns = ahead_ms * 1_000_000
    ts, recv = rec["ts"], rec["recv"]
    # Conservative first pass: the partition's highest time only grows and a series' highest
    # id too, so a tick clear of the limits against the state at the start of the batch is
    # clear against any later state; only the others need the exact judgement. (In ns, the
    # same verdicts as ``_judge``'s in ms: ``ahead_ns`` is a whole number of ms.)
    doubtful = (recv < 1_000_000) | (ts > recv + ahead_ns)
    if agg.max_ts != NONE:
        doubtful &= ts >= (agg.max_ts + ahead_ms + 1) * 1_000_000
    doubtful |= _maybe_id_jump(agg, batch, lut, num, limits.max_id_jump)
    doubtful &= ~bad
    rejected: Rejected = []
    start = 0
    for i in np.flatnonzero(bad | doubtful).tolist():
        if start < i:
            agg.apply(_slice(batch, start, i), out)
        start = i + 1
        reason = (
            _reason(rec[i], num[i])
            if bad[i]
            else _judge(agg, batch, i, num, limits=limits, ahead_ms=ahead_ms)
        )
        if reason:
            rejected.append((i, reason))
        else:
            agg.apply(_slice(batch, i, i + 1), out)
    if start < n:
        agg.apply(_slice(batch, start, n), out)
    return rejected


def rejected_ticks(batch: TickBatch, rejected: Rejected) -> list[tuple[int, Tick, str]]:
    """The rejected ticks themselves (for their dead letters), with their index."""
    return [(i, next(iter(_slice(batch, i, i + 1))), reason) for i, reason in rejected]


def _all_clear(
    agg: BarAggregator,
    rec: npt.NDArray[np.void],
    lut: npt.NDArray[np.int64],
    num: npt.NDArray[np.int64],
    *,
    limits: PlausibilityLimits,
    ahead_ms: int,
) -> bool:
    """The first pass in a few reductions, no mask: True when every tick is valid, none
    runs ahead of its receipt, and every series is known with no id far above its highest
    (what a healthy stream gives batch after batch). False: the masks decide."""
    price, qty, ts, recv = rec["price"], rec["qty"], rec["ts"], rec["recv"]
    if not (  # NaN fails every comparison
        price.min() > 0.0
        and price.max() < MAX_PRICE
        and qty.min() > 0.0
        and qty.max() < MAX_QTY
        and ts.max() < MAX_TS_NS
        and recv.min() >= 1_000_000
        and (ts - recv).max() <= ahead_ms * 1_000_000
    ):
        return False
    if len(lut) == 0 or lut.min() < 0:
        return False
    hwm = agg.id_hwm[lut]
    if hwm.min() == NONE:
        return False
    numeric = num > _BAD
    if numeric.all():
        return bool((num - hwm[rec["sym"]]).max() <= limits.max_id_jump + 1)
    if (num == _BAD).any():
        return False
    jump = (num - hwm[rec["sym"]])[numeric]
    return len(jump) == 0 or bool(jump.max() <= limits.max_id_jump + 1)


def _invalid(rec: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
    """Stateless validity: finite positive bounded price and qty, a time in range."""
    price, qty, ts = rec["price"], rec["qty"], rec["ts"]
    ok = (price > 0.0) & (price < MAX_PRICE) & (qty > 0.0) & (qty < MAX_QTY)  # NaN fails
    ok &= ts < MAX_TS_NS
    return ~ok


def _reason(r: np.void, tid: np.int64) -> str:
    price, qty = float(r["price"]), float(r["qty"])
    if not 0.0 < price < MAX_PRICE:
        return BAD_PRICE
    if not 0.0 < qty < MAX_QTY:
        return BAD_QTY
    if tid == _BAD:
        return BAD_ID
    return BAD_TIME


def _maybe_id_jump(
    agg: BarAggregator,
    batch: TickBatch,
    lut: npt.NDArray[np.int64],
    num: npt.NDArray[np.int64],
    max_jump: int,
) -> npt.NDArray[np.bool_]:
    """Ticks that *may* jump too far: above a lower bound of their series' highest id by
    more than ``max_jump`` (the allowance is never smaller). The bound is the highest id at
    the start of the batch, or for a series new in this batch its smallest id here (any
    highest id it reaches before a tick is at least that). ``lut``: the series index of each
    of ``batch.symbols`` (-1: not seen yet)."""
    sym = batch.records["sym"].astype(np.intp)
    numeric = num > _BAD
    hwm = np.where(lut >= 0, agg.id_hwm[np.maximum(lut, 0)] if len(agg.id_hwm) else NONE, NONE)
    if (hwm == NONE).any():  # a series without a highest id yet: bound it by this batch
        lowest = np.full(len(lut), _MAX_ID, np.int64)
        np.minimum.at(lowest, sym[numeric], num[numeric])
        hwm = np.where(hwm != NONE, hwm, np.where(lowest < _MAX_ID, lowest, NONE))
    bound = hwm[sym]
    doubtful: npt.NDArray[np.bool_] = numeric & (bound != NONE) & (num - bound - 1 > max_jump)
    return doubtful


def _judge(
    agg: BarAggregator,
    batch: TickBatch,
    i: int,
    num: npt.NDArray[np.int64],
    *,
    limits: PlausibilityLimits,
    ahead_ms: int,
) -> str:
    """The exact verdict on tick ``i`` against the state after the ticks before it."""
    r = batch.records[i]
    ts = int(r["ts"]) // 1_000_000
    recv = int(r["recv"]) // 1_000_000
    refs = [x for x in (recv if recv > 0 else None, agg.max_ts) if x is not None and x != NONE]
    if refs and ts > max(refs) + ahead_ms:
        return TIME_AHEAD
    ex, sym, _ = batch.symbols[int(r["sym"])]
    s = agg.index.get((ex, sym))
    tid = int(num[i])
    if s is None or tid == NONE or int(agg.id_hwm[s]) == NONE:
        return ""
    last = int(agg.fine_max[s])
    elapsed_ns = (ts - last) * 1_000_000 if last != NONE else 0
    if not limits.id_jump_allowed(tid - int(agg.id_hwm[s]) - 1, elapsed_ns):
        return ID_JUMP
    return ""


_BAD = NONE + 1  # a numeric id out of range


def _numeric_ids(ids: list[str]) -> tuple[npt.NDArray[np.int64], bool]:
    """The ids as integers: ``NONE`` where an id is not a number (Bybit's UUIDs), ``_BAD``
    where it is one out of [0, 2^62); and whether all of them are numbers in range (the
    array is then exactly the ids, for the aggregator's duplicate check)."""
    try:
        num = np.array(ids, dtype=np.int64)
    except (ValueError, OverflowError):
        return np.array([_id_value(t) for t in ids], np.int64), False
    if len(num) and (num.min() < 0 or num.max() >= _MAX_ID):
        out_of_range = (num < 0) | (num >= _MAX_ID)
        num[out_of_range] = _BAD
        return num, False
    return num, True


def _id_value(tid: str) -> int:
    try:
        value = int(tid)
    except ValueError:
        return NONE
    return value if 0 <= value < _MAX_ID else _BAD


def _slice(batch: TickBatch, a: int, b: int) -> TickBatch:
    return TickBatch(batch.symbols, batch.records[a:b], batch.trade_ids[a:b])
