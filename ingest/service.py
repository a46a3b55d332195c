"""``IngestService``: every configured exchange connection feeding one tick writer.

Lifecycle (``common.lifecycle``): ``start`` builds the writer, the dead-letter writer and one
``Connection`` per symbol group (``ExchangeAdapter.connection_plan``); ``run`` keeps them all
in one TaskGroup until a stop is requested;
``stop`` applies the shutdown order — stop reading the sockets, end the gap backfills (what
they recovered and hold goes to the writer), flush the buffered ticks and dead letters, close
Redis.

Restart: before any connection opens, ``start`` reads the last trade id each symbol of a
sequential exchange had written (``ingest.lastwritten``) and resumes the deduper from it, so
trades lost with a killed predecessor are a counted gap, backfilled where the exchange has a
REST history (``ingest.backfill``).

Ready (``/readyz`` 200) means: Redis answered at start, and at least one exchange WebSocket
is open and subscribed now (``READY_MEANS``, also in the body). Ingest that retries
exchanges it cannot reach (``FEED=live`` without a network) is alive but not ready. It does
not mean trades flow: a quiet market sends none; ``alphapulse_ingest_ticks_total`` says that.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from common.lifecycle import Service
from common.logging import get_logger
from common.metrics import Readiness
from common.names import Keys
from common.stream_consumer import unique_consumer_name
from ingest.backfill import BackfillOptions, GapFiller
from ingest.connection import Connection, ConnectionOptions
from ingest.deadletter import DeadLetters
from ingest.lastwritten import load_last_written
from ingest.metrics import INGEST_METRICS, IngestMetrics
from ingest.rest import HistoryClient
from ingest.sequence import TradeDeduper
from ingest.settings import IngestSettings
from ingest.venues import get_adapter
from ingest.writer import TickWriter

#: /readyz conditions and what each means (the body names them).
READY_MEANS = {
    "connected": "Redis answered at start",
    "exchange_connected": "at least one exchange WebSocket is open and subscribed",
}
READY_POLL_S = 0.5


class IngestService(Service):
    """Exchange WebSockets → dedupe/gap check → ``ticks:{p}``."""

    name = "ingest"

    def __init__(
        self,
        settings: IngestSettings,
        redis: Any,
        *,
        metrics: IngestMetrics | None = None,
        keys: Keys | None = None,
    ) -> None:
        super().__init__(readiness=Readiness(*READY_MEANS, meanings=READY_MEANS))
        self.settings = settings
        self.redis = redis
        self.metrics = metrics or INGEST_METRICS
        self.keys = keys or settings.common.keys()
        self._log = get_logger("ingest.service")
        s = settings
        self.writer = TickWriter(
            redis,
            self.keys,
            self.metrics,
            batch_size=s.batch_size,
            flush_interval=s.flush_ms / 1000.0,
            boundary_flush_ms=s.boundary_flush_ms,
            max_pending=s.queue_bound,
            maxlen=s.stream_maxlen or None,
            sequential=frozenset(e for e, _ in s.exchanges if get_adapter(e).trade_ids_sequential),
        )
        self.dead_letters = DeadLetters(
            redis,
            self.keys,
            consumer=s.common.consumer_name or unique_consumer_name("ingest-"),
            dropped=self.metrics.dlq_dropped,
        )
        self.connections: list[Connection] = []
        self.dedupers: dict[str, TradeDeduper] = {}
        self.fillers: dict[str, GapFiller] = {}
        for exchange, symbols in s.exchanges:
            adapter = get_adapter(exchange)
            key = adapter.trade_id_key if adapter.trade_ids_sequential else None
            deduper = TradeDeduper(window=s.dedup_window, sequential_key=key, limits=s.limits)
            self.dedupers[exchange] = deduper
            filler = self.fillers[exchange] = self._gap_filler(exchange, deduper)
            options = ConnectionOptions.from_settings(s, exchange)
            for group in adapter.connection_plan(symbols):
                self.connections.append(
                    Connection(
                        adapter,
                        group,
                        writer=self.writer,
                        deduper=deduper,
                        metrics=self.metrics,
                        dead_letters=self.dead_letters,
                        options=options,
                        filler=filler,
                    )
                )
        self._dlq_task: asyncio.Task[None] | None = None

    def _gap_filler(self, exchange: str, deduper: TradeDeduper) -> GapFiller:
        """The exchange's gap filler: backfilling from its REST history where configured
        (``IngestSettings.rest_url``), else counting every missing trade unrecovered."""
        s, adapter = self.settings, get_adapter(exchange)
        url = s.rest_url(exchange)
        client = None
        if url is not None:
            client = HistoryClient(adapter, url, self.metrics, rate_per_s=s.backfill_rate_per_s,
                                   request_timeout_s=s.backfill_timeout_s)  # fmt: skip
        options = BackfillOptions.from_settings(s)
        return GapFiller(adapter, client, writer=self.writer, deduper=deduper,
                         metrics=self.metrics, redis=self.redis, keys=self.keys,
                         options=options)  # fmt: skip

    async def resume(self) -> None:
        """Seed each sequential exchange's deduper with the last id its symbols had written
        (an earlier process, killed or stopped): the first trade after the restart is then
        checked against it, and a jump is a counted gap instead of a new baseline."""
        for exchange, natives in self.settings.exchanges:
            adapter = get_adapter(exchange)
            if not adapter.trade_ids_sequential:
                continue
            symbols = [adapter.normalized(n) for n in natives]
            last = await load_last_written(self.redis, self.keys, exchange, symbols)
            for symbol, written in last.items():
                self.dedupers[exchange].resume(exchange, symbol, written.trade_id)
            if last:
                self._log.info("ingest_resumed", exchange=exchange, symbols=len(last))

    async def start(self) -> None:
        await self.redis.ping()
        await self.resume()
        self.readiness.set("connected")
        self.writer.start()
        self._dlq_task = asyncio.create_task(self.dead_letters.run(), name="ingest.dlq")
        await super().start()
        self._log.debug(
            "ingest_starting",
            connections=len(self.connections),
            exchanges={e: len(s) for e, s in self.settings.exchanges},
        )

    async def run(self) -> None:
        """All connections until a stop is requested (each returns once told to stop).

        The writer's flusher is watched too: if it ever fails (a bug, not a Redis outage,
        which it retries), the connections are cancelled and the error ends the process.
        """
        async with asyncio.TaskGroup() as tg:
            for conn in self.connections:
                tg.create_task(conn.run(), name=f"conn.{conn.adapter.name}")
            tg.create_task(self._watch_writer(), name="ingest.writer-watch")
            tg.create_task(self._watch_exchanges(), name="ingest.ready-watch")

    async def _watch_exchanges(self) -> None:
        """Keep the ``exchange_connected`` condition of /readyz up to date."""
        while not self.stopping:
            opened = any(c.open_sessions > 0 for c in self.connections)
            self.readiness.set("exchange_connected", opened)
            await self.wait_stopping(READY_POLL_S)

    async def _watch_writer(self) -> None:
        stop = asyncio.create_task(self.wait_stopping())
        await asyncio.wait({self.writer.task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if self.writer.task.done():
            self.writer.task.result()  # re-raises the flusher's error
            raise RuntimeError("the tick writer stopped while ingest was running")

    def request_stop(self) -> None:
        super().request_stop()
        for conn in self.connections:
            conn.stop()

    async def flush(self) -> None:
        for filler in self.fillers.values():
            await filler.close()  # hands what it recovered and holds to the writer
        try:
            await self.writer.close()
        except Exception as e:  # already fatal in run(); keep closing the rest
            self._log.error("writer_failed", error=repr(e), pending=self.writer.pending, exc_info=e)
        if self._dlq_task is not None:
            self._dlq_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dlq_task
        await self.dead_letters.flush()

    async def close(self) -> None:
        await self.redis.aclose()
