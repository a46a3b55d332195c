"""A 1x feed with the live idle timer on gives exactly what ``alphapulse replay`` gives.

Ticks are written to ``ticks:{p}`` at the pace of their exchange timestamps (1x). Nothing
closes the last bars but the wall-clock idle timer (``IDLE_CLOSE_MS``), which advances each
quiet partition's watermark by the wall time since its last progress; at 1x that is the
event time a later tick would carry, so the live bars equal the replay, which closes every
bar at the end of its input.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from common.columns import decode_events
from common.contracts import TickBatch
from common.names import Keys, partition_of
from detectors.replay import replay_ticks
from detectors.settings import engine_config_from_env
from ingest.offline.ticks import synthetic_ticks
from tests.integration.detectors_support import (
    PARTITIONS,
    Detectors,
    count_bars,
    dedup,
    read_all,
    read_bars,
    until,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ENV = {"TIMEFRAMES": "1s,5s", "ALLOWED_LATENESS_MS": "2000", "IDLE_CLOSE_MS": "300"}


async def test_one_x_feed_with_idle_close_equals_replay(
    redis_client: aioredis.Redis, keys: Keys, namespace: str, tmp_path: Path
) -> None:
    ticks = list(synthetic_ticks("binance", 8, 150.0, seed=5, count=900))  # 6 s at 1x
    config = engine_config_from_env(ENV)
    result = replay_ticks(ticks, config, PARTITIONS)
    want_bars = {b.id: b.to_dict() for b in result.bars}
    want_events = {e.id: e.to_dict() for e in result.events}
    procs = Detectors(namespace, tmp_path, ENV)
    try:
        procs.start(1)

        async def joined() -> bool:
            return int(await redis_client.zcard(keys.detector_members)) >= 1

        await until(joined, procs, "the detector")
        start = time.monotonic()
        t0 = ticks[0].ts
        for i in range(0, len(ticks), 15):  # ~0.1 s micro-batches, like ingest
            chunk = ticks[i : i + 15]
            by_part: dict[int, list[Any]] = {}
            for t in chunk:
                by_part.setdefault(partition_of(t.exchange, t.symbol, PARTITIONS), []).append(t)
            await asyncio.sleep(max(0.0, (chunk[0].ts - t0) / 1e9 - (time.monotonic() - start)))
            for p, part in sorted(by_part.items()):
                fields = TickBatch.from_ticks(part).encode()
                await redis_client.xadd(keys.ticks(p), dict(fields.items()))

        async def all_closed() -> bool:
            return await count_bars(redis_client, keys.bars) >= len(want_bars)

        await until(all_closed, procs, f"{len(want_bars)} bars")
        await asyncio.sleep(0.5)  # anything extra would show up now
        bars = dedup([b.to_dict() for b in await read_bars(redis_client, keys.bars)])
        raw = await read_all(redis_client, keys.patterns)
        events = dedup([e.to_dict() for f in raw for e in decode_events(f)])
        assert bars == want_bars, procs.log_tail()
        assert events == want_events
        assert procs.terminate_all() == [0]
    finally:
        procs.close()
