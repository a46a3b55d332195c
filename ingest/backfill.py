"""Gap backfill: trades missing between two trade ids are fetched from the exchange's public
REST history and written *before* the live trades that follow the gap.

When the deduper reports a gap before trade ``n`` of a symbol (ids ``lo..n-1`` missing:
a reconnect, or a restart that resumed from the last id written, ``ingest.lastwritten``),
the connection hands that trade to :class:`GapFiller` instead of the writer. The filler
*holds* the symbol: its later live trades are held too, in arrival order, while one task
pages the exchange's REST history (``ingest.rest``, request and parsing in the adapter) for
``lo..n-1``. Then, in one synchronous step, the recovered trades (in id order) followed by
the held ones go to the writer and the hold ends — so each symbol's trades reach
``ticks:{p}`` in id order and the detectors see the gap filled in sequence, never a trade
older than one already applied.

Bounded, whatever the REST endpoint does: a backfill gives up after ``timeout_s`` from the
gap (the held trades are released, late by at most that: keep it well below the detectors'
``ALLOWED_LATENESS_MS``), fetches at most ``max_trades`` per gap, runs at most
``concurrency`` at a time per exchange, and the held trades of an exchange never exceed
``hold_max`` (the hold that would pass it is released at once, its backfill given up). A
down endpoint therefore costs a short delay and a count, and ingest goes on.

Counted (``ingest.metrics``), per exchange: every gap still counts in ``gaps_total`` and
``missing_trades_total`` as before; of its missing trades, ``backfill_recovered_trades_total``
were recovered and ``backfill_unrecovered_trades_total`` were not (the two add up to the
missing trades of every gap that ended), ``backfill_requests_total`` REST requests, and
``backfill_failures_total{reason}`` backfills given up (http, timeout, bad_response,
hold_full, stopped). Exchanges without a usable REST history (``history_path`` None, or
backfill off) count every missing trade as unrecovered at once.

:func:`gap_trades` is the pure part: which trades of a page belong to the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from common.contracts import Tick
from common.logging import get_logger
from common.names import Keys, partition_of
from ingest.deadletter import RateLimitedLog
from ingest.lastwritten import decode, member
from ingest.metrics import IngestMetrics
from ingest.rest import HistoryClient, HistoryError
from ingest.sequence import TradeDeduper
from ingest.settings import DEFAULTS, IngestSettings
from ingest.venues import ExchangeAdapter
from ingest.venues.base import HistoryQuery
from ingest.writer import TickWriter

HOLD_FULL, STOPPED, TIMEOUT = "hold_full", "stopped", "timeout"


def gap_trades(ticks: Sequence[Tick], lo: int, hi: int) -> list[Tick]:
    """The trades of ``ticks`` (a page, any order) with ids in ``lo..hi``, in id order,
    each id once: what a backfill may write for that gap."""
    by_id: dict[int, Tick] = {}
    for t in ticks:
        if t.trade_id.isdigit():
            n = int(t.trade_id)
            if lo <= n <= hi and n not in by_id:
                by_id[n] = t
    return [by_id[n] for n in sorted(by_id)]


@dataclass(slots=True)
class _Gap:
    """One symbol's gap being filled: ids ``lo..hi``, trades recovered so far, live trades
    held meanwhile (the first is the one after the gap)."""

    symbol: str
    native: str
    lo: int
    hi: int
    held: list[Tick]
    recovered: list[Tick] = field(default_factory=list)
    unrecovered_extra: int = 0  # missing trades of further gaps opened while held
    task: asyncio.Task[None] | None = None
    done: bool = False


@dataclass(frozen=True, slots=True)
class BackfillOptions:
    """Bounds of the backfill of one exchange (``IngestSettings``)."""

    timeout_s: float = DEFAULTS.backfill_timeout_s
    max_trades: int = DEFAULTS.backfill_max_trades
    hold_max: int = DEFAULTS.backfill_hold_max
    concurrency: int = 4

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> BackfillOptions:
        return cls(
            timeout_s=settings.backfill_timeout_s,
            max_trades=settings.backfill_max_trades,
            hold_max=settings.backfill_hold_max,
        )


class GapFiller:
    """Holds and backfills the gaps of one exchange (shared by its connections, like the
    deduper). ``client`` None: the exchange's gaps are counted unrecovered, nothing held."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        client: HistoryClient | None,
        *,
        writer: TickWriter,
        deduper: TradeDeduper,
        metrics: IngestMetrics,
        redis: Any,
        keys: Keys,
        options: BackfillOptions | None = None,
    ) -> None:
        self.adapter = adapter
        self.client = client
        self.writer = writer
        self.deduper = deduper
        self.redis = redis
        self.keys = keys
        self.options = options or BackfillOptions()
        self.gaps: dict[str, _Gap] = {}  # normalized symbol -> its gap being filled
        self.held_count = 0
        self._slots = asyncio.Semaphore(self.options.concurrency)
        ex = adapter.name
        self._m_recovered = metrics.backfill_recovered.labels(ex)
        self._m_unrecovered = metrics.backfill_unrecovered.labels(ex)
        self._failures = metrics.backfill_failures
        metrics.backfill_held.labels(ex).set_function(lambda: self.held_count)
        self._log = get_logger("ingest.backfill", exchange=ex)
        self._logs = RateLimitedLog()

    @property
    def enabled(self) -> bool:
        return self.client is not None

    # --- called by the connections (sync, in arrival order) ---------------------------
    def open_gap(self, tick: Tick, missing: int) -> bool:
        """A gap of ``missing`` ids before ``tick`` (already counted as a gap). True: the
        tick is held (the caller must not write it); False: write it now."""
        gap = self.gaps.get(tick.symbol)
        if gap is not None:  # a further gap while this symbol is held: not backfilled
            gap.unrecovered_extra += missing
            self.hold(tick)
            return True
        if self.client is None:
            self._m_unrecovered.inc(missing)
            return False
        if self.held_count >= self.options.hold_max:
            self._failures.labels(self.adapter.name, HOLD_FULL).inc()
            self._m_unrecovered.inc(missing)
            return False
        n = int(tick.trade_id)
        gap = _Gap(tick.symbol, tick.native_symbol, n - missing, n - 1, [tick])
        self.gaps[tick.symbol] = gap
        self.held_count += 1
        gap.task = asyncio.get_running_loop().create_task(
            self._fill(gap), name=f"backfill.{self.adapter.name}.{tick.symbol}"
        )
        return True

    def hold(self, tick: Tick) -> None:
        """Hold a live trade of a symbol being backfilled (``tick.symbol in gaps``)."""
        gap = self.gaps[tick.symbol]
        gap.held.append(tick)
        self.held_count += 1
        if self.held_count > self.options.hold_max:
            self._finish(gap, HOLD_FULL)

    # --- the backfill task -----------------------------------------------------------
    async def _fill(self, gap: _Gap) -> None:
        reason: str | None = None
        try:
            async with asyncio.timeout(self.options.timeout_s):
                async with self._slots:
                    await self._fetch(gap)
        except TimeoutError:
            reason = TIMEOUT
        except HistoryError as e:
            reason = e.reason
            if self._logs.allow("backfill", e.reason) is not None:
                self._log.warning("backfill_failed", symbol=gap.symbol, error=str(e))
        except asyncio.CancelledError:
            reason = STOPPED
            raise
        finally:
            self._finish(gap, reason)
        if not self.writer.offer(()):
            await self.writer.wait_for_space()

    async def _fetch(self, gap: _Gap) -> None:
        """Page the history for ``gap.lo..gap.hi`` (at most ``max_trades``) into
        ``gap.recovered``, in id order."""
        client = self.client
        assert client is not None
        adapter = self.adapter
        limit = adapter.history_max_limit
        hi = min(gap.hi, gap.lo + self.options.max_trades - 1)
        next_id = gap.lo
        since = await self._since(gap) if adapter.history_by_time else None
        for _ in range(-(-(hi - gap.lo + 1) // limit) + 2):  # pages needed, plus slack
            if next_id > hi:
                return
            if adapter.history_by_time:
                query = HistoryQuery(gap.native, None, since, limit)
            else:
                query = HistoryQuery(gap.native, next_id, None, min(limit, hi - next_id + 1))
            page = await client.page(query)
            new = gap_trades(page.ticks, next_id, hi)
            gap.recovered += new
            ids = [int(t.trade_id) for t in page.ticks if t.trade_id.isdigit()]
            if not ids or max(ids) < next_id:
                return  # nothing at or past where we are: the exchange has no more
            next_id = max(next_id, max(ids) + 1)
            if adapter.history_by_time:
                if page.next_since_ns is None or (
                    since is not None and page.next_since_ns <= since
                ):
                    return  # the cursor does not move on
                since = page.next_since_ns

    async def _since(self, gap: _Gap) -> int:
        """Where a by-time history starts: the time of the last trade written before the
        gap (``ingest.lastwritten``; an earlier one only costs more rows), else the first
        held trade's time (then what lies before it is not found: counted)."""
        p = partition_of(self.adapter.name, gap.symbol, self.keys.partitions)
        raw = await self.redis.hget(
            self.keys.ingest_last_ids(p), member(self.adapter.name, gap.symbol)
        )
        last = decode(raw) if raw is not None else None
        return last.ts - 1 if last is not None else gap.held[0].ts - 1

    def _finish(self, gap: _Gap, reason: str | None) -> None:
        """End the hold (once): recovered then held trades to the writer, counts."""
        if gap.done:
            return
        gap.done = True
        if gap.task is not None and not gap.task.done() and reason == HOLD_FULL:
            gap.task.cancel()
        del self.gaps[gap.symbol]
        self.held_count -= len(gap.held)
        recovered = gap.recovered
        missing = gap.hi - gap.lo + 1 + gap.unrecovered_extra
        unrecovered = missing - len(recovered)
        self.deduper.remember_filled(self.adapter.name, gap.symbol, [t.trade_id for t in recovered])
        self._m_recovered.inc(len(recovered))
        self._m_unrecovered.inc(unrecovered)
        if reason is not None:
            self._failures.labels(self.adapter.name, reason).inc()
        self._log.info(
            "backfill_done",
            symbol=gap.symbol,
            missing=missing,
            recovered=len(recovered),
            unrecovered=unrecovered,
            held=len(gap.held),
            failed=reason,
        )
        self.writer.offer([*recovered, *gap.held])

    async def close(self) -> None:
        """Stop every backfill; what was recovered and held is handed to the writer."""
        tasks = [g.task for g in self.gaps.values() if g.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.client is not None:
            await self.client.close()
