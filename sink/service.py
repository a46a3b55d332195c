"""The sink worker: stream entries in, committed rows out, acked only once stored.

One consumer group (``sink``) over ``bars``, ``patterns``, ``signals``, ``outcomes`` and, with
``STORE_TICKS``, every ``ticks:{p}``. Each read batch is decoded to rows (``sink.rows``) and
added to the pending batch; its entries are *deferred* (not acked). The pending batch is
flushed once it holds ``SINK_BATCH_ROWS`` rows or its oldest entry has waited
``SINK_FLUSH_MS``: one transaction through ``sink.store`` (idempotent, poison rows isolated),
commit, dead-letter the rejected rows, and only then ack the entries. A crash anywhere before
the ack redelivers the entries, and writing them again inserts nothing twice.

While PostgreSQL is unreachable the flush is retried with capped, jittered exponential
backoff and the loop reads nothing more (memory stays bounded by one batch), ``/readyz``
reports ``database`` unmet, and when the server is back the batch is committed and the
backlog drains. Retention without TimescaleDB's policies (Apache edition, plain PostgreSQL)
runs here every ``RETENTION_INTERVAL_S``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import asyncpg
import orjson

from common.backoff import OUTAGE, Backoff
from common.configstore import ConfigFollower, ConfigVersion
from common.dead_letters import dead_letter_fields, write_dead_letters
from common.errors import BadInput
from common.metrics import Readiness
from common.names import GROUP_SINK
from common.redis import AnyRedis
from common.stream_worker import BatchResult, Entry, StreamWorker
from sink.batch import PendingBatch
from sink.metrics import SINK_METRICS, SinkMetrics
from sink.migrate import Flavor
from sink.rows import DECODERS, TABLES, Row
from sink.settings import SinkSettings
from sink.store import Rejected, Store

# Database trouble that a retry can cure (connection refused or lost, server restarting…).
RETRYABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


class SinkService(StreamWorker):
    name = "sink"

    def __init__(
        self,
        settings: SinkSettings,
        *,
        redis: AnyRedis | None = None,
        store: Store | None = None,
        consumer: str | None = None,
        burst: bool = False,
        metrics: SinkMetrics = SINK_METRICS,
    ) -> None:
        keys = settings.common.keys()
        self.tables: dict[str, str] = {keys.bars: "bars", keys.patterns: "patterns"}
        self.tables[keys.signals] = "signals"
        self.tables[keys.outcomes] = "outcomes"
        if settings.store_ticks:
            self.tables.update(dict.fromkeys(keys.all_ticks(), "ticks"))
        # Never block on XREADGROUP for longer than a batch may wait.
        common = replace(
            settings.common, block_ms=max(1, min(settings.common.block_ms, settings.flush_ms))
        )
        super().__init__(
            common,
            group=GROUP_SINK,
            streams=list(self.tables),
            redis=redis,
            consumer=consumer,
            burst=burst,
            readiness=Readiness("connected", "consuming", "database"),
            linger_ms=settings.linger_ms,
        )
        self.sink_settings = settings
        self.store = store or Store(
            settings.database_url, method=settings.write_method, migrate=settings.migrate
        )
        self.sink_metrics = metrics
        self.pending = PendingBatch()
        self.keys = keys
        # The database outage loop: as the Redis one, capped at SINK_RETRY_MAX_S.
        self._db_retry = Backoff(replace(OUTAGE, cap_s=settings.retry_max_s))
        self._connected_before = False  # the database answered once (a later one: INFO)
        self._next_retention = 0.0
        self._next_stats_refresh = 0.0
        # Retention follows the live configuration (section ``sink``): a change applies on
        # the next retention pass (TimescaleDB: its jobs are replaced at the next step).
        self.retention_s: dict[str, int] = dict(settings.retention_s)
        self.retention_interval_s = settings.retention_interval_s
        self._policies_stale = False
        self.config = ConfigFollower(self.redis, keys, worker="sink", on_change=self._apply)

    def _apply(self, versions: Sequence[ConfigVersion]) -> None:
        """A new configuration version: take its retention settings."""
        section = versions[-1].doc.get("sink", {})
        retention = {t: int(v) for t, v in section.get("retention_s", {}).items()}
        interval = int(section.get("retention_interval_s", self.retention_interval_s))
        if retention == self.retention_s and interval == self.retention_interval_s:
            return
        self.retention_s = {**self.retention_s, **retention}
        self.retention_interval_s = interval
        self._next_retention = min(self._next_retention, time.monotonic() + interval)
        self._policies_stale = True
        self.log.info("retention_reconfigured", retention_s=self.retention_s, interval_s=interval)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        await super().start()
        await self.config.refresh()
        self._policies_stale = False  # the connect below sets the policies of what it has
        await self._connect_db()

    async def run(self) -> None:
        """The runtime's loop, with the configuration follower beside it."""
        async with self.config.running(lambda: self.stopping):
            await super().run()

    async def close(self) -> None:
        await self.store.close()
        await super().close()

    async def flush(self) -> None:
        """At stop: one last attempt to commit and ack the pending batch (no retries; what
        is not acked stays pending in Redis and is redelivered)."""
        if self.pending:
            await self.flush_pending(retry=False)

    async def _connect_db(self) -> bool:
        """Connect (and migrate) with backoff until it works or a stop is requested."""
        while not self.store.connected:
            try:
                await self.store.connect()
            except RETRYABLE as e:
                if not await self._db_failed("connect", e):
                    return False
                continue
            self._db_ok()
            # INFO for a reconnection only: the first connection is part of the start line.
            connected = self.log.info if self._connected_before else self.log.debug
            connected("database_connected", flavor=self.store.flavor.value)
            self._connected_before = True
            if self.store.flavor is Flavor.TIMESCALE:
                await self._retention_policies()
        return True

    def _db_ok(self) -> None:
        self._db_retry.reset()
        self.readiness.set("database")
        self.sink_metrics.database_up.set(1)

    async def _db_failed(self, what: str, error: BaseException) -> bool:
        """Count, log, close, sleep the backoff; False when a stop was requested meanwhile."""
        self.readiness.set("database", False)
        self.sink_metrics.database_up.set(0)
        self.sink_metrics.retries.inc()
        await self.store.close()
        delay = self._db_retry.next()
        self.log.warning(f"database_{what}_failed", error=repr(error), retry_in_s=round(delay, 3))
        return not await self.wait_stopping(delay)

    # --- the loop -----------------------------------------------------------------------
    async def step(self) -> bool:
        if not self.store.connected and not await self._connect_db():
            return False
        drained = await super().step()
        s = self.sink_settings
        if self.pending and (
            drained or self.stopping or self.pending.due(s.batch_rows, s.flush_ms / 1000)
        ):
            await self.flush_pending()
            drained = False
        if self._policies_stale and self.store.connected:
            self._policies_stale = False
            if self.store.flavor is Flavor.TIMESCALE:
                await self._retention_policies()
        if time.monotonic() >= self._next_retention:
            self._next_retention = time.monotonic() + self.retention_interval_s
            await self.apply_retention()
        if s.stats_refresh_s and time.monotonic() >= self._next_stats_refresh:
            self._next_stats_refresh = time.monotonic() + s.stats_refresh_s
            await self.refresh_stats()
        return drained

    async def handle(self, batch: list[Entry]) -> BatchResult:
        """Decode entries to rows into the pending batch; defer their acks to the flush."""
        result = BatchResult()
        for entry in batch:
            table = self.tables[entry.stream]
            try:
                rows = DECODERS[table](entry.fields)
            except BadInput as e:
                result.fail(entry, e)  # the runtime dead-letters it
                continue
            except (ArithmeticError, LookupError, TypeError, ValueError) as e:
                # A value a row cannot be built from: this entry's problem, not the batch's.
                result.fail(entry, BadInput("unencodable_row", f"{type(e).__name__}: {e}"))
                continue
            self.pending.add(entry, table, rows)
            result.defer(entry)
        return result

    async def flush_pending(self, *, retry: bool = True) -> bool:
        """Commit the pending batch, dead-letter rejected rows, ack; True when done."""
        batch = self.pending
        while True:
            if not self.store.connected and not await self._connect_db():
                return False
            started = time.perf_counter()
            try:
                rejected = await self.store.write(batch.rows)
            except RETRYABLE as e:
                if not retry or not await self._db_failed("write", e):
                    return False
                continue
            break
        self._db_ok()
        elapsed = time.perf_counter() - started
        for table, bad in rejected.items():
            await self._dead_letter_rows(batch, table, bad)
        await self.ack(batch.entries)
        m = self.sink_metrics
        m.flush_seconds.observe(elapsed)
        m.batch_rows.observe(batch.count)
        for table, rows in batch.rows.items():
            m.rows.labels(table).inc(len(rows) - len(rejected.get(table, ())))
        now_ms = time.time() * 1000
        for stream, ms in batch.newest_ms().items():
            m.lag.labels(stream).set(max(0.0, (now_ms - ms) / 1000))
        self.pending = PendingBatch()
        return True

    async def _dead_letter_rows(self, batch: PendingBatch, table: str, rejected: Rejected) -> None:
        """XADD each rejected row to ``dlq:<stream>`` with its error and origin entry."""
        rows = batch.rows[table]
        origins = batch.origins[table]
        letters: list[tuple[str, dict[bytes, bytes]]] = []
        for index, error in rejected:
            origin = origins[index]
            row: Row = rows[index]
            fields = dead_letter_fields(
                Entry(origin.stream, origin.id, {}, origin.deliveries),
                error,
                reason="rejected_row",
                group=self.group,
                consumer=self.consumer_name,
            )
            fields[b"table"] = table.encode()
            fields[b"row"] = _row_json(TABLES[table].columns, row)
            letters.append((self.keys.dlq(origin.stream), fields))
        await write_dead_letters(self.redis, letters)
        for index, error in rejected:
            origin = origins[index]
            self.log.warning(
                "row_dead_lettered",
                table=table,
                stream=origin.stream,
                id=origin.id,
                error=str(error),
            )
        self.sink_metrics.dead_rows.labels(table).inc(len(rejected))

    async def refresh_stats(self) -> None:
        """Refresh the pre-aggregated outcome statistics the console and ``stats --db`` read
        (a maintenance job like retention: a failure is logged and retried next interval)."""
        if not self.store.connected:
            return
        try:
            await self.store.refresh_outcome_stats()
        except RETRYABLE as e:
            self.log.error("stats_refresh_failed", error=repr(e))

    # --- retention ----------------------------------------------------------------------
    async def _retention_policies(self) -> None:
        """Timescale-licensed edition: TimescaleDB's own retention jobs."""
        for table, seconds in self.retention_s.items():
            try:
                await self.store.set_retention_policy(TABLES[table], seconds)
            except RETRYABLE as e:
                self.log.error("retention_policy_failed", table=table, error=repr(e))

    async def apply_retention(self) -> None:
        """Apache edition and plain PostgreSQL: drop what is older than RETENTION_<TABLE>."""
        if not self.store.connected or self.store.flavor is Flavor.TIMESCALE:
            return
        hyper = self.store.flavor.hypertables
        for table, seconds in self.retention_s.items():
            if seconds <= 0:
                continue
            try:
                n = await self.store.drop_old(TABLES[table], seconds, hyper)
            except RETRYABLE as e:
                self.log.error("retention_failed", table=table, error=repr(e))
                continue
            if n:
                self.log.info("retention_applied", table=table, removed=n, chunks=hyper)


def _row_json(columns: Sequence[str], row: Row) -> bytes:
    """A rejected row as JSON for its dead letter (``repr`` of a value JSON cannot hold,
    e.g. an integer beyond 64 bits; a short or long row keeps what it has)."""
    doc = dict(zip(columns, row, strict=False))
    try:
        return orjson.dumps(doc)
    except TypeError:
        return orjson.dumps({k: repr(v) for k, v in doc.items()})
