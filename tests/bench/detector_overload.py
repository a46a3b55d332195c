"""Two real detector processes under the overload of ``test_detectors_overload`` (a figure run).

``python -m tests.bench.detector_overload [CHECKOUT]`` (not part of ``make bench``). Starts
two ``python -m detectors`` processes from ``CHECKOUT`` (default: this worktree; give an
older checkout, e.g. from ``git archive <commit> | tar -x -C DIR``, for a before/after
comparison) in a fresh namespace, appends the test's feed to one partition (150 entries of
480 trades, one symbol whose every 4th trade closes a 1m bar, 20 ms apart), and every 1.5 s
prints the ``bars`` stream length and the partition's backlog (group lag + pending), for at
most 90 s or until drained. Ends with both detectors' ``leases_lost`` and renewal lateness
histogram (when the checkout has it) and the count of lease events in their logs. See
``docs/reliability.md`` ("Overload").
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from common.names import Keys, partition_of
from tests.conftest import REDIS_URL
from tests.integration import detectors_support
from tests.integration.test_detectors_overload import (
    ENGINE_ENV,
    EXCHANGE,
    SYMBOL,
    _backlog,
    _entries,
    _ticks,
)
from tests.ports import free_port

WAIT_S = 90.0
METRICS = re.compile(
    r"alphapulse_detectors_(leases_lost_total|lease_renewal_lateness_seconds_(bucket|count|sum))"
)


def _report(ports: list[int], logs: Path) -> None:
    """Print the lease metrics of each detector and the lease events in their logs."""
    for port in ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        for line in text.splitlines():
            if METRICS.match(line):
                print(f"detector :{port}", line)
    text = "".join(f.read_text() for f in logs.glob("*.log"))
    events = ("lease_lost", "checkpoint_fenced", "partition_acquired")
    print({event: text.count(event) for event in events})


async def run(checkout: Path) -> None:
    namespace = f"bench{uuid.uuid4().hex[:8]}:"
    keys = Keys(partitions=detectors_support.PARTITIONS, namespace=namespace)
    r = aioredis.Redis.from_url(REDIS_URL)
    logs = Path(tempfile.mkdtemp(prefix="detector-overload-"))
    detectors_support.ROOT = checkout  # the processes run that checkout's code
    procs = detectors_support.Detectors(namespace, logs, ENGINE_ENV)
    procs.env["LOG_LEVEL"] = "DEBUG"  # partition_acquired is a DEBUG event (one per partition)
    ports = [free_port(), free_port()]
    try:
        for port in ports:
            procs.env["METRICS_PORT"] = str(port)
            procs.start(1)
        await asyncio.sleep(3.0)  # joined and split the partitions
        stream = keys.ticks(partition_of(EXCHANGE, SYMBOL, detectors_support.PARTITIONS))

        async def feed() -> None:
            for fields in _entries(_ticks()):
                await r.xadd(stream, fields)  # type: ignore[arg-type]
                await asyncio.sleep(0.02)

        feeder = asyncio.create_task(feed())
        start = time.monotonic()
        samples: list[tuple[float, int, int]] = []
        while time.monotonic() - start < WAIT_S:
            await asyncio.sleep(1.5)
            bars, backlog = (
                await detectors_support.count_bars(r, keys.bars),
                await _backlog(r, stream),
            )
            samples.append((round(time.monotonic() - start, 1), bars, backlog))
            if feeder.done() and backlog == 0:
                break
        feeder.cancel()
        print("samples (s, bars stream length, backlog entries):", samples)
        await asyncio.to_thread(_report, ports, logs)
    finally:
        procs.terminate_all()
        procs.close()
        async for key in r.scan_iter(match=f"{namespace}*"):
            await r.delete(key)
        await r.aclose()


def main() -> None:
    checkout = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else detectors_support.ROOT
    asyncio.run(run(checkout))


if __name__ == "__main__":
    main()
