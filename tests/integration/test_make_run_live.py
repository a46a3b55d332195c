"""``make run FEED=live`` where the exchanges cannot be reached (this machine has no internet).

``python -m ingest`` runs as a real process with the live settings ``alphapulse run-env``
resolves (``tests/unit/test_make_run_env.py`` checks they name the real ``wss://``
endpoints). So that the outcome does not depend on the network, each real host is replaced
by one that cannot be reached as an exchange: four local TCP listeners that count the
connection attempts and drop each at once (the TLS handshake fails), and for Kraken a name
that never resolves (``.invalid``, RFC 6761). Ingest must keep dialling with backoff, stay
up with no connection open, count every failed attempt by exchange and reason
(``alphapulse_ingest_connect_failures_total``: ``closed`` for the dropped ones, ``dns`` for
Kraken), and stop cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from common.names import Keys
from ingest.offline.runenv import plan, url_variable
from ingest.venues import get_adapter
from tests.conftest import REDIS_URL
from tests.integration.runtime_support import ROOT, free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ATTEMPTS = 3  # connection attempts each reachable-but-refusing host must see
BACKOFF_MAX_S = 0.2


def _readyz(port: int) -> tuple[int, str]:
    """``/readyz``'s status and body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _ingest_samples(port: int) -> dict[str, float]:
    """``alphapulse_ingest_*`` samples (name with labels → value) at ``/metrics``; none
    while the server is not listening yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            lines = r.read().decode().splitlines()
    except OSError:
        return {}
    samples = (ln.rpartition(" ") for ln in lines if ln.startswith("alphapulse_ingest_"))
    return {name: float(value) for name, _, value in samples}


def _failures(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """``alphapulse_ingest_connect_failures_total`` as {exchange: {reason: count}}."""
    out: dict[str, dict[str, float]] = {}
    prefix = "alphapulse_ingest_connect_failures_total{"
    for sample, value in metrics.items():
        if sample.startswith(prefix):
            labels = dict(
                pair.split("=", 1) for pair in sample[len(prefix) : -1].split(",") if pair
            )
            reasons = out.setdefault(labels["exchange"].strip('"'), {})
            reasons[labels["reason"].strip('"')] = value
    return out


def _unreachable(name: str, host: str) -> str:
    """The adapter's real URL with its host (and port) replaced by ``host``."""
    real = urlsplit(get_adapter(name).default_url)
    assert real.scheme == "wss"
    return real._replace(netloc=host).geturl()


async def test_live_ingest_keeps_retrying_unreachable_exchanges(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    live = plan("live", procfile=(ROOT / "Procfile").read_text())
    exchanges = dict(live.exports)["EXCHANGES"]
    names = [part.split(":", 1)[0] for part in exchanges.split(";")]
    assert names == ["binance", "coinbase", "kraken", "bybit", "okx"]

    attempts = dict.fromkeys(names, 0)
    servers = []
    urls = {}
    for name in names:
        if name == "kraken":
            urls[name] = _unreachable(name, "ws.kraken.invalid")
            continue

        def dropped(_: asyncio.StreamReader, w: asyncio.StreamWriter, name: str = name) -> None:
            attempts[name] += 1
            w.transport.abort()

        server = await asyncio.start_server(dropped, "127.0.0.1", 0)
        servers.append(server)
        urls[name] = _unreachable(name, f"127.0.0.1:{server.sockets[0].getsockname()[1]}")

    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in live.unset}
    env.update(live.exports)
    env.update({url_variable(name): url for name, url in urls.items()})
    env.update(
        {
            "REDIS_URL": REDIS_URL,
            "NAMESPACE": namespace,
            "PARTITIONS": str(keys.partitions),
            "METRICS_PORT": str(metrics_port),
            "METRICS_HOST": "127.0.0.1",
            "LOG_FORMAT": "json",
            "INGEST_OPEN_TIMEOUT_S": "2",
            "INGEST_BACKOFF_BASE_S": "0.05",
            "INGEST_BACKOFF_MAX_S": str(BACKOFF_MAX_S),
        }
    )
    ingest = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert ingest.stderr is not None
    log = asyncio.create_task(ingest.stderr.read())
    metrics: dict[str, float] = {}
    try:
        # until every listener saw ATTEMPTS dials and /metrics counts ATTEMPTS failures for
        # every exchange (or ingest ended)
        for _ in range(600):
            metrics = await asyncio.to_thread(_ingest_samples, metrics_port)
            counted = _failures(metrics)
            if min(attempts[n] for n in names if n != "kraken") >= ATTEMPTS and all(
                sum(counted.get(n, {}).values()) >= ATTEMPTS for n in names
            ):
                break
            if ingest.returncode is not None:
                break
            await asyncio.sleep(0.05)
        alive = ingest.returncode is None
        readyz = await asyncio.to_thread(_readyz, metrics_port)
    finally:
        if ingest.returncode is None:
            ingest.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(ingest.wait(), 30)
        for server in servers:
            server.close()
            await server.wait_closed()
    events = [
        json.loads(line) for line in (await log).decode().splitlines() if line.startswith("{")
    ]
    assert alive, f"ingest ended with {ingest.returncode}: {events[-5:]}"
    assert code == 0, events[-5:]

    assert all(attempts[n] >= ATTEMPTS for n in names if n != "kraken"), attempts
    for name in names:
        # no connection ever opened (the gauge is 0 or was never touched), no frame came in
        assert metrics.get(f'alphapulse_ingest_connections{{exchange="{name}"}}', 0.0) == 0
        retries = [
            e for e in events if e.get("event") == "reconnecting" and e.get("exchange") == name
        ]
        assert retries, f"{name}: no reconnecting line"
        first = retries[0]
        # the log's reason is the metric's label, and it names the host dialled (issue 16)
        assert first["reason"] == ("dns" if name == "kraken" else "closed"), first
        assert first["host"] == urlsplit(urls[name]).netloc, first
        assert first["attempt"] == 1
        assert 0 <= first["delay"] <= BACKOFF_MAX_S
    failures = _failures(metrics)
    for name in names:  # every failed dial counted, with the reason of its exception
        reason = "dns" if name == "kraken" else "closed"  # kraken: .invalid; others: dropped
        assert set(failures.get(name, {})) == {reason}, failures
        assert failures[name][reason] >= ATTEMPTS, failures
    kraken = next(e for e in events if e.get("exchange") == "kraken" and "error" in e)
    assert "gaierror" in kraken["error"]  # the name did not resolve; still retried
    # alive, but not ready: no exchange is connected, and the body says what ready means
    assert readyz[0] == 503, readyz
    assert readyz[1].startswith("not ready: exchange_connected (ready means:"), readyz
    frames = [v for m, v in metrics.items() if m.startswith("alphapulse_ingest_frames_total{")]
    assert frames and sum(frames) == 0  # no frame from anywhere
    assert not [k async for k in redis_client.scan_iter(match=f"{namespace}ticks:*")]
