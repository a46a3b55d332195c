"""The per-frame ingest step, without a socket: frames in, accepted trades out.

``FrameStep`` is what a connection does with each frame it reads, as plain synchronous
code (no awaits, no Redis): parse (the adapter) → plausibility (a trade time more than
``max_ahead_s`` ahead of its receipt is ``time_ahead``) → duplicates and gaps (the
exchange's ``TradeDeduper``, which also applies the id-jump bound) → hold (a symbol whose
gap is being backfilled, ``GapFiller``) → count. Bad frames and implausible trades go to a
dead-letter sink (``DeadLetters.add`` only buffers); they reach neither the writer nor the
deduper's state.

Two entry points, one behaviour:

* :meth:`FrameStep.frame` — one frame, its new ticks returned (the reader offers them);
* :meth:`FrameStep.frames` — a batch of frames already received, handed to a
  :class:`TickSink` (the writer): trades stay in columns (``parse_many``) and, when every
  symbol's ids continue its stream in order, are accepted by the deduper as runs at once;
  otherwise each trade is judged like :meth:`frame` judges it — still on the columns, a
  ``Tick`` is only built for a trade that is dead-lettered or held for a backfill.

Counts are plain integers (a Prometheus ``inc`` per frame costs more than parsing it);
:meth:`FrameStep.publish_metrics` moves them into ``ingest.metrics`` — the connection does
that every 0.25 s and when a session ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import numpy as np
import orjson

from common.contracts import Side, Tick
from common.errors import BadInput
from common.logging import get_logger
from common.plausibility import TIME_AHEAD, PlausibilityLimits
from ingest.backfill import GapFiller
from ingest.deadletter import RateLimitedLog
from ingest.metrics import IngestMetrics
from ingest.sequence import TradeDeduper, Verdict, symbol_runs
from ingest.venues import ExchangeAdapter, FrameKind, ParseResult
from ingest.venues.batch import TradeColumns

_KINDS = (FrameKind.TRADE, FrameKind.CONTROL, FrameKind.IGNORED)
_TRADE = FrameKind.TRADE
_TIME_AHEAD = Verdict(False, implausible=TIME_AHEAD)


class TickSink(Protocol):
    """Where accepted trades go (``TickWriter``): False means "wait for space"."""

    def offer(self, ticks: Iterable[Tick], /) -> bool: ...

    def offer_columns(self, cols: TradeColumns, /) -> bool: ...


class DeadLetterSink(Protocol):
    """Where bad frames and implausible trades go (``DeadLetters``; sync, buffers only)."""

    def add(self, exchange: str, reason: str, detail: str, frame: str | bytes) -> None: ...


def column_tick(cols: TradeColumns, i: int) -> Tick:
    """Trade ``i`` of ``cols`` as the ``Tick`` ``parse`` would have returned for it."""
    side: Side = "buy" if cols.buy[i] else "sell"
    return Tick(cols.exchange, cols.symbols[i], cols.natives[i], cols.trade_ids[i],
                float(cols.price[i]), float(cols.qty[i]), side, int(cols.ts[i]),
                cols.recv_ts)  # fmt: skip


def take_columns(cols: TradeColumns, idx: list[int]) -> TradeColumns:
    """The trades of ``cols`` at ``idx`` (ascending), still in columns."""
    ix = np.array(idx, dtype=np.intp)
    return cols._replace(
        symbols=[cols.symbols[i] for i in idx],
        natives=[cols.natives[i] for i in idx],
        trade_ids=[cols.trade_ids[i] for i in idx],
        seq=cols.seq[ix],
        price=cols.price[ix],
        qty=cols.qty[ix],
        ts=cols.ts[ix],
        buy=cols.buy[ix],
    )


class FrameStep:
    """Parse, check, dedupe, hold and count the frames of one exchange (one per connection;
    the deduper and the filler are the exchange's, shared by its connections)."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        deduper: TradeDeduper,
        *,
        metrics: IngestMetrics,
        dead_letters: DeadLetterSink,
        filler: GapFiller | None = None,
        limits: PlausibilityLimits | None = None,
    ) -> None:
        self.adapter = adapter
        self.deduper = deduper
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.filler = filler
        self._gaps = filler.gaps if filler is not None else {}  # symbols being backfilled
        self._max_ahead_ns = (limits or PlausibilityLimits()).max_ahead_ns
        self._logs = RateLimitedLog()
        self._log = get_logger("ingest.connection", exchange=adapter.name)
        # Counts since the last publish_metrics (frames by _KINDS index: Enum hashing is slow).
        self._frame_counts = [0, 0, 0]
        self._tick_count = 0
        self._dup_count = 0
        self._gap_count = 0
        self._missing_count = 0
        self._bad: dict[str, int] = {}  # by reason
        self._implausible: dict[str, int] = {}  # by reason
        ex = adapter.name
        self._m_frames = [metrics.frames.labels(ex, k.value) for k in _KINDS]
        self._m_ticks = metrics.ticks.labels(ex)
        self._m_dups = metrics.duplicates.labels(ex)
        self._m_gaps = metrics.gaps.labels(ex)
        self._m_missing = metrics.missing.labels(ex)

    # --- one frame -----------------------------------------------------------------
    def frame(self, frame: str | bytes, recv_ts: int) -> Sequence[Tick]:
        """Parse one frame and return the new ticks in it (duplicates removed)."""
        try:
            result = self.adapter.parse(frame, recv_ts)
        except BadInput as e:
            self._bad_frame(frame, e)
            return []
        return self._result(result)

    def _result(self, result: ParseResult) -> Sequence[Tick]:
        kind = result.kind
        if kind is _TRADE:
            self._frame_counts[0] += 1
            return self._dedupe(result.ticks)
        self._frame_counts[1 if kind is FrameKind.CONTROL else 2] += 1
        if result.control == "error" and self._logs.allow("error") is not None:
            self._log.warning("exchange_error", detail=result.detail)
        return []

    def _dedupe(self, ticks: Sequence[Tick]) -> Sequence[Tick]:
        check = self.deduper.check
        ahead = self._max_ahead_ns
        if len(ticks) == 1:  # the common case (Binance: one trade per frame): no new list
            t = ticks[0]
            if t.ts - t.recv_ts > ahead:  # plausibility: it must not reach the deduper
                verdicts = [_TIME_AHEAD]
            else:
                v = check(t.exchange, t.symbol, t.trade_id, t.ts)
                if v.keep and not v.gap and not self._gaps:
                    self._tick_count += 1
                    return ticks
                verdicts = [v]
        else:
            verdicts = [
                _TIME_AHEAD
                if t.ts - t.recv_ts > ahead
                else check(t.exchange, t.symbol, t.trade_id, t.ts)
                for t in ticks
            ]
        return [ticks[i] for i in self._judge(verdicts, ticks.__getitem__)]

    # --- a batch of frames ---------------------------------------------------------
    def frames(self, frames: Sequence[str | bytes], recv_ts: int, out: TickSink) -> bool:
        """:meth:`frame` for many frames, the accepted trades handed to ``out``: in columns
        when ``parse_many`` gives them (``out.offer_columns``), else frame by frame
        (``out.offer``). Returns ``out``'s answer (False: wait for space)."""
        batch = self.adapter.parse_many(frames, recv_ts)
        cols = batch.columns
        if cols is not None:
            self._frame_counts[0] += len(frames)
            if self._accept_columns(cols):
                self._tick_count += cols.size
                return out.offer_columns(cols)
            kept = self._dedupe_columns(cols)
            if not kept:
                return out.offer(())
            return out.offer_columns(cols if len(kept) == cols.size else take_columns(cols, kept))
        for frame, outcome in zip(frames, batch.outcomes, strict=True):
            if isinstance(outcome, BadInput):
                self._bad_frame(frame, outcome)
                continue
            ticks = self._result(outcome)
            if ticks:
                out.offer(ticks)
        return out.offer(())

    def _accept_columns(self, cols: TradeColumns) -> bool:
        """Every symbol's ids in ``cols`` are the next consecutive ids of its stream and no
        trade time runs ahead of the receipt: all accepted by the deduper at once (True).
        False, with nothing changed, otherwise (the per-trade path then judges each)."""
        if not self.adapter.trade_ids_sequential or self._gaps:
            return False  # (a symbol is held for a backfill: per trade, see _judge)
        latest = int(cols.ts.max())
        if latest - cols.recv_ts > self._max_ahead_ns:
            return False
        runs = symbol_runs(cols.symbols, cols.seq)
        return runs is not None and self.deduper.accept_runs(cols.exchange, runs, latest)

    def _dedupe_columns(self, cols: TradeColumns) -> list[int]:
        """The indices of the trades of ``cols`` to keep, each judged as :meth:`_dedupe`
        judges a tick (no ``Tick`` built but for the dead-lettered and the held)."""
        check, ex, recv = self.deduper.check, cols.exchange, cols.recv_ts
        ahead = self._max_ahead_ns
        verdicts = [
            _TIME_AHEAD if ts - recv > ahead else check(ex, sym, tid, ts)
            for sym, tid, ts in zip(cols.symbols, cols.trade_ids, cols.ts.tolist(), strict=True)
        ]
        return self._judge(verdicts, lambda i: column_tick(cols, i), cols.symbols)

    # --- verdicts, counts, dead letters ----------------------------------------------
    def _judge(
        self,
        verdicts: list[Verdict],
        tick_at: Callable[[int], Tick],
        symbols: Sequence[str] | None = None,
    ) -> list[int]:
        """The indices of the trades to keep; duplicates and gaps counted (gaps logged,
        rate-limited), implausible trades dead-lettered, the trade after a gap and those of
        a symbol being backfilled handed to the filler. ``tick_at(i)``: trade ``i``."""
        kept: list[int] = []
        filler = self.filler
        for i, v in enumerate(verdicts):
            if not v.keep:
                if v.implausible:
                    self._implausible_trade(tick_at(i), v.implausible)
                else:
                    self._dup_count += 1
                continue
            if v.gap:
                self._gap_count += 1
                self._missing_count += v.gap
                t = tick_at(i)
                if self._logs.allow("gap", t.symbol) is not None:
                    self._log.warning(
                        "trade_gap", symbol=t.symbol, missing=v.gap, before_id=t.trade_id
                    )
                if filler is not None and filler.open_gap(t, v.gap):
                    self._tick_count += 1
                    continue  # held: written after the gap's backfill
            kept.append(i)
        self._tick_count += len(kept)
        if not self._gaps:
            return kept
        # Symbols being backfilled: the filler holds their trades (written after it).
        assert filler is not None  # _gaps is only non-empty with a filler
        gaps, out = self._gaps, []
        for i in kept:
            if (symbols[i] if symbols is not None else tick_at(i).symbol) in gaps:
                filler.hold(tick_at(i))
            else:
                out.append(i)
        return out

    def _bad_frame(self, frame: str | bytes, e: BadInput) -> None:
        self._bad[e.reason] = self._bad.get(e.reason, 0) + 1
        self.dead_letters.add(self.adapter.name, e.reason, e.detail, frame)

    def _implausible_trade(self, tick: Tick, reason: str) -> None:
        """Count and dead-letter an implausible trade (the tick itself, as JSON)."""
        self._implausible[reason] = self._implausible.get(reason, 0) + 1
        detail = f"{tick.symbol} id {tick.trade_id} time {tick.ts} ns, received {tick.recv_ts} ns"
        self.dead_letters.add(self.adapter.name, reason, detail, orjson.dumps(tick._asdict()))

    def publish_metrics(self) -> None:
        """Move the counts since the last call into their Prometheus counters."""
        counts = self._frame_counts
        for i, n in enumerate(counts):
            if n:
                self._m_frames[i].inc(n)
                counts[i] = 0
        for child, attr in (
            (self._m_ticks, "_tick_count"),
            (self._m_dups, "_dup_count"),
            (self._m_gaps, "_gap_count"),
            (self._m_missing, "_missing_count"),
        ):
            n = getattr(self, attr)
            if n:
                child.inc(n)
                setattr(self, attr, 0)
        ex = self.adapter.name
        for family, by_reason in (
            (self.metrics.bad_frames, self._bad),
            (self.metrics.implausible, self._implausible),
        ):
            for reason, n in by_reason.items():
                family.labels(ex, reason).inc(n)
            by_reason.clear()
