"""One owned partition for one lease epoch: read, apply, write, checkpoint, hand over.

A ``PartitionRunner`` (started by :class:`detectors.service.DetectorService` once it holds
the partition's lease):

1. restores the checkpoint (or starts empty): the state and the last applied entry id;
2. reads the partition's entries in id order through consumer group ``detectors`` under one
   consumer name *per partition* (``p<n>``) with the shared
   :class:`common.stream_consumer.StreamConsumer`: first the group's pending entries above
   the last applied id (``read_pending``: what a previous owner read but never checkpointed —
   "claiming" them needs no XCLAIM because every owner of the partition is the same
   consumer), then new ones (``read_in_order``: ``XREADGROUP >`` read back the same way), so
   they are applied strictly in id order even if a stale owner grabbed some;
3. applies the entries, consecutive ones merged into one engine step of up to
   ``MERGE_TICKS`` ticks (the bars do not depend on batch boundaries, and a step's numpy
   work costs about as much for 3 ticks as for 300: ingest writes small entries between bar
   boundaries), and that step together with the other partitions' steps asked for in the
   same event-loop turn (:mod:`detectors.gather`: at a bar boundary, most of the process's
   partitions at once); an entry that does not decode is dead-lettered and counted as applied; a
   tick the engine rejects as implausible — :mod:`detectors.plausibility` — is
   dead-lettered alone, as a one-tick entry under its entry's id, with the reason;
4. XADDs the closed bars to ``bars``, the pattern events to ``patterns`` and the completed
   outcome horizons to ``outcomes``, each as one columnar entry per write (:mod:`common.columns`;
   bars and events split past ``MAX_ENTRY_RECORDS``; deterministic per-record ids in the columns:
   a crash before the checkpoint replays the same records with the same ids, maybe grouped
   differently);
5. every ``CHECKPOINT_INTERVAL`` ms, and before handing over, writes the checkpoint and XACKs
   the covered entries in one fenced Lua call; a failed fence means the lease was lost, and
   the runner stops without acking;
6. once caught up (a read that was not a full page), lets the next entries gather for up to
   ``COALESCE_MS`` before reading again (:func:`coalesce_delay_ms`) — but not from
   ``COALESCE_MS`` of event time before the end of the partition's earliest open bar, nor
   while a bar past its end is open (its series' next tick closes it, whatever the
   lateness): a live feed's trickle of small entries (ingest writes one per partition every
   few ms) is applied a few steps a second instead of hundreds, and the entry that closes a
   bar is still read as soon as it is written. (At 10,000 ticks/s over 16 partitions the
   steps of those small entries kept two detectors at 0.69 of the two cores, 0.37
   coalesced, and every boundary's burst drained in what they left; issue 17.) A bar's
   closing is delayed by at most ``COALESCE_MS``, and only if the feed's event time jumps;
   the results do not depend on how entries are batched. Between bar boundaries, entries
   none of whose ticks can close a bar (:meth:`BarAggregator.may_close`) and that end
   before that last ``COALESCE_MS`` are not applied at once but held and
   read past, for up to ``HOLD_WINDOWS`` x ``COALESCE_MS`` and ``MERGE_TICKS`` ticks, so a
   step comes every few reads instead of every read (in the paced run the detectors used
   0.21–0.22 cores against 0.25–0.29); the wait before the next read counts their event
   time. Nothing comes out later (a held tick closes nothing), and from the last
   ``COALESCE_MS`` before a bar's end entries are applied as they come, so the step of the
   entry closing it has little else to do. Held entries stay pending above the checkpoint,
   like any unapplied ones: the next owner reads them.

Steps 3-5 run in work slices of about ``WORK_SLICE_MS``, yielding to the event loop (and to
a due heartbeat/renewal round) in between, so an overloaded detector keeps its leases
(``docs/reliability.md``, "Overload").
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from redis.exceptions import RedisError

from common.columns import encode_outcome_parts
from common.contracts import TICK_DTYPE, TickBatch
from common.errors import DecodeError
from common.names import GROUP_DETECTORS
from common.redis import AnyRedis
from common.stream_consumer import Entry, StreamConsumer
from detectors import checkpoint
from detectors.bars import NONE
from detectors.partition import Output, PartitionEngine

if TYPE_CHECKING:
    from detectors.service import DetectorService

#: At most this many ticks (and symbol-table entries) in one engine step: the consecutive
#: entries of a read are applied together up to it (:func:`merge_run_end`). Small: only the
#: few-tick entries between boundaries need merging, and a step's work (the bars its ticks
#: close) is not known before it runs, while the work slice is checked between steps; a
#: merged step is no larger than one entry ingest writes routinely (up to 1,000 ticks), so
#: it cannot hold a flooded partition's runner past its lease renewal any longer than that.
MERGE_TICKS = 256
#: Entries that cannot close a bar are held for up to this many ``COALESCE_MS`` (step 6).
HOLD_WINDOWS = 2
_FULL = 1 << 62  # the size of an entry whose fields do not say: more than any limit


def merge_run_end(entries: list[Entry], start: int, limit: int = MERGE_TICKS) -> int:
    """End of the run of entries from ``start`` applied as one batch: as many as fit in
    ``limit`` ticks and symbols by their ``n`` and ``s`` fields (at least one; an entry whose
    fields do not say counts as full, and is decoded, and refused, on its own)."""
    ticks = symbols = 0
    end = start
    while end < len(entries):
        n, s = _sizes(entries[end].fields)
        ticks, symbols = ticks + n, symbols + s
        if end > start and (ticks > limit or symbols > limit):
            break
        end += 1
        if ticks >= limit or symbols >= limit:
            break
    return end


def coalesce_delay_ms(until_close_ms: int | None, window_ms: int) -> int:
    """How long a caught-up runner waits before reading again: ``window_ms``, less what would
    take it into the last ``window_ms`` (event time) before its earliest open bar's end
    (``until_close_ms``, :meth:`BarAggregator.until_close`); 0 there, past it (a bar past its
    end closes with its series' next tick), and with no open bar."""
    if until_close_ms is None or window_ms <= 0:
        return 0
    return max(0, min(window_ms, until_close_ms - window_ms))


def event_times_ms(entries: list[Entry]) -> npt.NDArray[np.int64] | None:
    """The event times (ms) of the ticks of ``ticks:{p}`` entries, read off their records
    without decoding the rest; None if one's records are not there (decoding refuses it)."""
    try:
        parts = [np.frombuffer(e.fields[b"a"], TICK_DTYPE)["ts"] for e in entries]
    except (KeyError, ValueError, TypeError):
        return None
    return np.concatenate(parts) // 1_000_000 if parts else np.zeros(0, np.int64)


def _sizes(fields: dict[bytes, bytes]) -> tuple[int, int]:
    """Ticks and (an upper bound of) symbols of a ``ticks:{p}`` entry from its raw fields:
    the symbol table has at most as many entries as it has commas plus one."""
    try:
        return int(fields[b"n"]), fields[b"s"].count(b",") // 3 + 1
    except (KeyError, ValueError, TypeError):
        return _FULL, _FULL


class PartitionRunner:
    """Owns one partition for one lease epoch (see the module docstring)."""

    def __init__(self, service: DetectorService, partition: int, epoch: int) -> None:
        self.service = service
        self.p = partition
        self.epoch = epoch
        self.stream = service.keys.ticks(partition)
        self.consumer = f"p{partition}"
        self.hand_over = False
        self.log = service.log
        self.lost = False
        self.checkpointed_at = time.monotonic()
        self.unacked: list[str] = []
        self.engine: PartitionEngine | None = None
        self.last_applied = "0-0"
        # Whether entries above ``last_applied`` may still be pending (after a restore, or
        # when the last pending read came back full): read those before blocking for more.
        self.maybe_pending = True
        # Entries read but not applied yet (step 6: none of their ticks can close a bar), in
        # id order above ``last_applied``, when the first of them was read, and their highest
        # event time (ms).
        self.held: list[Entry] = []
        self.held_since = 0.0
        self.held_max_ms = NONE
        self.max_ts_seen = 0
        self.progress_wall_ms = time.time() * 1000
        self.trimmed_at = time.monotonic()
        # Ticks applied, and the engine's late/duplicate counts, when last recorded in the
        # metrics (recorded once per work slice, not per entry).
        self.ticks_applied = 0
        self._recorded = (0, 0, 0)
        self.stream_consumer = StreamConsumer.from_settings(
            self.redis,
            service.settings.common,
            group=GROUP_DETECTORS,
            streams=[self.stream],
            consumer=self.consumer,
        )

    @property
    def redis(self) -> AnyRedis:
        assert self.service.redis is not None
        return self.service.redis

    async def run(self) -> None:
        try:
            await self._restore()
            await self._loop()
            if not self.lost:
                await self._checkpoint()
                if not self.lost:
                    await self.service.ownership.release(self.p, self.epoch)
                    self.service.released(self)
        except (RedisError, OSError) as e:
            # Keep the lease un-renewed: it expires, and the partition is restored from its
            # checkpoint by whoever acquires it next (maybe this process again).
            self.log.error("partition_failed", partition=self.p, error=repr(e))
        finally:
            self.service.runners.pop(self.p, None)
            if self.engine is not None:  # its rows go back to the process's row space
                self.engine.release()

    async def _restore(self) -> None:
        settings = self.service.settings
        await self.stream_consumer.ensure_groups("0")
        data = await self.service.ownership.load_checkpoint(self.p)
        if data is None:
            self.engine = PartitionEngine(settings.engine, space=self.service.rows)
        else:
            self.engine = checkpoint.loads(data, settings.engine, space=self.service.rows)
        self.last_applied = self.engine.last_id or "0-0"
        counters = self.engine.agg.counters
        self._recorded = (0, counters.late, counters.duplicates)
        self.log.debug("partition_restored", partition=self.p, last_id=self.last_applied)

    async def _read(self) -> list[Entry]:
        """The next entries above the last applied (or held) one, in id order: first
        what is still pending under the partition's consumer (after a restore, or when the
        last page came back full), else new entries read back in order with any pending
        ones; with entries held, waiting no longer than they may be held."""
        consumer = self.stream_consumer
        after = self.held[-1].id if self.held else self.last_applied
        if self.maybe_pending:
            entries = await consumer.read_pending(after)
            self.maybe_pending = len(entries) == consumer.count
            if entries:
                return entries
        if not self.held:
            entries = await consumer.read_in_order(after)
        else:
            left = self.held_since + self._hold_s() - time.monotonic()
            entries = await consumer.read_in_order(after, block_ms=max(1, int(left * 1000)))
        # A full page may have left more pending behind it (e.g. a stale owner's reads).
        self.maybe_pending = len(entries) == consumer.count
        return entries

    @property
    def leaving(self) -> bool:
        """Whether this runner must stop taking work (handing over, lease lost, stopping)."""
        return self.hand_over or self.lost or self.service.stopping

    async def _loop(self) -> None:
        settings = self.service.settings
        while not self.leaving:
            entries = await self._read()
            if entries and self._hold(entries):
                await self._coalesce()
                continue
            if self.held:
                entries, self.held = self.held + entries, []
            if entries:
                await self._apply_in_slices(entries)
                await self._coalesce()
                continue
            out = self._idle_close() if settings.idle_close_ms else Output()
            await self._write(out, entries)
            await self._maybe_checkpoint()

    async def _apply_in_slices(self, entries: list[Entry]) -> None:
        """Apply a read batch in work slices of about ``WORK_SLICE_MS`` each.

        After each slice its outputs are written, a checkpoint is taken when due and the event
        loop gets a turn, so however long the batch takes, the service's heartbeat and lease
        renewal (and this process's other partitions) wait at most about a slice, and the
        partition's progress is checkpointed as it goes: a flooded partition keeps its lease
        and moves forward. Once the runner is leaving, the rest of the batch stays pending
        (above the last applied id) for the next read or the next owner.
        """
        budget = self.service.settings.work_slice_ms / 1000
        done = 0
        while done < len(entries) and not self.leaving:
            start = done
            out = Output()
            deadline = time.monotonic() + budget
            while done < len(entries):
                end = merge_run_end(entries, done, MERGE_TICKS)
                out.extend(await self._apply(entries[done:end]))
                done = end
                if time.monotonic() >= deadline:
                    break
            await self._write(out, entries[start:done])
            await self._maybe_checkpoint()
            await asyncio.sleep(0)
            await self.service.yield_to_renewal()
        if done < len(entries):
            self.maybe_pending = True

    def _hold(self, entries: list[Entry]) -> bool:
        """Keep ``entries`` (just read) unapplied with the held ones (step 6), if none of
        their ticks can close a bar (``BarAggregator.may_close``) or lies in the last
        ``COALESCE_MS`` before one's end, they hold at most ``MERGE_TICKS`` ticks and the
        first was read less than ``HOLD_WINDOWS`` x ``COALESCE_MS`` ago."""
        engine = self.engine
        if not self._hold_s() or self.maybe_pending or engine is None:
            return False
        now = time.monotonic()
        if self.held and now - self.held_since >= self._hold_s():
            return False
        held = self.held + entries
        if merge_run_end(held, 0) < len(held):
            return False
        times = event_times_ms(held)
        if times is None or engine.agg.may_close(times):
            return False
        highest = int(times.max())
        # In the last ``COALESCE_MS`` before a bar's end they are applied as they come, so
        # that the step of the entry closing it has little else to do.
        until = engine.agg.until_close(highest)
        if until is not None and until <= self.service.settings.coalesce_ms:
            return False
        if not self.held:
            self.held_since = now
        self.held, self.held_max_ms = held, highest
        return True

    def _hold_s(self) -> float:
        """How long entries may be held (step 6): ``HOLD_WINDOWS`` times ``COALESCE_MS``."""
        return HOLD_WINDOWS * self.service.settings.coalesce_ms / 1000

    async def _coalesce(self) -> None:
        """After applying a read: if caught up, wait for more entries to gather (step 6)."""
        engine = self.engine
        if self.maybe_pending or self.leaving or engine is None:
            return
        # The held entries' event times count: the bar's end is as near as they say.
        held_ms = self.held_max_ms if self.held else NONE
        delay = coalesce_delay_ms(
            engine.agg.until_close(held_ms), self.service.settings.coalesce_ms
        )
        if delay:
            await asyncio.sleep(delay / 1000)

    async def _maybe_checkpoint(self) -> None:
        interval = self.service.settings.checkpoint_interval_ms / 1000
        if self.unacked and time.monotonic() - self.checkpointed_at >= interval:
            await self._checkpoint()
            await self._maybe_trim()

    async def _maybe_trim(self) -> None:
        """Trim ``ticks:{p}`` below what every group acked (``TRIM_INTERVAL_S``; 0 = never)."""
        every = self.service.settings.common.trim_interval_s
        if every and not self.lost and time.monotonic() - self.trimmed_at >= every:
            self.trimmed_at = time.monotonic()
            await self.stream_consumer.trim(self.stream)

    async def _apply(self, entries: list[Entry]) -> Output:
        """Apply consecutive entries as one tick batch (``TickBatch.concat``: the bars do
        not depend on batch boundaries, and a few-tick entry costs the engine almost as much
        as a thousand-tick one). An entry that does not decode is dead-lettered; a tick the
        engine rejects is dead-lettered alone, as a one-tick entry under its entry's id."""
        engine = self.engine
        assert engine is not None
        self.last_applied = entries[-1].id
        self.unacked.extend(entry.id for entry in entries)
        metrics = self.service.metrics
        batches: list[TickBatch] = []
        owners: list[Entry] = []
        letters: list[tuple[Entry, BaseException | str, str]] = []
        for entry in entries:
            try:
                if not entry.fields:
                    raise DecodeError("missing_entry", "entry deleted before it was applied")
                batches.append(TickBatch.decode(entry.fields))
                owners.append(entry)
            except DecodeError as e:
                metrics.bad_entries.labels(e.reason).inc()
                letters.append((entry, e, e.reason))
        if not batches:
            await self._dead_letters(letters)
            engine.last_id = entries[-1].id
            return Output()
        batch = TickBatch.concat(batches)
        out = await self.service.steps.apply(engine, batch, entries[-1].id)
        metrics.steps.inc()
        if out.rejected:  # not applied: each goes to the DLQ on its own, as a one-tick entry
            ends = np.cumsum([len(b) for b in batches])
            for i, tick, reason in out.rejected:
                metrics.implausible.labels(reason).inc()
                entry = owners[int(np.searchsorted(ends, i, side="right"))]
                one = Entry(entry.stream, entry.id, TickBatch.from_ticks([tick]).encode())
                detail = f"{tick.exchange}:{tick.symbol} id {tick.trade_id} price {tick.price} "
                detail += f"qty {tick.qty} time {tick.ts} ns received {tick.recv_ts} ns"
                letters.append((one, detail, reason))
            out.rejected = []
        if letters:
            await self._dead_letters(letters)
        self.ticks_applied += len(batch)
        if engine.agg.max_ts > self.max_ts_seen:
            self.max_ts_seen = engine.agg.max_ts
            self.progress_wall_ms = time.time() * 1000
        return out

    async def _dead_letters(self, letters: list[tuple[Entry, BaseException | str, str]]) -> None:
        """XADD ``(entry, error, reason)`` dead letters to ``dlq:ticks:{p}`` in one pipeline;
        they are acked with the next checkpoint, like every applied entry."""
        await self.stream_consumer.add_dead_letters(letters)

    def _idle_close(self) -> Output:
        """Close bars by extrapolated event time when the partition has gone quiet."""
        engine = self.engine
        assert engine is not None
        idle = time.time() * 1000 - self.progress_wall_ms
        if engine.agg.max_ts <= 0 or idle < self.service.settings.idle_close_ms:
            return Output()
        return engine.advance_to(engine.agg.max_ts + int(idle))

    def _record_counts(self) -> None:
        """Ticks applied, late and duplicate since the last record: one update per slice."""
        engine = self.engine
        assert engine is not None
        counters = engine.agg.counters
        now = (self.ticks_applied, counters.late, counters.duplicates)
        ticks, late, dups = (a - b for a, b in zip(now, self._recorded, strict=True))
        self._recorded = now
        metrics = self.service.metrics
        if ticks:
            metrics.ticks.inc(ticks)
        if late:
            metrics.late.inc(late)
        if dups:
            metrics.duplicates.inc(dups)

    async def _write(self, out: Output, entries: list[Entry]) -> None:
        metrics = self.service.metrics
        if entries:
            self._record_counts()
        if out.bar_parts:
            bars = out.bar_columns()
            events = out.event_columns()
            pipe = self.redis.pipeline(transaction=False)
            keys = self.service.keys
            # One columnar entry per write (``common.columns``); the records in it carry their
            # own deterministic ids (key + open time), so a replay after a crash writes the same
            # records again and every consumer's dedup (by record id) still holds.
            # Events first: they are what the signals stage waits for (bars only feed the sink),
            # and Redis wakes a blocked reader as soon as the command that fed it has run.
            for fields in events.encode():
                pipe.xadd(keys.patterns, dict(fields.items()))
            for fields in bars.encode():
                pipe.xadd(keys.bars, dict(fields.items()))
            if out.outcome_parts:  # one entry per write: the records carry their own ids
                outcomes = encode_outcome_parts(out.outcome_parts)
                pipe.xadd(keys.outcomes, dict(outcomes.items()))
            await pipe.execute()
            # One inc per label, not per bar: a boundary closes a bar for every series at once.
            for timeframe, n in bars.timeframe_counts().items():
                metrics.bars.labels(timeframe).inc(n)
            for name, n in events.pattern_counts().items():
                metrics.patterns.labels(name).inc(n)
        now_ms = time.time() * 1000
        for entry in entries:
            metrics.latency.observe(max(0.0, now_ms - int(entry.id.split("-")[0])) / 1000)

    async def _checkpoint(self) -> None:
        engine = self.engine
        if engine is None:
            return
        state = checkpoint.dumps(engine)
        ok = await self.service.ownership.write_checkpoint(self.p, self.epoch, state, self.unacked)
        if not ok:
            self.lost = True
            self.service.metrics.leases_lost.inc()
            self.log.warning("checkpoint_fenced", partition=self.p, epoch=self.epoch)
            return
        self.unacked = []
        self.checkpointed_at = time.monotonic()
        self.service.metrics.checkpoint_bytes.labels(str(self.p)).set(len(state))
