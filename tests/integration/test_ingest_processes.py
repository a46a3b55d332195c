"""``alphapulse simulate`` and ``python -m ingest`` as real processes, wired by settings.

The simulator replays 600 recorded BTCUSDT trades (gaps injected, reported in its JSON
report) and exits when done; ingest writes them to Redis, exposes the gap count on its
/metrics endpoint and exits 0 on SIGTERM after flushing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from common.contracts import TickBatch
from common.names import Keys
from tests.conftest import REDIS_URL
from tests.ports import free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BTC = DATA / "binance-spot-btcusdt-20240808.rec.gz"


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("alphapulse_ingest_"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def test_simulate_and_ingest_processes(
    tmp_path: Path, redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    report = tmp_path / "sim.json"
    sim = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "common.cli", "simulate", "--feed", f"binance={BTC}"),
        *("--port", "0", "--speed", "0", "--limit", "600", "--skip-every", "150"),
        *("--finish", "--linger", "1", "--report", str(report)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert sim.stderr is not None
    line = b""
    while b"binance: ws://" not in line:
        line = await asyncio.wait_for(sim.stderr.readline(), 30)
        assert line, "the simulator exited before listening"
    url = line.decode().split(": ", 1)[1].strip()
    drain = asyncio.create_task(sim.stderr.read())  # keep its log pipe from filling up
    metrics_port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "NAMESPACE": namespace,
        "PARTITIONS": str(keys.partitions),
        "METRICS_PORT": str(metrics_port),
        "METRICS_HOST": "127.0.0.1",
        "EXCHANGES": "binance:BTCUSDT",
        "INGEST_URL_BINANCE": url,
        "INGEST_BACKOFF_BASE_S": "0.05",
        "INGEST_BACKOFF_MAX_S": "0.2",
    }
    ingest = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert ingest.stderr is not None
    ingest_log = asyncio.create_task(ingest.stderr.read())
    try:
        assert await asyncio.wait_for(sim.wait(), 30) == 0
        skipped = json.loads(report.read_text())["feeds"]["binance"]["skipped"]
        assert len(skipped) == 3  # trades 150, 300, 450 of 600
        expected = 600 - len(skipped)
        stored: list[str] = []
        for _ in range(1000):
            stored = [
                t.trade_id
                for stream in keys.all_ticks()
                for _, fields in await redis_client.xrange(stream)
                for t in TickBatch.decode(fields)
            ]
            if len(stored) >= expected:
                break
            await asyncio.sleep(0.02)
        metrics = await asyncio.to_thread(_scrape, metrics_port)
    finally:
        if ingest.returncode is None:
            ingest.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(ingest.wait(), 30)
        await drain
    assert code == 0, (await ingest_log).decode()
    ids = [int(i) for i in stored]
    assert len(ids) == expected and ids == sorted(set(ids))
    assert not {int(s["id"]) for s in skipped} & set(ids)
    assert metrics['alphapulse_ingest_gaps_total{exchange="binance"}'] == 3
    assert metrics["alphapulse_ingest_written_ticks_total"] == expected
