"""The partition state machine (pure): tick batches in, closed bars and pattern events out.

``PartitionEngine.apply(batch)`` screens the ticks (:mod:`detectors.plausibility`: an
implausible tick is rejected, never applied), aggregates the rest (:mod:`detectors.bars`),
then feeds every bar that closed to the indicators (:mod:`detectors.indicators`) and the pattern
kernels (:mod:`detectors.patterns`). Closed bars are processed in the order (bar end,
longest timeframe first), per (timeframe, end) group, i.e. vectorized over every series of
the partition that closes at the same boundary; the patterns of all the groups of one end
are evaluated in one call. Ordering by end with the longer timeframe first is what makes
``htf_trend`` well defined: a 1m bar ending at 10:05 sees the 5m trend including the 5m bar
that also ends at 10:05.

The state of the rows (OHLC windows, indicators, pattern sums, pending outcomes) lives in a
:class:`detectors.rowspace.RowSpace`, the engine's own or one it shares with the other
engines of a detector process: :func:`step_engines` steps several engines as one, the bars
closing at a boundary in all of them processed together (:func:`process_closed`), each
engine's output exactly what it gives alone.

The whole state (open bars, dedup memory, watermark, OHLC windows, indicator and pattern
state, recent events, last applied stream entry id) serializes to bytes with
:func:`detectors.checkpoint.dumps`, so a new owner continues exactly where the previous one
checkpointed.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from common.columns import (
    BAR_DTYPE,
    FIRED_DTYPE,
    BarColumns,
    EventColumns,
    OutcomeColumns,
    Recent,
    feature_matrix,
    recent_documents,
)
from common.contracts import (
    DEFAULT_RECENT_BARS,
    RECENT_FEATURES,
    Bar,
    BarOutcome,
    PatternEvent,
    Tick,
    TickBatch,
)
from common.plausibility import PlausibilityLimits
from detectors.bars import BarAggregator, ClosedBars
from detectors.indicators import IndicatorConfig
from detectors.outcomes import Completed, OutcomeConfig
from detectors.patterns import PatternDetector
from detectors.plausibility import apply_plausible, rejected_ticks
from detectors.rowspace import RowSpace
from detectors.timeframes import DEFAULT_TIMEFRAMES, Timeframe, parse_timeframes

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
# Features whose value is a whole number (an ``int`` in a pattern event, not a float).
INTEGER_FEATURES = frozenset({"trend", "htf_trend"})


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What determines a partition's results; a checkpoint is only valid for the same one."""

    timeframes: tuple[Timeframe, ...] = parse_timeframes(DEFAULT_TIMEFRAMES)
    allowed_lateness_ms: int = 5_000
    patterns: tuple[str, ...] | None = None  # None = all TA-Lib CDL functions
    indicators: IndicatorConfig = field(default_factory=IndicatorConfig)
    cooldown_bars: int = DEFAULT_RECENT_BARS  # horizon of ``recent``, bars of the event's tf
    dedup_window: int = 4096
    outcomes: OutcomeConfig = field(default_factory=OutcomeConfig)
    # Not in the fingerprint: the limits decide only about implausible ticks, and a
    # checkpoint stays valid when they are retuned (a plausible stream gives the same bars).
    limits: PlausibilityLimits = field(default_factory=PlausibilityLimits)

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint's state depends on (the outcome cost is not state: left out)."""
        ind = self.indicators
        return {
            "timeframes": [t.name for t in self.timeframes],
            "lateness": self.allowed_lateness_ms,
            "patterns": None if self.patterns is None else list(self.patterns),
            "indicators": [ind.ema_period, ind.rsi_period, ind.atr_period, ind.volume_period],
            "cooldown_bars": self.cooldown_bars,
            "dedup_window": self.dedup_window,
            "outcome_horizons": list(self.outcomes.horizons),
        }


