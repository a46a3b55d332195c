"""The ingest stage's metric families (``alphapulse_ingest_*``), declared here and nowhere else.

``INGEST_METRICS`` is the set in the default registry (served by the common metrics server);
a test builds ``IngestMetrics(CollectorRegistry())`` and reads the values back with
:meth:`IngestMetrics.value`. They are recorded around the work: the per-frame counts are
summed in plain integers by ``ingest.framestep`` and published every 0.25 s, the writer's
once per flush, the backfill's once per gap.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    """Every counter, gauge and histogram of ``ingest``, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = reg = registry if registry is not None else prometheus_client.REGISTRY

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"alphapulse_ingest_{name}", doc, labels, registry=reg)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"alphapulse_ingest_{name}", doc, labels, registry=reg)

        # --- connections -----------------------------------------------------------
        self.frames = counter("frames_total", "Frames received, by kind.", ("exchange", "kind"))
        self.bad_frames = counter(
            "bad_frames_total", "Frames rejected as bad input.", ("exchange", "reason")
        )
        self.ticks = counter("ticks_total", "Trades parsed and accepted.", ("exchange",))
        self.duplicates = counter(
            "duplicates_total", "Trades dropped as already seen.", ("exchange",)
        )
        self.gaps = counter("gaps_total", "Gaps in sequential trade ids.", ("exchange",))
        self.missing = counter(
            "missing_trades_total", "Trade ids skipped over by gaps.", ("exchange",)
        )
        self.implausible = counter(
            "implausible_ticks_total",
            "Trades dead-lettered as implausible, by reason (time_ahead, id_jump).",
            ("exchange", "reason"),
        )
        self.reconnects = counter(
            "reconnects_total", "Connections re-opened, by reason.", ("exchange", "reason")
        )
        self.connect_failures = counter(
            "connect_failures_total",
            "Connect attempts that failed before a session opened, by reason "
            "(dns, refused, timeout, tls, handshake, closed, other).",
            ("exchange", "reason"),
        )
        self.rotations = counter(
            "rotations_total", "Planned connection rotations (max age).", ("exchange",)
        )
        self.dlq_dropped = counter(
            "dlq_dropped_total", "Bad frames not dead-lettered (DLQ buffer full)."
        )
        self.connected = gauge("connections", "Open exchange connections.", ("exchange",))
        # --- gaps recovered from the exchanges' REST history (ingest.backfill) --------
        self.backfill_recovered = counter(
            "backfill_recovered_trades_total",
            "Missing trades (of counted gaps) recovered from the exchange's REST history.",
            ("exchange",),
        )
        self.backfill_unrecovered = counter(
            "backfill_unrecovered_trades_total",
            "Missing trades (of counted gaps) not recovered: no REST history for the exchange, "
            "the exchange no longer had them, or the backfill failed or ran out of time.",
            ("exchange",),
        )
        self.backfill_requests = counter(
            "backfill_requests_total", "REST trade-history requests sent.", ("exchange",)
        )
        self.backfill_failures = counter(
            "backfill_failures_total",
            "Backfills given up, by reason (http, timeout, bad_response, hold_full, disabled).",
            ("exchange", "reason"),
        )
        self.backfill_held = gauge(
            "backfill_held_ticks",
            "Live trades held back while their symbol's gap is backfilled.",
            ("exchange",),
        )
        # --- writer ----------------------------------------------------------------
        self.writer_ticks = counter("written_ticks_total", "Ticks appended to ticks:{p}.")
        self.writer_entries = counter("written_entries_total", "TickBatch entries appended.")
        self.writer_errors = counter("writer_errors_total", "Redis errors while writing.")
        self.writer_abandoned = counter(
            "writer_abandoned_ticks_total", "Ticks given up at shutdown after the grace."
        )
        self.writer_backpressure = counter(
            "backpressure_waits_total", "Times a reader had to wait for the writer."
        )
        self.writer_backpressure_seconds = counter(
            "backpressure_seconds_total", "Time readers spent waiting for the writer."
        )
        self.writer_pending = gauge(
            "writer_pending_ticks", "Ticks held in memory, not yet written."
        )
        self.writer_flush_seconds = Histogram(
            "alphapulse_ingest_flush_seconds",
            "Time to append one flush (retries included).",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
            registry=reg,
        )

    def value(self, name: str, **labels: str) -> float:
        """Current value of one sample (0.0 when it was never touched); for tests."""
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got


INGEST_METRICS = IngestMetrics()
