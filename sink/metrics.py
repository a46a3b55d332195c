"""The sink's metric families (``alphapulse_sink_*``), recorded around each flush."""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SinkMetrics:
    """One set per registry; ``SINK_METRICS`` is the one in the default registry (served on
    /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else prometheus_client.REGISTRY
        self.rows = Counter(
            "alphapulse_sink_rows_total",
            "Rows handed to the database and committed (duplicates included: they are no-ops).",
            ["table"],
            registry=reg,
        )
        self.dead_rows = Counter(
            "alphapulse_sink_dead_lettered_rows_total",
            "Rows the database rejected (not duplicates), moved to dlq:<stream>.",
            ["table"],
            registry=reg,
        )
        self.batch_rows = Histogram(
            "alphapulse_sink_batch_rows",
            "Rows per flush (all tables).",
            buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000),
            registry=reg,
        )
        self.flush_seconds = Histogram(
            "alphapulse_sink_flush_seconds",
            "Time to write and commit one flush.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=reg,
        )
        self.retries = Counter(
            "alphapulse_sink_retries_total",
            "Flushes or connects that failed for a database reason and are retried.",
            registry=reg,
        )
        self.lag = Gauge(
            "alphapulse_sink_lag_seconds",
            "Age of the newest entry committed and acked, per stream, at its ack.",
            ["stream"],
            registry=reg,
        )
        self.database_up = Gauge(
            "alphapulse_sink_database_up",
            "1 while the last database operation succeeded, else 0.",
            registry=reg,
        )


SINK_METRICS = SinkMetrics()