@dataclass(slots=True)
class Output:
    """What one step produced, as columns (``common.columns``): every closed bar, the bars on
    which a pattern fired, the outcome horizons that the closed bars completed
    (:mod:`detectors.outcomes`), and the ticks rejected as implausible (with their index in
    the step's batch and the reason; to be dead-lettered, never applied). The live path
    encodes the columns as they are; ``bars``, ``events`` and ``outcomes`` build the records
    (replay, tests) exactly as a consumer decodes them."""

    bar_parts: list[BarColumns] = field(default_factory=list)
    event_parts: list[EventColumns] = field(default_factory=list)
    outcome_parts: list[OutcomeColumns] = field(default_factory=list)
    rejected: list[tuple[int, Tick, str]] = field(default_factory=list)  # index in the batch

    def extend(self, other: Output) -> None:
        self.bar_parts.extend(other.bar_parts)
        self.event_parts.extend(other.event_parts)
        self.outcome_parts.extend(other.outcome_parts)
        self.rejected.extend(other.rejected)

    def bar_columns(self) -> BarColumns:
        return BarColumns.concat(self.bar_parts)

    def event_columns(self) -> EventColumns:
        return EventColumns.concat(self.event_parts)

    def outcome_columns(self) -> OutcomeColumns:
        return OutcomeColumns.concat(self.outcome_parts)

    @property
    def n_bars(self) -> int:
        return sum(len(p) for p in self.bar_parts)

    @property
    def bars(self) -> list[Bar]:
        return [b for p in self.bar_parts for b in p.to_bars()]

    @property
    def events(self) -> list[PatternEvent]:
        return [e for p in self.event_parts for e in p.to_events()]

    @property
    def outcomes(self) -> list[BarOutcome]:
        return [o for p in self.outcome_parts for o in p.to_outcomes()]


@dataclass(slots=True)
class _Group:
    """Bars of one timeframe closing at one boundary, between ``_prepare`` and ``_finish``."""

    idx: npt.NDArray[np.intp]  # into the step's closed bars
    rows: I64  # rows of the row space
    t: int  # timeframe index
    prices: tuple[F64, F64, F64, F64, F64, F64, F64]  # open, high, low, close, volume, quote, taker
    feats: dict[str, F64]
    seen: I64  # bars each row has had, this one included
    values: npt.NDArray[np.int32] = field(default_factory=lambda: np.empty((0, 0), np.int32))


@dataclass(slots=True)
class _Closed:
    """The bars a step closed in one or more engines, as columns: each bar's engine (its
    position in the step, ``who``), series (the engine's) and row (the row space's)."""

    who: I64
    sid: I64
    tf: I64
    open_time: I64
    ohlcv: F64  # (7, bars): open, high, low, close, volume, quote, taker
    trades: I64
    rows: I64


