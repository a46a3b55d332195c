"""The health/metrics HTTP server (real sockets on 127.0.0.1) and the readiness flags."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from common.metrics import MetricsServer, Readiness, RuntimeMetrics
from tests.integration.runtime_support import http_get


def test_readiness_needs_every_condition() -> None:
    r = Readiness()
    assert not r.ready and r.unmet() == ["connected", "consuming"]
    r.set("connected")
    assert not r.ready
    r.set("consuming")
    assert r.ready
    r.require("leases")
    assert not r.ready and r.unmet() == ["leases"]
    r.set("leases")
    assert r.snapshot() == {"connected": True, "consuming": True, "leases": True}
    r.reset()
    assert not r.ready and len(r.unmet()) == 3


async def test_server_answers_metrics_healthz_readyz() -> None:
    registry = CollectorRegistry()
    Counter("alphapulse_test_things_total", "Things.", registry=registry).inc(3)
    RuntimeMetrics(registry)  # the runtime families register cleanly in a fresh registry
    readiness = Readiness()
    async with MetricsServer(readiness, host="127.0.0.1", port=0, registry=registry) as server:
        assert await http_get(server.port, "/healthz") == (200, b"ok\n")
        assert await http_get(server.port, "/readyz") == (503, b"not ready: connected,consuming\n")
        readiness.set("connected")
        readiness.set("consuming")
        assert await http_get(server.port, "/readyz?verbose=1") == (200, b"ready\n")
        status, body = await http_get(server.port, "/metrics")
        assert status == 200
        text = body.decode()
        assert "alphapulse_test_things_total 3.0" in text
        assert "# TYPE alphapulse_runtime_batch_seconds histogram" in text
        assert (await http_get(server.port, "/other"))[0] == 404


def test_respond_rejects_other_methods() -> None:
    server = MetricsServer(Readiness(), registry=CollectorRegistry())
    assert server.respond("POST", "/metrics")[0] == 405
    assert server.respond("HEAD", "/healthz")[0] == 200
