"""A thin async HTTP shell over one exchange's public REST trade history (aiohttp).

The request and its parsing are the adapter's (pure: ``history_params``/``parse_history``);
this module only moves bytes: one shared ``aiohttp.ClientSession`` per exchange, a timeout
on every request, requests paced to ``rate_per_s`` (exchanges rate-limit by IP: Binance
counts a ``historicalTrades`` call as 25 of its 6,000 weight a minute, Kraken allows about
one public call a second), and a bounded number of retries with full-jitter backoff on what
a retry can cure (HTTP 429/418/5xx, a dropped connection, a timeout). Anything else — a 4xx,
a reply that does not parse — is a :class:`HistoryError` at once.
"""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp

from common.backoff import BackoffPolicy
from common.errors import BadInput
from ingest.metrics import IngestMetrics
from ingest.settings import DEFAULTS
from ingest.venues import ExchangeAdapter
from ingest.venues.base import HistoryPage, HistoryQuery

#: Reasons a history request fails (the ``reason`` label of backfill failures).
HTTP, TIMEOUT, BAD_RESPONSE = "http", "timeout", "bad_response"
_RETRY_STATUS = frozenset({418, 429, 500, 502, 503, 504})


class HistoryError(Exception):
    """A history request that failed for good; ``reason`` is one of http/timeout/bad_response."""

    def __init__(self, reason: str, detail: str, *, retriable: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retriable = retriable


class HistoryClient:
    """Pages of one exchange's REST trade history from ``base_url`` (its ``history_path``)."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        base_url: str,
        metrics: IngestMetrics,
        *,
        request_timeout_s: float = 5.0,
        rate_per_s: float = DEFAULTS.backfill_rate_per_s,
        retries: int = 2,
        backoff_base_s: float = 0.2,
        seed: int | None = None,
    ) -> None:
        if adapter.history_path is None:
            raise ValueError(f"{adapter.name} has no REST trade history")
        self.adapter = adapter
        self.url = base_url.rstrip("/") + adapter.history_path
        self._m_requests = metrics.backfill_requests.labels(adapter.name)
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._retries = retries
        self._retry = BackoffPolicy(backoff_base_s)  # full jitter, no cap: few retries
        self._rng = random.Random(seed)
        self._next_at = 0.0  # monotonic time the next request may go
        self._pace = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def page(self, query: HistoryQuery) -> HistoryPage:
        """One page; retried on what a retry can cure, else :class:`HistoryError`."""
        attempt = 0
        while True:
            try:
                return await self._get(query)
            except HistoryError as e:
                if not e.retriable or attempt >= self._retries:
                    raise
            attempt += 1
            delay = self._retry.delay(attempt, self._rng)
            await asyncio.sleep(delay)

    async def _get(self, query: HistoryQuery) -> HistoryPage:
        await self._wait_turn()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._m_requests.inc()
        params = self.adapter.history_params(query)
        try:
            async with self._session.get(self.url, params=params) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError as e:
            raise HistoryError(TIMEOUT, f"no reply within {self._timeout.total} s",
                               retriable=True) from e  # fmt: skip
        except aiohttp.ClientError as e:
            raise HistoryError(HTTP, repr(e)[:200], retriable=True) from e
        if status != 200:
            raise HistoryError(HTTP, f"status {status}: {body[:200]!r}",
                               retriable=status in _RETRY_STATUS)  # fmt: skip
        try:
            return self.adapter.parse_history(body, query.native, time.time_ns())
        except BadInput as e:
            raise HistoryError(BAD_RESPONSE, f"{e.reason}: {e.detail}"[:300]) from e

    async def _wait_turn(self) -> None:
        """Pace requests ``1 / rate_per_s`` apart (one exchange, all its symbols)."""
        async with self._pace:
            now = time.monotonic()
            if self._next_at > now:
                await asyncio.sleep(self._next_at - now)
                now = self._next_at
            self._next_at = now + self._interval

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
