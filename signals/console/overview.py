"""The Overview page's data: every worker instance, its lag and pending, rates, dead letters,
partition owners, and the alerts that would fire now.

From Redis (always): ``alphapulse status``'s snapshot (``common.status.collect_status``: per
stream length, dead letters, each group's lag and pending, partition owners), each group's
consumers (``XINFO CONSUMERS``: one row per worker instance, with its pending entries and
how long it has been idle) and the live detectors (their heartbeat set). Rates (ticks/s,
bars/s, signals/s) are the growth of the streams' ``entries-added`` between two snapshots.
From the workers' own ``/metrics`` and ``/readyz`` (``CONSOLE_WORKERS``): up and ready, and
the alert rules that can be judged from one scrape (see ``alerts_now``). With
``PROMETHEUS_URL`` the alerts are Prometheus's own (``/api/v1/alerts``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from common.names import Keys
from common.redis import AnyRedis
from common.status import PipelineStatus, collect_status

CONSUMER_UP_IDLE_MS = 60_000  # a consumer silent for longer counts as down
LAG_HIGH = 10_000  # deploy/prometheus/alerts.yml AlphapulseConsumerLagHigh
PENDING_HIGH = 1_000  # ... AlphapulsePendingGrowing's threshold


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RateMeter:
    """Entries per second of each stream, from two snapshots of ``entries-added``."""

    def __init__(self) -> None:
        self._last: tuple[float, dict[str, int]] | None = None
        self.rates: dict[str, float] = {}

    def update(self, added: dict[str, int], now: float) -> dict[str, float]:
        if self._last is not None and now > self._last[0]:
            dt = now - self._last[0]
            self.rates = {k: max(0, v - self._last[1].get(k, v)) / dt for k, v in added.items()}
        self._last = (now, added)
        return self.rates


async def _entries_added(redis: AnyRedis, stream: str) -> int:
    try:
        info: Any = await redis.xinfo_stream(stream)
    except Exception:
        return 0
    return int(info.get("entries-added", info.get(b"entries-added", 0)) or 0)


async def consumers_of(redis: AnyRedis, status: PipelineStatus) -> list[dict[str, Any]]:
    """One row per (worker instance, stream, group): pending, idle ms, up."""
    rows = []
    for s in status.streams:
        for g in s.groups:
            consumers: Any = await redis.xinfo_consumers(s.stream, g.name)
            for c in consumers:
                idle = int(c["idle"])
                rows.append(
                    {
                        "consumer": _s(c["name"]),
                        "stream": s.stream,
                        "group": g.name,
                        "pending": int(c["pending"]),
                        "idle_ms": idle,
                        "up": idle < CONSUMER_UP_IDLE_MS,
                    }
                )
    return rows


async def scrape(session: aiohttp.ClientSession, name: str, base: str) -> dict[str, Any]:
    """A worker's up (``/healthz``), ready (``/readyz``) and metric samples."""
    out: dict[str, Any] = {"name": name, "url": base, "up": False, "ready": False, "samples": []}
    try:
        async with session.get(f"{base}/readyz") as r:
            out["up"], out["ready"] = True, r.status == 200
        async with session.get(f"{base}/metrics") as r:
            text = await r.text()
    except (aiohttp.ClientError, TimeoutError):
        return out
    out["samples"] = [
        (s.name, dict(s.labels), s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]
    return out


def alerts_now(
    status: PipelineStatus, workers: list[dict[str, Any]], namespace: str
) -> list[dict[str, str]]:
    """The rules of deploy/prometheus/alerts.yml that one snapshot can judge, with the same
    names and thresholds; their ``for:`` durations and rate windows are not applied (a
    Prometheus, with ``PROMETHEUS_URL``, gives the exact answer)."""
    firing: list[dict[str, str]] = []
    for s in status.streams:
        stream = s.stream.removeprefix(namespace)
        for g in s.groups:
            if g.lag is not None and g.lag > LAG_HIGH:
                firing.append(
                    {
                        "alert": "AlphapulseConsumerLagHigh",
                        "severity": "warning",
                        "about": f"{stream}/{g.name} lag {g.lag}",
                    }
                )
            if g.pending > PENDING_HIGH:
                firing.append(
                    {
                        "alert": "AlphapulsePendingGrowing",
                        "severity": "warning",
                        "about": f"{stream}/{g.name} pending {g.pending}",
                    }
                )
    unowned = [p for p, o in status.owners.items() if o is None]
    if unowned and any(s.length for s in status.streams if "ticks" in s.stream):
        firing.append(
            {
                "alert": "AlphapulseNoPartitionOwner",
                "severity": "critical",
                "about": f"partitions {','.join(map(str, sorted(unowned)))} unowned",
            }
        )
    for w in workers:
        if not w["up"]:
            firing.append(
                {"alert": "AlphapulseTargetDown", "severity": "critical", "about": w["name"]}
            )
        for name, labels, value in w["samples"]:
            if name == "alphapulse_ingest_connections" and value == 0:
                firing.append(
                    {
                        "alert": "AlphapulseIngestDisconnected",
                        "severity": "critical",
                        "about": f"{w['name']} {labels.get('exchange', '')}".strip(),
                    }
                )
    return firing


async def prometheus_alerts(session: aiohttp.ClientSession, url: str) -> list[dict[str, str]]:
    async with session.get(f"{url.rstrip('/')}/api/v1/alerts") as r:
        doc = await r.json()
    return [
        {
            "alert": a["labels"].get("alertname", "?"),
            "severity": a["labels"].get("severity", ""),
            "about": ", ".join(f"{k}={v}" for k, v in a["labels"].items() if k != "alertname"),
        }
        for a in doc.get("data", {}).get("alerts", [])
        if a.get("state") == "firing"
    ]


class Overview:
    """Builds snapshots; one instance per server so the rates have a previous snapshot."""

    def __init__(
        self,
        redis: AnyRedis,
        keys: Keys,
        workers: tuple[tuple[str, str], ...] = (),
        prometheus_url: str | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.workers = workers
        self.prometheus_url = prometheus_url
        self.meter = RateMeter()

    async def snapshot(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        status = await collect_status(self.redis, self.keys)
        k = self.keys
        added = {
            "ticks": sum([await _entries_added(self.redis, t) for t in k.all_ticks()]),
            "bars": await _entries_added(self.redis, k.bars),
            "patterns": await _entries_added(self.redis, k.patterns),
            "signals": await _entries_added(self.redis, k.signals),
        }
        rates = self.meter.update(added, time.monotonic())
        scraped = list(await asyncio.gather(*(scrape(session, n, u) for n, u in self.workers)))
        if self.prometheus_url:
            try:
                alerts = await prometheus_alerts(session, self.prometheus_url)
                source = "prometheus"
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                alerts = [
                    {
                        "alert": "PrometheusUnreachable",
                        "severity": "warning",
                        "about": type(e).__name__,
                    }
                ]
                source = "prometheus"
        else:
            alerts, source = alerts_now(status, scraped, k.namespace), "console"
        members: Any = await self.redis.zrange(k.detector_members, 0, -1, withscores=True)
        doc = status.to_dict()
        for s in doc["streams"]:
            s["stream"] = s["stream"].removeprefix(k.namespace)
        return {
            "time": time.time(),
            "streams": doc["streams"],
            "owners": doc["owners"],
            "consumers": [
                {**c, "stream": c["stream"].removeprefix(k.namespace)}
                for c in await consumers_of(self.redis, status)
            ],
            "detectors": [_s(m) for m, _ in members],
            "workers": [{kk: v for kk, v in w.items() if kk != "samples"} for w in scraped],
            "rates": {f"{name}_per_s": round(v, 2) for name, v in rates.items()},
            "totals": added,
            "alerts": alerts,
            "alerts_source": source,
        }
