"""Helpers of the detector integration tests: detector subprocesses, stream reads, waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import redis.asyncio as aioredis

from common.columns import decode_bars, decode_events
from common.contracts import Bar, PatternEvent
from tests import polling
from tests.conftest import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
#: The recorded sessions (shared/data beside the checkout, else ./data).
DATA = Path("/work/shared/data") if Path("/work/shared/data").exists() else Path("data")
PARTITIONS = 4
WAIT_S = 45.0


class Detectors:
    """``python -m detectors`` subprocesses sharing one namespace."""

    def __init__(self, namespace: str, logs: Path, engine_env: dict[str, str]) -> None:
        self.env = {
            **os.environ,
            "REDIS_URL": REDIS_URL,
            "NAMESPACE": namespace,
            "PARTITIONS": str(PARTITIONS),
            "IDLE_CLOSE_MS": "0",  # bars by event time only, as in replay
            "LEASE_TTL_MS": "1500",
            "HEARTBEAT_MS": "250",
            "CHECKPOINT_INTERVAL": "150",
            "BLOCK_MS": "200",
            "BATCH_COUNT": "7",
            "METRICS_PORT": "0",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "console",
            "GRACE_SECONDS": "5",
            **engine_env,  # last: a test's own settings win over these defaults
        }
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: list[IO[bytes]] = []

    def start(self, n: int = 1) -> None:
        for _ in range(n):
            log = (self.logs / f"detector-{len(self.procs)}.log").open("wb")
            self.files.append(log)
            proc = subprocess.Popen(
                [sys.executable, "-m", "detectors"], env=self.env, cwd=ROOT, stdout=log, stderr=log
            )
            self.procs.append(proc)

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)

    def terminate_all(self) -> list[int]:
        live = [p for p in self.procs if p.poll() is None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        return [p.wait(15) for p in live]

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for f in self.files:
            f.close()

    def log_tail(self) -> str:
        return "\n".join(
            f.name + ":\n" + f.read_text()[-3000:] for f in sorted(self.logs.glob("*.log"))
        )


async def until(check: Callable[[], Awaitable[bool]], procs: Detectors, what: str) -> None:
    """``tests.polling.until`` with the detectors' bound; its failure carries their logs."""
    try:
        await polling.until(check, what, timeout_s=WAIT_S, interval_s=0.1)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{procs.log_tail()}") from None


async def read_all(r: aioredis.Redis, stream: str) -> list[dict[bytes, bytes]]:
    out: list[dict[bytes, bytes]] = []
    last = "-"
    while True:
        chunk: Any = await r.xrange(stream, min=last, count=5000)
        chunk = [c for c in chunk if c[0].decode() != last]
        if not chunk:
            return out
        out.extend(fields for _, fields in chunk)
        last = chunk[-1][0].decode()


async def read_bars(r: aioredis.Redis, stream: str) -> list[Bar]:
    """Every bar record on ``stream`` (entries of either version, ``common.columns``)."""
    return [b for fields in await read_all(r, stream) for b in decode_bars(fields)]


async def read_events(r: aioredis.Redis, stream: str) -> list[PatternEvent]:
    """Every pattern event record on ``stream``."""
    return [e for fields in await read_all(r, stream) for e in decode_events(fields)]


async def count_bars(r: aioredis.Redis, stream: str) -> int:
    """How many bar records ``stream`` holds (an entry holds one detector write's bars)."""
    return sum(int(fields.get(b"n", b"1")) for fields in await read_all(r, stream))


def bar_key(d: dict[str, Any]) -> tuple[str, str, str, int]:
    return (d["exchange"], d["symbol"], d["timeframe"], d["open_time"])


def dedup(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for d in entries:
        key = bar_key(d.get("bar", d))
        ident = ":".join(str(x) for x in key)
        assert seen.setdefault(ident, d) == d, f"two different copies of {ident}"
    return seen
