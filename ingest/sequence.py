"""Duplicate suppression and gap detection on trade ids (pure, per exchange + symbol).

Why here and not in the connection: the same trade can arrive twice — a reconnect's
snapshot (Coinbase, Kraken) repeats recent trades, and during Binance's 24-hour rotation the
old and the replacement connection overlap. ``TradeDeduper`` keeps, per ``(exchange,
symbol)``, a bounded window of the ids seen (so memory stays bounded on any number of
trades) and, where ids are consecutive integers (Binance, Kraken), the highest id:

* an id already in the window, or a sequential id at or below the highest one that falls
  outside the window, is a **duplicate** (dropped);
* a sequential id more than one above the highest opens a **gap** of ``id - highest - 1``
  missing trades (counted; the trade itself is kept);
* a sequential id below the highest that was never seen fills part of an earlier gap
  (kept, counted as ``late``) — the overlap of two connections can deliver it.

The first id of a stream only sets the baseline: no gap is counted before it — unless the
stream was *resumed* (:meth:`TradeDeduper.resume`) from the last id an earlier process wrote
(``ingest.lastwritten``): then the first id is checked against it like any other, and ids at
or below it are duplicates. Trades recovered from an exchange's REST history
(``ingest.backfill``) are entered with :meth:`TradeDeduper.remember_filled`, so a copy of one
arriving later on the live stream is a duplicate.

**Plausibility** (with ``limits``, ``common.plausibility``): a sequential id that jumps
further above the highest than the trade time elapsed since the stream's last trade allows
is an ``id_jump`` — not kept, not remembered, and the highest id stays where it was, so one
corrupted id cannot make every later real trade look like an old duplicate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from common.contracts import Tick
from common.plausibility import ID_JUMP, PlausibilityLimits
from ingest.settings import DEFAULTS


@dataclass(slots=True)
class StreamStats:
    """Counters of one (exchange, symbol) stream since the deduper was created."""

    accepted: int = 0
    duplicates: int = 0
    gaps: int = 0  # gap events
    missing: int = 0  # trades missing in those gaps
    late: int = 0  # out-of-order trades that filled part of a gap
    backfilled: int = 0  # missing trades recovered from the exchange's REST history
    rebased: int = 0  # resumed streams whose ids started over (a new baseline)
    implausible: int = 0  # id jumps beyond the plausibility limits (not kept)


@dataclass(slots=True)
class _State:
    """The window of remembered ids of one stream, oldest first.

    It is ``order`` (strings, also in ``seen`` for lookups) followed by the *run*: ids
    ``run_lo..run_hi`` accepted in order (each ``highest + 1``, spelled canonically), kept
    as two integers instead of one set entry and one deque entry each — the common case of
    a sequential feed costs a string compare. Any other event first moves the run into
    ``order``/``seen`` (``settle``), so the slow path sees exactly the window it always did.
    """

    window: int
    highest: int | None = None
    order: deque[str] = field(default_factory=deque)
    seen: set[str] = field(default_factory=set)
    stats: StreamStats = field(default_factory=StreamStats)
    expect: str | None = None  # str(highest + 1): the next in-order id, canonically spelled
    run_lo: int = 0
    run_hi: int = -1  # empty run: run_hi < run_lo
    floor: int = -1  # ids at or below it were written before a restart (resume): duplicates
    last_ts: int = 0  # highest trade time (ns) of an accepted trade: the id-jump clock

    def remember(self, trade_id: str) -> None:
        self.seen.add(trade_id)
        self.order.append(trade_id)
        if len(self.order) > self.window:
            self.seen.discard(self.order.popleft())

    def settle(self) -> None:
        """Move the run into ``order``/``seen`` (the window's contents do not change)."""
        for i in range(self.run_lo, self.run_hi + 1):
            s = str(i)
            self.seen.add(s)
            self.order.append(s)
        self.run_lo, self.run_hi = 0, -1

    def extend_run(self, count: int, ts: int = 0) -> None:
        """Accept the next ``count`` in-order ids (``highest + 1 ...``) into the run (the
        stream's ``highest`` is known: callers check ``expect``); ``ts``: their latest time."""
        self.last_ts = max(self.last_ts, ts)
        h: int = self.highest  # type: ignore[assignment]
        if self.run_hi < self.run_lo:
            self.run_lo = h + 1
        self.highest = self.run_hi = h = h + count
        self.expect = str(h + 1)
        self.stats.accepted += count
        over = len(self.order) + h - self.run_lo + 1 - self.window
        if over > 0:  # forget the oldest: remembered ids first, then the run's start
            while over > 0 and self.order:
                self.seen.discard(self.order.popleft())
                over -= 1
            self.run_lo += over


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one trade: ``keep`` it or not; ``gap`` missing ids before it."""

    keep: bool
    gap: int = 0
    duplicate: bool = False
    late: bool = False
    implausible: str = ""  # the reason an implausible trade is not kept


_KEEP = Verdict(True)
_DUPLICATE = Verdict(False, duplicate=True)
_LATE = Verdict(True, late=True)
_ID_JUMP = Verdict(False, implausible=ID_JUMP)


class TradeDeduper:
    """Drop repeated trades and count gaps, per (exchange, symbol).

    ``sequential_key`` maps a trade id to its integer order for exchanges whose ids are
    consecutive (``ExchangeAdapter.trade_id_key`` when ``trade_ids_sequential``), or is
    ``None`` for exchanges whose ids only identify (duplicates are then found in the window).
    It must read a canonical decimal id as its value (``int`` does): the in-order fast path
    recognizes the next id by its spelling, ``str(highest + 1)``. :meth:`accept_run` takes
    a whole in-order run of a batch in one step.
    """

    def __init__(
        self,
        *,
        window: int = DEFAULTS.dedup_window,
        sequential_key: Callable[[str], int] | None = None,
        limits: PlausibilityLimits | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self.sequential_key = sequential_key
        self.limits = limits  # None: no id-jump check
        self._streams: dict[tuple[str, str], _State] = {}

    def check(self, exchange: str, symbol: str, trade_id: str, ts: int = 0) -> Verdict:
        """Classify one trade (its time ``ts``, ns) and update the state (call once per
        trade, in arrival order)."""
        key = (exchange, symbol)
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _State(self.window)
        if ts > st.last_ts:  # an implausible trade returns before it could count
            prev_ts, st.last_ts = st.last_ts, ts
        else:
            prev_ts = st.last_ts
        if trade_id == st.expect:  # the next id of a sequential feed: extend the run
            h = st.highest + 1  # type: ignore[operator]  # expect is set once highest is
            if st.run_hi < st.run_lo:
                st.run_lo = h
            st.highest = st.run_hi = h
            st.expect = str(h + 1)
            st.stats.accepted += 1
            if len(st.order) + h - st.run_lo >= self.window:  # one over: forget the oldest
                if st.order:
                    st.seen.discard(st.order.popleft())
                else:
                    st.run_lo += 1
            return _KEEP
        if st.run_hi >= st.run_lo:
            st.settle()
        if trade_id in st.seen:
            st.stats.duplicates += 1
            return _DUPLICATE
        verdict = _KEEP
        if self.sequential_key is not None:
            n = self.sequential_key(trade_id)
            if st.highest is None or n == st.highest + 1:
                st.highest = n
            elif n > st.highest:
                if self.limits is not None and not self.limits.id_jump_allowed(
                    n - st.highest - 1, ts - prev_ts
                ):  # plausibility: this id moves nothing
                    st.last_ts = prev_ts
                    st.stats.implausible += 1
                    return _ID_JUMP
                verdict = Verdict(True, gap=n - st.highest - 1)
                st.stats.gaps += 1
                st.stats.missing += verdict.gap
                st.highest = n
            elif st.highest == st.floor and n < st.floor - self.window:
                # The first id after a resume, far below what was written: the ids started
                # over (a recording replayed again), not a repeat. A new baseline.
                st.highest, st.floor = n, -1
                st.stats.rebased += 1
            elif n <= st.highest - self.window or n <= st.floor:
                # Older than anything the window can vouch for: a replayed old trade.
                st.stats.duplicates += 1
                return _DUPLICATE
            else:
                st.stats.late += 1
                verdict = _LATE
        st.remember(trade_id)
        st.stats.accepted += 1
        if self.sequential_key is not None and st.highest is not None:
            st.expect = str(st.highest + 1)
        return verdict

    # --- restart and backfill (ingest.lastwritten, ingest.backfill) -------------------
    def resume(self, exchange: str, symbol: str, last_id: int) -> None:
        """Continue a sequential stream whose trades up to ``last_id`` an earlier process
        wrote: the next id expected is ``last_id + 1`` (a jump past it is a counted gap) and
        any id at or below it is a duplicate (it was written, or counted missing, then) —
        unless the first id comes more than the window below it: the ids started over (a
        recording replayed again), and that id is a new baseline (``rebased``)."""
        key = (exchange, symbol)
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _State(self.window)
        if st.run_hi >= st.run_lo:
            st.settle()
        st.floor = max(st.floor, last_id)
        if st.highest is None or last_id > st.highest:
            st.highest = last_id
            st.expect = str(last_id + 1)

    def remember_filled(self, exchange: str, symbol: str, trade_ids: Iterable[str]) -> None:
        """Enter trades recovered for a gap (ids below the stream's highest, never seen):
        a later live copy of one is then a duplicate while it is in the window."""
        st = self._streams.get((exchange, symbol))
        if st is None:
            return
        if st.run_hi >= st.run_lo:
            st.settle()
        for tid in trade_ids:
            if tid not in st.seen:
                st.remember(tid)
                st.stats.backfilled += 1

    def next_id(self, exchange: str, symbol: str) -> int | None:
        """The id that would continue a sequential stream in order (None: unknown yet)."""
        st = self._streams.get((exchange, symbol))
        return None if st is None or st.expect is None or st.highest is None else st.highest + 1

    def accept_run(self, exchange: str, symbol: str, first: int, count: int, ts: int = 0) -> bool:
        """Accept ``count`` consecutive ids ``first ...`` (latest time ``ts``) in one step if
        ``first`` is the next id of a sequential stream (True); False — nothing changed —
        otherwise, and the caller checks each id with :meth:`check`. The caller vouches that
        the ids are consecutive."""
        st = self._streams.get((exchange, symbol))
        if st is None or st.expect is None or count < 1 or st.highest != first - 1:
            return False
        st.extend_run(count, ts)
        return True

    def accept_runs(self, exchange: str, runs: Sequence[tuple[str, int, int]], ts: int = 0) -> bool:
        """:meth:`accept_run` for every ``(symbol, first, count)`` of ``runs`` (distinct
        symbols, e.g. from :func:`symbol_runs`; ``ts``: the latest trade time among them),
        all or nothing: True if each ``first`` is its stream's next id; False, nothing
        changed, otherwise."""
        streams = self._streams
        states = [streams.get((exchange, sym)) for sym, _, _ in runs]
        for st, (_, first, _) in zip(states, runs, strict=True):
            if st is None or st.expect is None or st.highest != first - 1:
                return False
        for st, (_, _, count) in zip(states, runs, strict=True):
            st.extend_run(count, ts)  # type: ignore[union-attr]  # checked above
        return True

    def filter(self, ticks: Iterable[Tick]) -> tuple[list[Tick], int]:
        """The ticks to keep, and the number of ids missing in gaps opened by them."""
        kept: list[Tick] = []
        missing = 0
        for t in ticks:
            v = self.check(t.exchange, t.symbol, t.trade_id, t.ts)
            if v.keep:
                kept.append(t)
                missing += v.gap
        return kept, missing

    def stats(self, exchange: str, symbol: str) -> StreamStats:
        """Counters of one stream (zeros if never seen)."""
        st = self._streams.get((exchange, symbol))
        return st.stats if st is not None else StreamStats()

    def streams(self) -> dict[tuple[str, str], StreamStats]:
        """Counters of every stream seen."""
        return {k: v.stats for k, v in self._streams.items()}


def symbol_runs(
    symbols: Sequence[str], ids: npt.NDArray[np.int64]
) -> list[tuple[str, int, int]] | None:
    """A batch's trades (``symbols[i]`` has sequential id ``ids[i]``, in arrival order) as
    one ``(symbol, first id, count)`` per symbol, in order of first appearance, when every
    symbol's ids go up by exactly one from trade to trade; None otherwise.

    One pass, linear in the trades whatever the number of symbols (one scan per symbol grew
    with frames x symbols: a thousand interleaved symbols made it ingest's largest cost). A
    dict pass over a reader batch (<= 128 trades) costs less than a numpy stable sort."""
    if not symbols:
        return []
    if symbols.count(symbols[0]) == len(symbols):
        if not bool((np.diff(ids) == 1).all()):
            return None
        return [(symbols[0], int(ids[0]), len(ids))]
    start: dict[str, int] = {}
    last: dict[str, int] = {}
    for sym, i in zip(symbols, ids.tolist(), strict=True):
        prev = last.get(sym)
        if prev is None:
            start[sym] = i
        elif i != prev + 1:
            return None
        last[sym] = i
    return [(sym, lo, last[sym] - lo + 1) for sym, lo in start.items()]
