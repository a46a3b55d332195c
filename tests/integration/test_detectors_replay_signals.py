"""``alphapulse replay`` writes ``signals.jsonl`` equal to what the live signals worker emits.

The recorded Binance session goes through ``replay`` (the CLI); the same pattern events, in
``patterns.jsonl`` order, travel the live path: encoded onto the ``patterns`` stream as the
detectors write them, decoded and scored by a ``SignalsService`` on real Redis. Apart from
``emitted_at`` (wall clock; null offline) the stream's JSON documents equal the file's lines.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from common.cli import main
from common.names import Keys
from common.settings import CommonSettings
from detectors.replay import replay_ticks, sorted_events
from detectors.settings import engine_config_from_env
from detectors.timeframes import parse_timeframes
from ingest.offline.ticks import read_ticks
from signals.model import Model
from signals.offline import comparable
from signals.scoring import score_event
from signals.service import SignalsService
from signals.settings import SignalsSettings
from tests.conftest import REDIS_URL
from tests.integration.detectors_support import DATA

pytestmark = pytest.mark.redis

REC = DATA / "binance-spot-btcusdt-20240808.rec.gz"
TIMEFRAMES = "1s,5s,1m"


async def test_replay_signals_equal_the_live_workers(
    redis_client: aioredis.Redis, keys: Keys, namespace: str, tmp_path: Path
) -> None:
    args = ["replay", "--ticks", str(REC), "--exchange", "binance", "--partitions", "4"]
    assert main([*args, "--timeframes", TIMEFRAMES, "--out", str(tmp_path)]) == 0
    offline = (tmp_path / "signals.jsonl").read_bytes().splitlines()

    config = engine_config_from_env(os.environ)
    config = replace(config, timeframes=parse_timeframes(TIMEFRAMES))
    result = replay_ticks(read_ticks(str(REC), "binance"), config, partitions=4)
    events = sorted_events(result.events, config)
    async with redis_client.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(keys.patterns, event.encode())  # type: ignore[arg-type]
        await pipe.execute()
    common = CommonSettings(
        redis_url=REDIS_URL, namespace=namespace, partitions=4, metrics_port=0, batch_count=64
    )
    settings = SignalsSettings(common=common, model=Model())
    async with SignalsService(settings, redis=redis_client, burst=True) as worker:
        await worker.run()
    live = [fields[b"d"] for _, fields in await redis_client.xrange(keys.signals)]

    assert len(offline) == len(live) > 10
    assert [comparable(x) for x in offline] == [comparable(x) for x in live]
    assert all(orjson.loads(x)["emitted_at"] is None for x in offline)
    # Cooldowns took part: without ``recent`` the same events would give more signals.
    uncooled = [replace(event, recent=[]) for event in events]
    assert sum(len(score_event(e, Model())) for e in uncooled) > len(offline)
