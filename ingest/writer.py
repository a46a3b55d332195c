"""The partitioned tick writer: ticks in, ``ticks:{p}`` micro-batches out.

Connections hand their parsed ticks to :meth:`TickWriter.put` (or ``offer``), or — the batch
path — trades in columns from ``parse_many`` to ``offer_columns``. Both go straight to the
writer's :class:`~ingest.cutter.BatchCutter` (pure: buffering by partition, packing columns
with numpy without a ``Tick`` per trade, cutting entries of at most ``batch_size`` ticks);
this module is the async shell around it: one flusher task appends each flush's
:class:`~common.contracts.TickBatch` entries with one non-transactional pipeline, retries,
and makes producers wait while the cutter is full. A flush happens as soon as
``batch_size`` ticks are buffered, or ``flush_interval`` seconds after the oldest unflushed
tick arrived — the latency bound —, or at once when a tick that closes bars arrives (the
cutter's boundary ticks, ``boundary_flush_ms``).

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

from redis.exceptions import NoScriptError, RedisError

from common.backoff import BackoffPolicy
from common.contracts import Tick, TickBatch
from common.logging import get_logger
from common.names import Keys
from ingest.cutter import BatchCutter, cut_size
from ingest.lastwritten import APPEND_LUA, batch_last_ids
from ingest.metrics import IngestMetrics
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
    """Appends what its ``BatchCutter`` buffers to ``ticks:{p}`` in micro-batches.

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
        boundary_flush_ms: int = DEFAULTS.boundary_flush_ms,
        max_pending: int = DEFAULTS.queue_bound,
        maxlen: int | None = None,
        retry_max_delay: float = 5.0,
        sequential: frozenset[str] = frozenset(),
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._metrics = metrics
        self.cutter = BatchCutter(
            keys.partitions,
            batch_size=batch_size,
            max_pending=max_pending,
            wake=self._work,
            boundary_ns=int(boundary_flush_ms * 1_000_000),
        )
        # The producers' calls go straight to the cutter (bound here, not wrapped: they
        # run once a frame).
        self.offer = self.cutter.offer
        self.offer_columns = self.cutter.offer_columns
        self.flush_interval = flush_interval
        self._maxlen = maxlen
        # Full jitter from 0.1 s (first retry: attempt 1) up to retry_max_delay.
        self._retry = BackoffPolicy(_RETRY_BASE_S, retry_max_delay)
        self._sequential = sequential  # exchanges whose last written id is remembered
        self._script_sha: str | None = None  # append.lua, loaded on first write / NOSCRIPT
        # Loggers are made per instance, after main() configured logging.
        self._log = get_logger("ingest.writer")
        self._wake = asyncio.Event()  # the flusher has work (or must stop)
        self._space = asyncio.Event()  # set when the cutter has room again
        self._idle = asyncio.Event()  # nothing buffered nor in flight
        self._idle.set()
        self._closing = False
        self._aborted = False
        self._task: asyncio.Task[None] | None = None
        self.written = 0  # ticks appended so far (for tests and benchmarks)
        self._writer_id = uuid.uuid4().hex[:12].encode()
        self._seq = 0
        self._last_id: dict[str, bytes | str] = {}  # stream -> id of our last entry there
        metrics.writer_pending.set_function(lambda: self.cutter.pending)

    def _work(self) -> None:
        """The cutter has something to flush (its first tick, or a full batch)."""
        self._idle.clear()
        self._wake.set()

    # --- producer side -------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Ticks buffered or being written."""
        return self.cutter.pending

    @property
    def flush_due(self) -> bool:
        """A full batch is buffered: a producer that never awaits should yield now."""
        return self.cutter.flush_due

    async def put(self, ticks: Iterable[Tick]) -> None:
        """Buffer ``ticks``, then wait (backpressure) while the buffer is at its bound."""
        if not self.offer(ticks):
            await self.wait_for_space()

    async def wait_for_space(self) -> None:
        """Wait until the buffer is below its bound (counted as backpressure)."""
        if not self.cutter.full:
            return
        started = time.monotonic()
        self._metrics.writer_backpressure.inc()
        self._space.clear()  # the flusher sets it once the cutter has room
        await self._space.wait()
        self._metrics.writer_backpressure_seconds.inc(time.monotonic() - started)

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
        self._closing = self.cutter.closed = True
        self._wake.set()
        if self._task is not None:
            await self._task  # a flusher that failed raises its error here

    def abort(self) -> None:
        """Give up on buffered ticks (shutdown grace exceeded); counted, not silent."""
        self._aborted = True
        self._closing = self.cutter.closed = True
        self._wake.set()

    # --- flusher -------------------------------------------------------------------
    async def _run(self) -> None:
        cutter = self.cutter
        while True:
            if cutter.empty:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._closing and cutter.pending < cutter.batch_size and not cutter.urgent:
                first = cutter.first_at if cutter.first_at is not None else time.monotonic()
                delay = first + self.flush_interval - time.monotonic()
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    continue
            if self._aborted:
                n = cutter.drop()
                self._metrics.writer_abandoned.inc(n)
                self._log.error("writer_abandoned", ticks=n)
                self._idle.set()
                self._space.set()
                return
            cut = cutter.take()
            n = await self._write(cut_size(cut), self._entries(cutter.batches(cut)))
            if cutter.done(n):
                self._space.set()
            if cutter.empty:
                self._idle.set()

    def _entries(self, batches: list[tuple[int, TickBatch]]) -> list[_Entry]:
        """The batches as ``append.lua`` calls, each tagged with this writer's id and the
        next sequence number (a retry finds what landed by it)."""
        out: list[_Entry] = []
        for p, batch in batches:
            fields = batch.encode()
            self._seq += 1
            fields[TAG_FIELD] = b"%s:%d" % (self._writer_id, self._seq)
            out.append((self._keys.ticks(p), fields, batch_last_ids(batch, self._sequential),
                        self._keys.ingest_last_ids(p)))  # fmt: skip
        return out

    async def _write(self, n: int, entries: list[_Entry]) -> int:
        """Append ``entries`` (``n`` ticks); retry until it works or we are aborted.

        After a failed attempt the entries that did land (a pipeline can fail half-way) are
        found by their tag and not sent again, so a retry never appends a batch twice.
        """
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
