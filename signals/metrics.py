"""The signals stage's metric families (``alphapulse_signals_*``), recorded around each batch.

One set holds both processes' families: the scoring worker's (``signals.service``) and the
WebSocket fan-out's (``signals.ws``, also serving the console's live page); a process exports
the other's families at zero.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SignalsMetrics:
    """One set per registry; ``SIGNALS_METRICS`` is the one in the default registry (served
    on /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else prometheus_client.REGISTRY
        # The scoring worker.
        self.events = Counter(
            "alphapulse_signals_events_total", "Pattern events scored.", registry=reg
        )
        self.emitted = Counter(
            "alphapulse_signals_emitted_total",
            "Signals appended to the stream.",
            ["direction"],
            registry=reg,
        )
        self.duplicates = Counter(
            "alphapulse_signals_duplicates_total",
            "Signals already on the stream (redelivered events), not appended again.",
            registry=reg,
        )
        self.trimmed = Counter(
            "alphapulse_signals_trimmed_total",
            "Entries trimmed from the signals stream (retention).",
            registry=reg,
        )
        self.rescored = Counter(
            "alphapulse_signals_rescored_total",
            "Batches scored again because a newer configuration version appeared meanwhile.",
            registry=reg,
        )
        self.append_seconds = Histogram(
            "alphapulse_signals_append_seconds",
            "Time of one atomic check-and-append call.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=reg,
        )
        # The WebSocket fan-out.
        self.ws_clients = Gauge(
            "alphapulse_signals_ws_clients", "Connected WebSocket clients.", registry=reg
        )
        self.ws_sent = Counter(
            "alphapulse_signals_ws_sent_total",
            "Signal frames sent to WebSocket clients.",
            registry=reg,
        )
        self.ws_closed = Counter(
            "alphapulse_signals_ws_closed_total",
            "Connections closed by the server, by reason.",
            ["reason"],
            registry=reg,
        )


SIGNALS_METRICS = SignalsMetrics()
