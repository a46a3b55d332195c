"""A real ``python -m detectors`` process past its memory plateau, faster than real time.

``python -m tests.bench.detector_soak [SPEED] [MINUTES]`` (default 3x, 40 event minutes,
i.e. ~13 min of wall time; not part of ``make bench``). The detector_memory bench's load
(one detector's share of 1,000 symbols over 16 partitions, 1s,5s,1m, 10 trades/s per
symbol) is XADDed to ``ticks:{p}`` in a fresh namespace at ``SPEED`` event seconds per wall
second, one entry per partition per event second; the process owns all 16 partitions (8 get
ticks). ``bars`` and ``patterns`` are trimmed to ~20,000 entries as the feed goes (nothing
consumes them). Every event minute: the detector's RSS and the largest consumer-group lag
(entries not yet read; 0 = it keeps up). Ends with the RSS slope past the plateau.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import redis.asyncio as aioredis

from common.names import Keys
from detectors.ownership import assign
from tests.bench.bench_detector_memory import PARTITIONS, START_MS, TIMEFRAMES, Feed
from tests.integration.runtime_support import ROOT
from tests.sink_support import REDIS_URL

PLATEAU_MIN = 26  # bench_detector_memory.plateau_bars for these timeframes (1m longest)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _lag(r: aioredis.Redis, keys: Keys, partitions: list[int]) -> int:
    lag = 0
    for p in partitions:
        for group in await r.xinfo_groups(keys.ticks(p)):
            lag = max(lag, int(group.get("lag") or 0))
    return lag


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def detector_env(keys: Keys) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "NAMESPACE": keys.namespace,
        "PARTITIONS": str(PARTITIONS),
        "TIMEFRAMES": TIMEFRAMES,
        "ALLOWED_LATENESS_MS": "0",
        "IDLE_CLOSE_MS": "0",
        "METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "DETECTOR_ID": "soak",
    }


async def soak(proc: subprocess.Popen[bytes], keys: Keys, speed: float, minutes: int) -> None:
    r = aioredis.Redis.from_url(REDIS_URL)
    mine = assign(["detectors1", "detectors2"], PARTITIONS)["detectors1"]
    feed = Feed(mine)
    print(f"detector pid {proc.pid} at {speed:g}x, {minutes} event min")
    print("| event min | wall s | detector RSS MiB | lag (entries) |")
    print("|---|---|---|---|")
    samples: list[tuple[int, float]] = []
    try:
        await asyncio.sleep(3)  # joined and acquired its partitions (heartbeat 1 s)
        t0 = time.monotonic()
        for sec in range(minutes * 60):
            t_ms = START_MS + sec * 1000
            pipe = r.pipeline(transaction=False)
            for p, batch in feed.second(t_ms):
                pipe.xadd(keys.ticks(p), dict(batch.encode().items()))
            pipe.xtrim(keys.bars, maxlen=20_000, approximate=True)
            pipe.xtrim(keys.patterns, maxlen=20_000, approximate=True)
            await pipe.execute()
            await asyncio.sleep(max(0.0, t0 + (sec + 1) / speed - time.monotonic()))
            if (sec + 1) % 60 == 0:
                if proc.poll() is not None:
                    raise RuntimeError(f"detector ended early ({proc.returncode})")
                minute, rss = (sec + 1) // 60, rss_mib(proc.pid)
                samples.append((minute, rss))
                lag = await _lag(r, keys, mine)
                wall = time.monotonic() - t0
                print(f"| {minute} | {wall:.0f} | {rss:.1f} | {lag} |", flush=True)
    finally:
        await asyncio.to_thread(stop, proc)  # before the clean-up: it writes leases
        stale = [k async for k in r.scan_iter(match=f"{keys.namespace}*")]
        if stale:
            await r.delete(*stale)
        await r.aclose()
    after = [(m, v) for m, v in samples if m >= PLATEAU_MIN + 4]
    if len(after) >= 2:
        slope = float(np.polyfit([m for m, _ in after], [v for _, v in after], 1)[0])
        print(f"RSS slope from event minute {after[0][0]} on: {slope:+.3f} MiB/min")


def main(argv: list[str]) -> None:
    speed = float(argv[0]) if argv else 3.0
    minutes = int(argv[1]) if len(argv) > 1 else 40
    keys = Keys(namespace=f"bench-soak-{uuid.uuid4().hex[:8]}:", partitions=PARTITIONS)
    with tempfile.NamedTemporaryFile(prefix="detector-soak-", suffix=".log", delete=False) as log:
        print(f"detector log: {log.name}")
        proc = subprocess.Popen(
            [sys.executable, "-m", "detectors"],
            env=detector_env(keys),
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        try:
            asyncio.run(soak(proc, keys, speed, minutes))
        finally:
            stop(proc)


if __name__ == "__main__":
    main(sys.argv[1:])
