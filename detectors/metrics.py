"""The detector's Prometheus metrics (``alphapulse_detectors_*``), one set per registry."""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DetectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else prometheus_client.REGISTRY
        self.ticks = Counter(
            "alphapulse_detectors_ticks_total", "Ticks applied (rate = ticks/s).", registry=reg
        )
        self.steps = Counter(
            "alphapulse_detectors_engine_steps_total",
            "Engine steps (consecutive entries are applied together; ticks / steps = batch).",
            registry=reg,
        )
        self.joint_steps = Counter(
            "alphapulse_detectors_joint_steps_total",
            "Engine steps of several partitions run as one (engine_steps / joint_steps = "
            "partitions a joint step).",
            registry=reg,
        )
        self.late = Counter(
            "alphapulse_detectors_late_ticks_total", "Late ticks dropped.", registry=reg
        )
        self.duplicates = Counter(
            "alphapulse_detectors_duplicate_ticks_total", "Duplicate ticks dropped.", registry=reg
        )
        self.bars = Counter(
            "alphapulse_detectors_bars_closed_total",
            "Bars closed, by timeframe.",
            ["timeframe"],
            registry=reg,
        )
        self.patterns = Counter(
            "alphapulse_detectors_patterns_fired_total",
            "Patterns fired, by pattern name.",
            ["pattern"],
            registry=reg,
        )
        self.latency = Histogram(
            "alphapulse_detectors_detection_latency_seconds",
            "From a tick entry's append to ticks:{p} until its bars/patterns are written.",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.owned = Gauge(
            "alphapulse_detectors_partitions_owned", "Partitions this detector owns.", registry=reg
        )
        self.checkpoint_age = Gauge(
            "alphapulse_detectors_checkpoint_age_seconds",
            "Age of the oldest checkpoint among owned partitions.",
            registry=reg,
        )
        self.checkpoint_bytes = Gauge(
            "alphapulse_detectors_checkpoint_bytes",
            "Size of the last checkpoint written, by partition.",
            ["partition"],
            registry=reg,
        )
        self.leases_lost = Counter(
            "alphapulse_detectors_leases_lost_total",
            "Leases lost (expired or fenced) while owned.",
            registry=reg,
        )
        self.renewal_lateness = Histogram(
            "alphapulse_detectors_lease_renewal_lateness_seconds",
            "How much later than HEARTBEAT_MS after the previous round a lease renewal round "
            "ran (work starving the event loop shows here; leases are lost past "
            "LEASE_TTL_MS - HEARTBEAT_MS).",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.bad_entries = Counter(
            "alphapulse_detectors_bad_entries_total",
            "Tick entries dead-lettered (did not decode) or missing.",
            ["reason"],
            registry=reg,
        )

        self.implausible = Counter(
            "alphapulse_detectors_implausible_ticks_total",
            "Ticks rejected before they were applied and dead-lettered, by reason "
            "(bad_price, bad_qty, bad_time, bad_id, time_ahead, id_jump).",
            ["reason"],
            registry=reg,
        )


DETECTOR_METRICS = DetectorMetrics()
