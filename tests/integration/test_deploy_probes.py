"""What the deployments rely on, against each real worker process: ``/healthz`` answers,
``/readyz`` turns 200 once the worker is connected and working (the Kubernetes readiness
probe; a rollout waits for it), and SIGTERM (systemd's KillSignal, Kubernetes' stop) ends
the process gracefully with exit code 0 well within the grace the units and pods allow.
The console (``web``) is also probed on its own port's ``/healthz``, its pods' liveness."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, serve

from tests.deploy_support import WORKERS
from tests.integration.runtime_support import finish, free_port, http_get, spawn_worker, worker_env
from tests.polling import until
from tests.sink_support import make_db


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async for db in make_db("postgres"):
        yield db.url


@pytest.fixture
async def exchange_port() -> AsyncIterator[int]:
    """A WebSocket server that accepts and holds connections (no trades): ingest is ready
    once an exchange WebSocket is open (ingest/service.py ``READY_MEANS``)."""

    async def hold(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with serve(hold, "127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1]


def worker_settings(worker: str, database_url: str, exchange_port: int) -> dict[str, str]:
    """The few settings each worker needs on top of Redis and the metrics port."""
    return {
        "ingest": {
            "EXCHANGES": "binance:BTCUSDT",
            "INGEST_URL_BINANCE": f"ws://127.0.0.1:{exchange_port}/stream",
        },
        "detectors": {"HEARTBEAT_MS": "200", "LEASE_TTL_MS": "2000"},
        "signals": {},
        "signals-ws": {"SIGNALS_WS_TOKENS": "t0ken", "SIGNALS_WS_PORT": str(free_port())},
        "sink": {"DATABASE_URL": database_url, "SINK_FLUSH_MS": "50"},
        # The console needs the sink's database (not its tables) and one user or token.
        "web": {
            "DATABASE_URL": database_url,
            "SIGNALS_WS_TOKENS": "t0ken",
            "CONSOLE_HOST": "127.0.0.1",
            "CONSOLE_PORT": str(free_port()),
        },
    }[worker]


async def status(port: int, path: str) -> int:
    try:
        code, _ = await http_get(port, path)
    except OSError:
        return 0  # not listening yet
    return code


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("worker", sorted(WORKERS))
async def test_worker_becomes_ready_and_stops_on_sigterm(
    worker: str,
    namespace: str,
    redis_client: aioredis.Redis,
    database_url: str,
    exchange_port: int,
) -> None:
    port = free_port()
    settings = worker_settings(worker, database_url, exchange_port)
    # Where the worker's liveness probe looks: the console's own port, else the metrics port.
    live_port = int(settings.get("CONSOLE_PORT", port))
    env = worker_env(
        namespace,
        METRICS_PORT=str(port),
        PARTITIONS="2",
        BLOCK_MS="100",
        GRACE_SECONDS="5",
        **settings,
    )
    proc = spawn_worker(env, WORKERS[worker])
    try:

        async def ready() -> bool:
            if proc.poll() is not None:
                _, err = finish(proc)
                pytest.fail(f"{worker} exited with {proc.returncode}:\n{err[-3000:]}")
            return (
                await status(port, "/healthz") == 200
                and await status(live_port, "/healthz") == 200
                and await status(port, "/readyz") == 200
            )

        await until(ready, f"{worker} /readyz", timeout_s=60, interval_s=0.2)
        proc.send_signal(signal.SIGTERM)
        code, err = await asyncio.to_thread(finish, proc, 60)
        assert code == 0, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
