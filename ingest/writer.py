"""The partitioned tick writer: ticks in, ``ticks:{p}`` micro-batches out.

Connections hand their parsed ticks to :meth:`TickWriter.put` (or ``offer``), or — the batch
path — trades in columns from ``parse_many`` to :meth:`TickWriter.offer_columns`, which
packs them into ``TickBatch`` records with numpy (``ingest.packing``) without a ``Tick``
per trade; a partition's ticks and columns keep the order they were offered in.

The writer groups them by partition (``partition_of(exchange, symbol, P)``) and one flusher
task appends each partition's ticks as :class:`~common.contracts.TickBatch` entries (at most
``batch_size`` ticks each) with one non-transactional pipeline per flush. A flush happens as
soon as ``batch_size`` ticks are buffered, or ``flush_interval`` seconds after the oldest
unflushed tick arrived — the latency bound.

Backpressure, and why nothing is dropped
----------------------------------------
The buffer is bounded (``max_pending`` ticks). When Redis is slow or down the flusher keeps
retrying the batch it holds (capped exponential backoff with jitter) and new ticks pile up in
the buffer; once the bound is reached :meth:`put` *waits*, so the connection tasks stop
reading their sockets and the kernel's TCP window pushes back on the exchange. Memory stays
bounded and every tick is either written or still held (``alphapulse_ingest_writer_pending``
and the backpressure counters show how much and for how long).

What was written is remembered: each entry is appended by ``append.lua``, which in the same
atomic step raises the partition's ``ingest:last_id:{p}`` hash to the last trade id of each
symbol of a sequential exchange in the entry (``ingest.lastwritten``), so a restarted ingest
knows where each stream stopped and counts (and backfills) what the killed one lost.

Order: one flusher, one pipeline at a time, batches retried in order, so the ticks of a symbol
land in its stream in the order :meth:`put` received them. A pipeline can fail half-way
(connection lost after some XADDs were applied): every entry carries a tag (field ``w``,
writer id and sequence), and a retry first looks for its tags after this writer's last known
entry in each stream and sends only what is missing — a batch is never appended twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np
from redis.exceptions import NoScriptError, RedisError

from common.backoff import BackoffPolicy
from common.contracts import Tick, TickBatch
from common.logging import get_logger
from common.names import Keys, partition_of
from ingest.exchanges.batch import TradeColumns
from ingest.lastwritten import APPEND_LUA, batch_last_ids
from ingest.metrics import IngestMetrics
from ingest.packing import Slice, merge_split, pack, segment_batches
from ingest.settings import DEFAULTS

#: Extra field of every entry this writer appends: ``<writer id>:<sequence>``. Readers
#: ignore it (fields are only ever added to a contract version); retries use it.
TAG_FIELD = b"w"
#: Entries looked at, after this writer's last known one, to find what a failed try wrote.
_TAIL_SCAN = 10_000
#: The retry delay of a failed flush: base of ``common.backoff`` (attempt n: 0.05·2^n s).
_RETRY_BASE_S = 0.05
#: One entry to append: its stream, its fields, its ``append.lua`` last-id argument
#: (``batch_last_ids``) and the partition's last-id hash.
_Entry = tuple[str, dict[bytes, bytes], bytes, str]


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


class TickWriter:
    """Buffers ticks per partition and appends them to ``ticks:{p}`` in micro-batches.

    Use as ``async with TickWriter(...) as w: await w.put(ticks)``; leaving the block flushes
    everything still buffered (retrying while Redis is down, until :meth:`abort`).
    """

    def __init__(
        self,
        redis: Any,
        keys: Keys,
        metrics: IngestMetrics,
        *,
        batch_size: int = DEFAULTS.batch_size,
        flush_interval: float = DEFAULTS.flush_ms / 1000.0,
        max_pending: int = DEFAULTS.queue_bound,
        maxlen: int | None = None,
        retry_max_delay: float = 5.0,
        sequential: frozenset[str] = frozenset(),
    ) -> None:
        if batch_size < 1 or max_pending < batch_size:
            raise ValueError("need 1 <= batch_size <= max_pending")
        self._redis = redis
        self._keys = keys
        self._metrics = metrics
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._maxlen = maxlen
        # Full jitter from 0.1 s (first retry: attempt 1) up to retry_max_delay.
        self._retry = BackoffPolicy(_RETRY_BASE_S, retry_max_delay)
        self._sequential = sequential  # exchanges whose last written id is remembered
        self._script_sha: str | None = None  # append.lua, loaded on first write / NOSCRIPT
        # Loggers are made per instance, after main() configured logging.
        self._log = get_logger("ingest.writer")
        self._buffers: dict[int, list[Tick]] = {}
        # Per partition, its shares of offered columns (offer_columns), packed into batches
        # at flush time; a partition's ticks offered earlier are moved in first (as a
        # batch), so segments always precede _buffers[p].
        self._segments: dict[int, list[TickBatch | Slice]] = {}
        self._partition_cache: dict[tuple[str, str], int] = {}  # offer's, per tick
        self._partition_tables: dict[str, dict[str, int]] = {}  # offer_columns', per exchange
        self._pending = 0  # ticks buffered or in the batch being written
        self._buffered = 0  # ticks buffered, not yet taken by the flusher
        self._first_at: float | None = None  # monotonic time of the oldest unflushed tick
        self._wake = asyncio.Event()  # the flusher has work (or must stop)
        self._space = asyncio.Event()  # put() may go on
        self._space.set()
        self._full = False  # mirrors "not _space.is_set()" for the per-frame path
        self._batch_signalled = False  # the flusher was woken for the current full batch
        self._idle = asyncio.Event()  # nothing buffered nor in flight
        self._idle.set()
        self._closing = False
        self._aborted = False
        self._task: asyncio.Task[None] | None = None
        self.written = 0  # ticks appended so far (for tests and benchmarks)
        self._writer_id = uuid.uuid4().hex[:12].encode()
        self._seq = 0
        self._last_id: dict[str, bytes | str] = {}  # stream -> id of our last entry there
        metrics.writer_pending.set_function(lambda: self._pending)

    # --- producer side -------------------------------------------------------------
    @property
    def pending(self) -> int:
        return self._pending

    async def put(self, ticks: Iterable[Tick]) -> None:
        """Buffer ``ticks``, then wait (backpressure) while the buffer is at its bound."""
        if not self.offer(ticks):
            await self.wait_for_space()

    def offer(self, ticks: Iterable[Tick]) -> bool:
        """Buffer ``ticks`` (always accepted); False when the buffer is now at its bound and
        the caller must ``await wait_for_space()`` before offering more. Memory stays within
        ``max_pending`` plus one offer per producer."""
        if self._closing:
            raise RuntimeError("TickWriter is closed")
        # Inlined grouping by partition (this runs once per frame).
        buffers, cache = self._buffers, self._partition_cache
        n = 0
        for t in ticks:
            key = (t.exchange, t.symbol)
            p = cache.get(key)
            if p is None:
                p = cache[key] = partition_of(t.exchange, t.symbol, self._keys.partitions)
            buf = buffers.get(p)
            if buf is None:
                buffers[p] = [t]
            else:
                buf.append(t)
            n += 1
        return self._added(n) if n else not self._full

    def _added(self, n: int) -> bool:
        """Account for ``n`` ticks just buffered; the value ``offer`` returns."""
        self._pending += n
        self._buffered += n
        # Wake the flusher only to start the latency timer or once for a full batch, not
        # on every offer (this runs per frame: even an Event.set call shows).
        if self._first_at is None:
            self._first_at = time.monotonic()
            self._idle.clear()
            self._wake.set()
        elif self._buffered >= self.batch_size and not self._batch_signalled:
            self._batch_signalled = True
            self._wake.set()
        if self._pending >= self.max_pending:
            self._space.clear()
            self._full = True
        return not self._full

    def offer_columns(self, cols: TradeColumns) -> bool:
        """``offer`` for trades in columns (``parse_many``): packed into ``TICK_DTYPE``
        records with numpy, no ``Tick`` per trade; each partition's share is kept as a slice
        of them and becomes ``TickBatch`` entries at flush time. Same return value."""
        if self._closing:
            raise RuntimeError("TickWriter is closed")
        n = cols.size
        if not n:
            return not self._full
        parts = self._partitions_of(cols.exchange, cols.symbols)
        if parts.count(parts[0]) == n:
            self._add_segment(parts[0], Slice(pack(cols), 0, n))
            return self._added(n)
        # One stable sort groups the trades by partition (order kept within each); each
        # partition's share is a slice of one packed copy.
        of_trade = np.array(parts, dtype=np.int64)
        order = np.argsort(of_trade, kind="stable")
        packed = pack(cols, order)
        grouped = of_trade[order]
        cuts = (np.flatnonzero(grouped[1:] != grouped[:-1]) + 1).tolist()
        for p, lo, hi in zip(grouped[[0, *cuts]].tolist(), [0, *cuts], [*cuts, n], strict=True):
            self._add_segment(p, Slice(packed, lo, hi))
        return self._added(n)

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
                    table[sym] = partition_of(exchange, sym, self._keys.partitions)
            return list(map(table.__getitem__, symbols))

    def _add_segment(self, p: int, segment: Slice) -> None:
        segments = self._segments.get(p)
        if segments is None:
            segments = self._segments[p] = []
        ticks = self._buffers.pop(p, None)
        if ticks:  # offered before these columns: keep them first
            segments.append(TickBatch.from_ticks(ticks))
        segments.append(segment)

    async def wait_for_space(self) -> None:
        """Wait until the buffer is below its bound (counted as backpressure)."""
        if self._space.is_set():
            return
        started = time.monotonic()
        self._metrics.writer_backpressure.inc()
        await self._space.wait()
        self._metrics.writer_backpressure_seconds.inc(time.monotonic() - started)

    @property
    def flush_due(self) -> bool:
        """A full batch is buffered: a producer that never awaits should yield now."""
        return self._buffered >= self.batch_size

    async def drain(self) -> None:
        """Wait until everything put so far is written."""
        self._wake.set()
        await self._idle.wait()

    # --- lifecycle -----------------------------------------------------------------
    async def __aenter__(self) -> TickWriter:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tick-writer")

    @property
    def task(self) -> asyncio.Task[None]:
        """The flusher task (started): a service watches it, as its failure is fatal."""
        if self._task is None:
            raise RuntimeError("TickWriter not started")
        return self._task

    async def close(self) -> None:
        """Flush what is buffered, then stop the flusher (idempotent); raises the flusher's
        error if it failed (a bug: Redis errors are retried, never raised)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task  # a flusher that failed raises its error here

    def abort(self) -> None:
        """Give up on buffered ticks (shutdown grace exceeded); counted, not silent."""
        self._aborted = True
        self._closing = True
        self._wake.set()

    # --- flusher -------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._buffers and not self._segments:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._closing and self._pending < self.batch_size:
                first = self._first_at if self._first_at is not None else time.monotonic()
                delay = first + self.flush_interval - time.monotonic()
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    continue
            if self._aborted:
                self._metrics.writer_abandoned.inc(self._pending)
                self._log.error("writer_abandoned", ticks=self._pending)
                self._buffers.clear()
                self._segments.clear()
                self._pending = self._buffered = 0
                self._idle.set()
                self._space.set()
                self._full = False
                return
            buffers, self._buffers = self._buffers, {}
            segments, self._segments = self._segments, {}
            self._buffered = 0
            self._batch_signalled = False
            self._first_at = None
            n = await self._write(buffers, segments)
            self._pending -= n
            if self._pending < self.max_pending:
                self._space.set()
                self._full = False
            if not self._buffers and not self._segments:
                self._idle.set()

    def _entries(
        self, buffers: dict[int, list[Tick]], segments: dict[int, list[TickBatch | Slice]]
    ) -> list[_Entry]:
        size = self.batch_size
        out: list[_Entry] = []
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
            stream, last_key = self._keys.ticks(p), self._keys.ingest_last_ids(p)
            for batch in batches:
                fields = batch.encode()
                self._seq += 1
                fields[TAG_FIELD] = b"%s:%d" % (self._writer_id, self._seq)
                out.append((stream, fields, batch_last_ids(batch, self._sequential), last_key))
        return out

    async def _write(
        self, buffers: dict[int, list[Tick]], segments: dict[int, list[TickBatch | Slice]]
    ) -> int:
        """Append the buffers; retry until it works or we are aborted.

        After a failed attempt the entries that did land (a pipeline can fail half-way) are
        found by their tag and not sent again, so a retry never appends a batch twice.
        """
        n = sum(map(len, buffers.values())) + sum(len(b) for v in segments.values() for b in v)
        entries = self._entries(buffers, segments)
        attempt = 0
        started = time.monotonic()
        while True:
            try:
                if attempt:
                    entries = await self._not_yet_written(entries)
                if self._script_sha is None:
                    self._script_sha = await self._redis.script_load(APPEND_LUA)
                pipe = self._redis.pipeline(transaction=False)
                for entry in entries:
                    self._append(pipe, self._script_sha, entry)
                ids = await pipe.execute()
            except RedisError as e:
                if isinstance(e, NoScriptError):  # Redis restarted or failed over: reload
                    self._script_sha = None
                attempt += 1
                self._metrics.writer_errors.inc()
                delay = self._retry.delay(attempt)
                self._log.warning(
                    "writer_retry", error=repr(e), attempt=attempt, ticks=n, delay=delay
                )
                if self._aborted:
                    self._metrics.writer_abandoned.inc(n)
                    self._log.error("writer_abandoned", ticks=n)
                    return n
                await asyncio.sleep(delay)
                continue
            for (stream, _, _, _), entry_id in zip(entries, ids, strict=True):
                self._last_id[stream] = entry_id
            self._metrics.writer_ticks.inc(n)
            self._metrics.writer_entries.inc(len(entries))
            self._metrics.writer_flush_seconds.observe(time.monotonic() - started)
            self.written += n
            return n

    def _append(self, pipe: Any, sha: str, entry: _Entry) -> None:
        """Queue one ``append.lua`` call: XADD the entry, raise its symbols' last ids."""
        stream, fields, last_ids, last_key = entry
        args: list[bytes | str | int] = [self._maxlen or 0, len(fields)]
        for k, v in fields.items():
            args += (k, v)
        args.append(last_ids)  # one argument, whatever the number of symbols
        # execute_command, not pipe.evalsha: redis-py's cluster pipeline blocks the method
        # (its keys still route the command: both share the partition's slot).
        pipe.execute_command("EVALSHA", sha, 2, stream, last_key, *args)

    async def _not_yet_written(self, entries: list[_Entry]) -> list[_Entry]:
        """``entries`` minus those a failed attempt appended after all (found by tag among
        the entries after this writer's last known one in each stream)."""
        landed: set[bytes] = set()
        for stream in {e[0] for e in entries}:
            wanted = {e[1][TAG_FIELD] for e in entries if e[0] == stream}
            last = self._last_id.get(stream)
            if last is None:  # nothing written there yet by us: look at the tail
                page = await self._redis.xrevrange(stream, "+", "-", count=_TAIL_SCAN)
            else:
                page = await self._redis.xrange(stream, b"(" + _b(last), "+", count=_TAIL_SCAN)
            landed |= wanted & {fields.get(TAG_FIELD) for _, fields in page}
        if landed:
            self._log.info("writer_retry_skips_landed", entries=len(landed))
        return [e for e in entries if e[1][TAG_FIELD] not in landed]
