"""Prometheus metrics and the small health/metrics HTTP server every worker runs.

The server is a few dozen lines on ``asyncio.start_server`` (no web framework): it reads the
request line, ignores the headers, and answers

* ``GET /metrics`` — the Prometheus text exposition of ``registry``;
* ``GET /healthz`` — ``200 ok`` while the event loop is alive (it answers, so it is);
* ``GET /readyz``  — ``200 ready`` only when every condition of the ``Readiness`` object is
  true (for a stream worker: ``connected`` to Redis and ``consuming``), else ``503`` with the
  conditions that are not met.

Metric names follow ``alphapulse_<stage>_<what>_<unit>``; the stream runtime's own metrics
(``alphapulse_runtime_*``) and the live configuration's (``alphapulse_config_*``) are defined
here so every stage exports the same families.

One pattern for every stage's metrics: ``class <Stage>Metrics`` in ``<pkg>/metrics.py`` whose
``__init__(registry=None)`` declares the families in ``registry`` (the default one when
``None``; tests pass their own), and one module-level default instance ``<STAGE>_METRICS``
that the stage's classes take as a keyword default. Nothing is declared anywhere else, and
the work records around itself (per batch, per boundary), not inside per-record loops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Self

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "CONFIG_METRICS",
    "RUNTIME_METRICS",
    "ConfigMetrics",
    "MetricsServer",
    "Readiness",
    "RuntimeMetrics",
]


class Readiness:
    """Named conditions a worker sets; it is ready when all of them hold.

    The stream worker uses ``connected`` and ``consuming``; a stage may require more.
    """

    def __init__(self, *conditions: str, meanings: Mapping[str, str] | None = None) -> None:
        self._state: dict[str, bool] = dict.fromkeys(
            conditions or ("connected", "consuming"), False
        )
        #: What each condition means, for the /readyz body (optional).
        self.meanings: dict[str, str] = dict(meanings or {})

    def body(self) -> str:
        """The /readyz body: ``ready`` or ``not ready: <unmet conditions>``, followed by
        what ready means when the conditions carry meanings."""
        text = "ready" if self.ready else "not ready: " + ",".join(self.unmet())
        if self.meanings:
            text += " (ready means: " + "; ".join(self.meanings.values()) + ")"
        return text + "\n"

    def set(self, condition: str, ok: bool = True) -> None:
        """Set (or add) ``condition``."""
        self._state[condition] = ok

    def require(self, *conditions: str) -> None:
        """Add conditions that start unmet."""
        for c in conditions:
            self._state.setdefault(c, False)

    @property
    def ready(self) -> bool:
        return all(self._state.values())

    def unmet(self) -> list[str]:
        return [c for c, ok in self._state.items() if not ok]

    def snapshot(self) -> dict[str, bool]:
        return dict(self._state)

    def reset(self) -> None:
        """Mark every condition unmet (on shutdown: stop receiving traffic first)."""
        for c in self._state:
            self._state[c] = False


class RuntimeMetrics:
    """The stream runtime's metric families (one set per registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else prometheus_client.REGISTRY
        self.entries = Counter(
            "alphapulse_runtime_entries_total",
            "Stream entries handled, by outcome (acked, deferred, retry, dead, bad_input).",
            ["stream", "group", "outcome"],
            registry=reg,
        )
        self.dead_letters = Counter(
            "alphapulse_runtime_dead_letters_total",
            "Entries moved to dlq:<stream>, by reason.",
            ["stream", "reason"],
            registry=reg,
        )
        self.redeliveries = Counter(
            "alphapulse_runtime_redeliveries_total",
            "Entries claimed from another (or a dead) consumer with XAUTOCLAIM.",
            ["stream", "group"],
            registry=reg,
        )
        self.trimmed = Counter(
            "alphapulse_runtime_trimmed_total",
            "Entries trimmed below what every group has acknowledged (safe MINID).",
            ["stream"],
            registry=reg,
        )
        self.hard_cap_trims = Counter(
            "alphapulse_runtime_hard_cap_trims_total",
            "Entries removed by the HARD_MAXLEN cap although some group had not acked them.",
            ["stream"],
            registry=reg,
        )
        self.batch_seconds = Histogram(
            "alphapulse_runtime_batch_seconds",
            "Time the handler took for one batch.",
            ["group"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=reg,
        )
        self.batch_size = Histogram(
            "alphapulse_runtime_batch_entries",
            "Entries per batch handed to the handler.",
            ["group"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=reg,
        )
        self.lag = Gauge(
            "alphapulse_runtime_lag_entries",
            "Entries in the stream not yet delivered to the group (XINFO GROUPS lag).",
            ["stream", "group"],
            registry=reg,
        )
        self.pending = Gauge(
            "alphapulse_runtime_pending_entries",
            "Entries delivered to the group but not yet acknowledged.",
            ["stream", "group"],
            registry=reg,
        )
        self.errors = Counter(
            "alphapulse_runtime_errors_total",
            "Handler or Redis errors, by kind.",
            ["group", "kind"],
            registry=reg,
        )


RUNTIME_METRICS = RuntimeMetrics()
"""The runtime metrics in the default registry (what ``/metrics`` serves)."""


class ConfigMetrics:
    """The live configuration's metric families (``common.configstore``), one set per registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else prometheus_client.REGISTRY
        self.version = Gauge(
            "alphapulse_config_version",
            "Newest live configuration version this process knows and applies (0: none yet).",
            ["worker"],
            registry=reg,
        )


CONFIG_METRICS = ConfigMetrics()
"""The configuration metrics in the default registry."""

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (``port=0``: any free port)."""

    def __init__(
        self,
        readiness: Readiness,
        *,
        host: str = "0.0.0.0",
        port: int = 9100,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.readiness = readiness
        self.host = host
        self.requested_port = port
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("metrics server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> int:
        """Bind and serve in the background; returns the bound port."""
        self._server = await asyncio.start_server(self._serve, self.host, self.requested_port)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for one request (pure: the server's whole logic)."""
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return (
                200,
                prometheus_client.CONTENT_TYPE_LATEST,
                prometheus_client.generate_latest(self.registry),
            )
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            return (
                200 if self.readiness.ready else 503,
                "text/plain",
                self.readiness.body().encode(),
            )
        return 404, "text/plain", b"not found\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            parts = line.decode("latin-1").split()
            # Drain the headers up to the blank line; their content does not matter here.
            while (header := await asyncio.wait_for(reader.readline(), 5.0)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                del header
            if len(parts) < 2:
                status, ctype, body = 405, "text/plain", b"bad request\n"
            else:
                status, ctype, body = self.respond(parts[0], parts[1])
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            writer.write(head if parts[:1] == ["HEAD"] else head + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass  # a client that went away or never spoke: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