class PartitionEngine:
    """State and logic of one partition (any number of series x timeframes). Its rows' state
    lives in ``space`` (:mod:`detectors.rowspace`): one shared with the other engines of a
    detector process, given to every one of them (:func:`step_engines`), or without it one of
    its own, on ``patterns`` (a new detector if None)."""

    def __init__(
        self,
        config: EngineConfig,
        patterns: PatternDetector | None = None,
        space: RowSpace | None = None,
    ) -> None:
        self.config = config
        if space is None:
            detector = patterns if patterns is not None else PatternDetector(config.patterns)
            space = row_space(config, detector)
        self.space = space
        self.patterns = space.patterns
        self.tf_ms = np.array([t.ms for t in config.timeframes], np.int64)
        self.n_tf = len(config.timeframes)
        self.agg = BarAggregator(config.timeframes, config.allowed_lateness_ms, config.dedup_window)
        self.slots: I64 = np.zeros(0, np.int64)  # the row space's slot of each series
        # Per row (series * timeframes + timeframe, the engine's own numbering), its events
        # within the cooldown horizon, oldest first: their open times and their ``recent``
        # entries as JSON. Encoded once, when the event fires; an event's ``recent`` is its
        # row's entries (``_events``), and the checkpoint embeds them as they are.
        self.recent: dict[int, tuple[list[int], list[bytes]]] = {}
        self.last_id: str | None = None

    # --- stepping ------------------------------------------------------------------------
    def apply(self, batch: TickBatch, entry_id: str | None = None) -> Output:
        """Apply one tick batch (the stream entry ``entry_id``); return what closed."""
        return step_engines([(self, batch, entry_id)])[0]

    def apply_bars(self, exchange: str, symbol: str, bars: list[list[Any]]) -> Output:
        """Whole finest-timeframe bars of one series in time order (a history file): the
        same closing, folding into coarser timeframes, features, patterns and outcomes as
        bars built from ticks (:meth:`BarAggregator.apply_bars`)."""
        closed = ClosedBars()
        self.agg.apply_bars(exchange, symbol, bars, closed)
        return process_closed([(self, closed)])[0]

    def advance_to(self, event_time_ms: int) -> Output:
        """Live idle timer (see :meth:`BarAggregator.advance_to`)."""
        closed = ClosedBars()
        self.agg.advance_to(event_time_ms, closed)
        return process_closed([(self, closed)])[0]

    def close_all(self) -> Output:
        """End of a replay: close every open bar."""
        closed = ClosedBars()
        self.agg.close_all(closed)
        return process_closed([(self, closed)])[0]

    # --- rows ----------------------------------------------------------------------------
    def ensure_series(self, n: int) -> None:
        """Slots in the row space for the first ``n`` series."""
        have = len(self.slots)
        if n > have:
            self.slots = np.concatenate([self.slots, self.space.allocate(n - have)])

    def space_rows(self, n: int) -> I64:
        """The row space's rows of the first ``n`` series, in the engine's row order."""
        self.ensure_series(n)
        return self.space.rows_of(self.slots[:n])

    def release(self) -> None:
        """Hand the rows back to the row space (the engine leaves the process: not to be
        stepped again)."""
        self.space.release(self.slots)
        self.slots = np.zeros(0, np.int64)

    # --- a group's bars and events (after its joint part, :func:`process_closed`) ----------
    def _bars_and_events(
        self,
        group: _Group,
        part: slice,
        closed: _Closed,
        out: Output,
    ) -> None:
        """The bars ``part`` of ``group`` (all this engine's) as columns, and their events."""
        idx = group.idx[part]
        t = group.t
        o, h, lo, c, v, quote, taker = (x[part] for x in group.prices)
        values = group.values[part]
        sid = closed.sid[idx]
        open_time = closed.open_time[idx]
        tf_name = self.config.timeframes[t].name
        exchanges, symbols = self.agg.exchange_of[sid].tolist(), self.agg.symbol_of[sid].tolist()
        keys = list(zip(exchanges, symbols, itertools.repeat(tf_name, len(sid)), strict=True))
        bars = np.empty(len(idx), BAR_DTYPE)
        bars["key"] = np.arange(len(idx))
        bars["open_time"] = open_time
        bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"] = o, h, lo, c, v
        bars["quote_volume"], bars["taker_buy_volume"] = quote, taker
        bars["trades"] = closed.trades[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            bars["vwap"] = np.where(v > 0, quote / v, c)
        columns = BarColumns(keys, bars)
        out.bar_parts.append(columns)
        fired_at = np.flatnonzero(values.any(axis=1))
        if len(fired_at):
            feats = {k: x[part] for k, x in group.feats.items()}
            rows = sid * self.n_tf + t
            out.event_parts.append(
                self._events(columns, values, feats=feats, fired_at=fired_at, rows=rows, t=t)
            )

    def _events(
        self,
        columns: BarColumns,
        values: npt.NDArray[np.int32],
        *,
        feats: dict[str, F64],
        fired_at: npt.NDArray[np.intp],
        rows: I64,
        t: int,
    ) -> EventColumns:
        """The pattern events of one group (the bars ``fired_at`` of ``columns``), and each
        event's ``recent`` list, which is also the engine's state (checkpointed as dicts)."""
        hits = values[fired_at]
        event, pattern = np.nonzero(hits)
        fired = np.empty(len(event), FIRED_DTYPE)
        fired["event"], fired["pattern"], fired["value"] = event, pattern, hits[event, pattern]
        table = [(k, k in INTEGER_FEATURES) for k in feats]
        matrix = feature_matrix([feats[k][fired_at] for k, _ in table], table, len(fired_at))
        # The ``recent`` entries carry only the features a cooldown reads, in the order of
        # RECENT_FEATURES (``common.contracts.encode_recent_entry``).
        column = {k: i for i, (k, _) in enumerate(table)}
        kept = [column[k] for k in RECENT_FEATURES if k in column]
        names = self.patterns.names
        bars = columns.take(fired_at)
        span = self.config.cooldown_bars * int(self.tf_ms[t])
        recents: list[Recent] = []
        state = self.recent
        open_times = bars.records["open_time"].tolist()
        # The entry carries the bar's features too, so the signals stage judges an earlier
        # bar with its own context (trend, RSI, volume) when applying a cooldown.
        kept_table = [table[i] for i in kept]
        docs = [
            d
            for d in recent_documents(open_times, names, fired, kept_table, matrix[:, kept])
            if d is not None
        ]
        if len(docs) != len(open_times):  # ``feature_matrix`` leaves no infinite feature
            raise AssertionError(f"an event's recent document could not be written: {matrix}")
        for row, open_time, doc in zip(rows[fired_at].tolist(), open_times, docs, strict=True):
            kept_events = state.get(row)
            if kept_events is None:
                recents.append([])
                state[row] = ([open_time], [doc])
                continue
            times, documents = kept_events
            horizon = open_time - span
            if times[0] < horizon:  # oldest first: what left the horizon is a prefix
                drop = bisect.bisect_left(times, horizon)
                del times[:drop], documents[:drop]
            recents.append(documents[:])
            times.append(open_time)
            documents.append(doc)
        return EventColumns(bars, list(names), fired, table, matrix, recents)

    def _emit_outcomes(self, done: Completed, sid: I64, tf_name: str, out: Output) -> None:
        """Completed (event, horizon) pairs (``sid``: each one's series) as columns: no
        record per pair, the runner zips the columns straight into the ``outcomes`` entry."""
        n = len(done.open_time)
        out.outcome_parts.append(
            OutcomeColumns(
                self.agg.exchange_of[sid].tolist(),
                self.agg.symbol_of[sid].tolist(),
                (tf_name,) * n,
                done.open_time,
                done.horizon,
                done.close,
                done.ret,
                done.mfe,
                done.mae,
                done.trend,
                done.atr_ratio,
                done.volume_ratio,
                (self.config.outcomes.cost_bps,) * n,
            )
        )


def row_space(config: EngineConfig, patterns: PatternDetector) -> RowSpace:
    """An empty row space for engines of ``config`` (:mod:`detectors.rowspace`)."""
    return RowSpace(len(config.timeframes), config.indicators, config.outcomes, patterns)


Step = tuple[PartitionEngine, TickBatch, str | None]


def step_engines(steps: Sequence[Step]) -> list[Output]:
    """Apply a tick batch to each of several engines (of one row space; each at most once),
    as one step: each engine screens and aggregates its ticks, then the bars they close are
    processed together (:func:`process_closed`). Each engine's output is what
    :meth:`PartitionEngine.apply` alone would give, in the same order."""
    if len({id(engine) for engine, _, _ in steps}) < len(steps):
        raise ValueError("an engine is stepped at most once in a step")
    items: list[tuple[PartitionEngine, ClosedBars]] = []
    rejected: list[list[tuple[int, str]]] = []
    for engine, batch, entry_id in steps:
        closed = ClosedBars()
        rejected.append(apply_plausible(engine.agg, batch, engine.config.limits, closed))
        if entry_id is not None:
            engine.last_id = entry_id
        items.append((engine, closed))
    outs = process_closed(items)
    for out, (_, batch, _), bad in zip(outs, steps, rejected, strict=True):
        if bad:
            out.rejected = rejected_ticks(batch, bad)
    return outs


def process_closed(items: Sequence[tuple[PartitionEngine, ClosedBars]]) -> list[Output]:
    """The closed bars of one or more engines of one row space -> their outputs.

    Closed bars are processed in the order (bar end, longest timeframe first), per (timeframe,
    end) group, vectorized over every series — of every engine — that closes at the same
    boundary: the groups closing at one boundary are prepared longest first (``htf_trend``
    reads the longer one's trend), then their patterns are evaluated in one call (the pattern
    program's cost is mostly per call, and its rows are independent of each other), then each
    group's outcomes are advanced and tracked, and its bars and events go to their engines'
    outputs, in the order one engine alone would give them."""
    outs = [Output() for _ in items]
    closed = _gather(items)
    if closed is None:
        return outs
    space = items[0][0].space
    engine = items[0][0]
    end = closed.open_time + engine.tf_ms[closed.tf]
    order = np.lexsort((-closed.tf, end))  # stable: a group's bars stay in engine order
    key_end, key_tf = end[order], closed.tf[order]
    cut = np.flatnonzero((key_end[1:] != key_end[:-1]) | (key_tf[1:] != key_tf[:-1])) + 1
    bounds = [0, *cut.tolist(), len(order)]
    boundary: list[_Group] = []
    for a, b in itertools.pairwise(bounds):
        boundary.append(_prepare(space, order[a:b], closed, t=int(key_tf[a])))
        if b == len(order) or key_end[b] != key_end[a]:
            _evaluate(space, boundary)
            for group in boundary:
                _finish(group, closed, items, outs)
            boundary = []
    return outs


def _gather(items: Sequence[tuple[PartitionEngine, ClosedBars]]) -> _Closed | None:
    """The engines' closed bars as one set of columns (None: none closed)."""
    parts = []
    space = items[0][0].space if items else None
    for i, (engine, bars) in enumerate(items):
        if engine.space is not space:
            raise ValueError("engines stepped together must share one row space")
        if not len(bars):
            continue
        sid, tf, open_time, vals, trades = bars.columns()
        engine.ensure_series(int(sid.max()) + 1)
        rows = engine.slots[sid] * engine.n_tf + tf
        parts.append((np.full(len(sid), i, np.int64), sid, tf, open_time, vals, trades, rows))
    if not parts:
        return None
    if len(parts) == 1:
        who, sid, tf, open_time, vals, trades, rows = parts[0]
    else:
        columns = (np.concatenate(c) for c in zip(*parts, strict=True))
        who, sid, tf, open_time, vals, trades, rows = columns
    return _Closed(who, sid, tf, open_time, vals.T, trades, rows)


def _prepare(space: RowSpace, idx: npt.NDArray[np.intp], closed: _Closed, *, t: int) -> _Group:
    """The bars ``idx`` of timeframe ``t`` closing at one boundary, each of a different row:
    their windows and indicators updated, their features."""
    rows = closed.rows[idx]
    o, h, lo, c, v, quote, taker = (closed.ohlcv[k, idx] for k in range(7))
    win = space.window
    win[:, rows, :-1] = win[:, rows, 1:]
    win[:, rows, -1] = np.stack([o, h, lo, c])
    feats = space.ind.update(rows, h, lo, c, v)
    if t + 1 < space.n_tf:
        feats["htf_trend"] = space.ind.floats["trend"][rows + 1]
    else:
        feats["htf_trend"] = np.full(len(rows), np.nan)
    return _Group(idx, rows, t, (o, h, lo, c, v, quote, taker), feats, space.ind.count[rows])


def _evaluate(space: RowSpace, groups: list[_Group]) -> None:
    """The patterns of every group of one boundary, in one call (their rows differ)."""
    rows = groups[0].rows if len(groups) == 1 else np.concatenate([g.rows for g in groups])
    seen = groups[0].seen if len(groups) == 1 else np.concatenate([g.seen for g in groups])
    w = space.window[:, rows, :]
    values = space.patterns.evaluate(w[0], w[1], w[2], w[3], seen, state=space.pstate, slots=rows)
    start = 0
    for g in groups:
        g.values = values[start : start + len(g.rows)]
        start += len(g.rows)


def _finish(
    group: _Group,
    closed: _Closed,
    items: Sequence[tuple[PartitionEngine, ClosedBars]],
    outs: list[Output],
) -> None:
    """A prepared and evaluated group's outcomes (advanced and tracked for all its rows at
    once), then its bars and pattern events, each engine's into its output."""
    idx, rows, t, feats, seen, values = (
        group.idx,
        group.rows,
        group.t,
        group.feats,
        group.seen,
        group.values,
    )
    _, h, lo, c, *_ = group.prices
    who = closed.who[idx]  # ascending: the bars of a group are in engine order
    cut = np.flatnonzero(who[1:] != who[:-1]) + 1
    parts = [slice(a, b) for a, b in itertools.pairwise([0, *cut.tolist(), len(idx)])]
    space = items[0][0].space
    tracker = space.outcomes
    if tracker.enabled:
        # First the bars before this one (a bar is never its own outcome), then this one.
        done = tracker.advance(rows, h, lo, c)
        if done is not None:
            # ``done.at`` ascends (row-major pairs) and so does ``who``: each engine's pairs
            # are one run of them.
            owner = who[done.at]
            for part in parts:
                i = int(who[part.start])
                mine = done if len(parts) == 1 else _pairs(done, *_run(owner, i))
                if len(mine.at):
                    engine = items[i][0]
                    name = engine.config.timeframes[t].name
                    engine._emit_outcomes(mine, closed.sid[idx[mine.at]], name, outs[i])
        fired_at = np.flatnonzero(values.any(axis=1))
        tracker.track(
            rows[fired_at],
            bar_count=seen[fired_at],
            open_time=closed.open_time[idx[fired_at]],
            close=c[fired_at],
            trend=feats["trend"][fired_at],
            atr=feats["atr"][fired_at],
            volume_ratio=feats["volume_ratio"][fired_at],
        )
    for part in parts:
        i = int(who[part.start])
        items[i][0]._bars_and_events(group, part, closed, outs[i])


def _run(owner: I64, i: int) -> tuple[int, int]:
    """Where value ``i`` runs in the ascending ``owner``."""
    a, b = np.searchsorted(owner, [i, i + 1]).tolist()
    return a, b


def _pairs(done: Completed, a: int, b: int) -> Completed:
    """The completed pairs ``a:b`` of ``done``."""
    return Completed(
        done.rows[a:b],
        done.at[a:b],
        done.open_time[a:b],
        done.horizon[a:b],
        done.close[a:b],
        done.ret[a:b],
        done.mfe[a:b],
        done.mae[a:b],
        done.trend[a:b],
        done.atr_ratio[a:b],
        done.volume_ratio[a:b],
    )
