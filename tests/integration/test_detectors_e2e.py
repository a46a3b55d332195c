"""Detector processes on real Redis give exactly what ``alphapulse replay`` gives.

Recorded Binance BTC/ETH trades plus synthetic symbols (with some duplicated ticks) are
written to ``ticks:{p}`` in random micro-batches, one sentinel tick per partition at the
end closes every real bar by watermark. 1, 2 and 4 ``python -m detectors`` processes run on
them (killed, restarted, fed at full speed and throttled); the ``bars`` and ``patterns``
streams, de-duplicated by id, must equal the replay of the same ticks: no bar missing, none
extra, identical values (copies of one id identical too).
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from common.contracts import Tick, TickBatch
from common.names import Keys, partition_of
from detectors.replay import replay_ticks
from detectors.settings import engine_config_from_env
from ingest.offline.ticks import read_ticks, synthetic_symbols, synthetic_ticks, write_trades_csv
from tests.integration.detectors_support import (
    DATA,
    PARTITIONS,
    ROOT,
    WAIT_S,
    Detectors,
    bar_key,
    count_bars,
    dedup,
    read_bars,
    read_events,
    until,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ENGINE_ENV = {"TIMEFRAMES": "1s,5s,1m", "ALLOWED_LATENESS_MS": "1500"}
SENTINEL = "SENTINEL"


def _tick_set() -> list[Tick]:
    real = sorted(
        [
            *read_ticks(DATA / "binance-spot-btcusdt-20240808.rec.gz"),
            *read_ticks(DATA / "binance-spot-ethusdt-20240808.rec.gz"),
        ],
        key=lambda t: t.recv_ts,
    )[:3000]
    synth = list(synthetic_ticks("binance", 13, 40.0, seed=9, start_ns=real[0].ts, count=4000))
    ticks = sorted([*real, *synth], key=lambda t: t.recv_ts)
    rng = random.Random(4)
    for _ in range(40):  # re-sent trades: must never count twice
        i = rng.randrange(len(ticks) - 5)
        ticks.insert(i + rng.randrange(1, 5), ticks[i])
    end = max(t.ts for t in ticks) + 3_600 * 10**9
    used = {partition_of(t.exchange, t.symbol, PARTITIONS) for t in ticks}
    assert used == set(range(PARTITIONS)), "every partition should carry data"
    for p in range(PARTITIONS):
        norm, native = next(
            (n, nat)
            for n, nat in synthetic_symbols("binance", 80)[20:]
            if partition_of("binance", n, PARTITIONS) == p
        )
        ticks.append(Tick("binance", norm, native, "1", 1.0, 1.0, "buy", end, end))
    return ticks


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The ticks (read back from a normalized CSV) and the replay reference (CLI + in-process)."""
    tmp = tmp_path_factory.mktemp("detectors")
    csv_path = tmp / "ticks.csv"
    with csv_path.open("w") as f:
        write_trades_csv(_tick_set(), f)
    ticks = list(read_ticks(csv_path))
    sentinels = {t.symbol for t in ticks[-PARTITIONS:]}
    env = {**os.environ, **ENGINE_ENV}
    out = tmp / "replay"
    cmd = [sys.executable, "-m", "common.cli", "replay", "--ticks", str(csv_path)]
    cmd += ["--partitions", str(PARTITIONS), "--out", str(out)]
    subprocess.run(cmd, env=env, check=True, timeout=60, cwd=ROOT)
    import orjson  # noqa: PLC0415

    cli_bars = [orjson.loads(x) for x in (out / "bars.jsonl").read_bytes().splitlines()]
    result = replay_ticks(ticks, engine_config_from_env(env), PARTITIONS)
    bars = {b.id: b.to_dict() for b in result.bars if b.symbol not in sentinels}
    events = {e.id: e.to_dict() for e in result.events if e.bar.symbol not in sentinels}
    assert sorted(bars.values(), key=bar_key) == sorted(
        (b for b in cli_bars if b["symbol"] not in sentinels), key=bar_key
    ), "the CLI and the in-process replay must agree"
    assert len(bars) > 1000 and len(events) > 100
    return {"ticks": ticks, "bars": bars, "events": events}


def _batches(ticks: list[Tick], seed: int) -> Iterator[tuple[int, dict[bytes, bytes]]]:
    """Per-partition micro-batches of random sizes, partitions interleaved, order kept."""
    rng = random.Random(seed)
    per: dict[int, list[Tick]] = {}
    for t in ticks:
        per.setdefault(partition_of(t.exchange, t.symbol, PARTITIONS), []).append(t)
    cursor = dict.fromkeys(per, 0)
    while cursor:
        p = rng.choice(sorted(cursor))
        a = cursor[p]
        b = min(len(per[p]), a + rng.randint(1, 120))
        yield p, TickBatch.from_ticks(per[p][a:b]).encode()
        if b == len(per[p]):
            del cursor[p]
        else:
            cursor[p] = b


async def _feed(r: aioredis.Redis, keys: Keys, ticks: list[Tick], pause: float = 0.0) -> None:
    for p, fields in _batches(ticks, seed=len(ticks)):
        await r.xadd(keys.ticks(p), dict(fields.items()))
        if pause:
            await asyncio.sleep(pause)


async def _wait_and_compare(
    r: aioredis.Redis, keys: Keys, scenario: dict[str, Any], procs: Detectors
) -> None:
    want_bars, want_events = scenario["bars"], scenario["events"]
    deadline = time.monotonic() + WAIT_S
    bars: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        bars = dedup([b.to_dict() for b in await read_bars(r, keys.bars)])
        if len(bars) >= len(want_bars):
            break
        await asyncio.sleep(0.3)
    events = dedup([e.to_dict() for e in await read_events(r, keys.patterns)])
    missing = sorted(set(want_bars) - set(bars))[:5]
    assert not missing, f"bars missing: {missing}\n{procs.log_tail()}"
    assert bars == want_bars
    assert events == want_events


async def _members(r: aioredis.Redis, keys: Keys, n: int, procs: Detectors) -> None:
    """Wait until ``n`` detectors have joined."""

    async def joined() -> bool:
        return int(await r.zcard(keys.detector_members)) >= n

    await until(joined, procs, f"{n} members")


async def _bars_written(r: aioredis.Redis, keys: Keys, n: int, procs: Detectors) -> None:
    async def written() -> bool:
        return await count_bars(r, keys.bars) >= n

    await until(written, procs, f"{n} bars")


@pytest.fixture
def detectors(namespace: str, tmp_path: Path) -> Iterator[Detectors]:
    procs = Detectors(namespace, tmp_path, ENGINE_ENV)
    yield procs
    procs.close()


async def test_one_detector_full_speed(
    redis_client: aioredis.Redis, keys: Keys, scenario: dict[str, Any], detectors: Detectors
) -> None:
    await _feed(redis_client, keys, scenario["ticks"])
    detectors.start(1)
    await _wait_and_compare(redis_client, keys, scenario, detectors)
    assert detectors.terminate_all() == [0], detectors.log_tail()
    # A graceful stop checkpoints, acks everything and leaves the membership.
    for p in range(PARTITIONS):
        pending: Any = await redis_client.xpending(keys.ticks(p), "detectors")
        assert pending["pending"] == 0
        assert await redis_client.get(keys.lease(p)) is None
    assert await redis_client.zcard(keys.detector_members) == 0


async def test_two_detectors_one_killed_and_restarted(
    redis_client: aioredis.Redis, keys: Keys, scenario: dict[str, Any], detectors: Detectors
) -> None:
    ticks = scenario["ticks"]
    half = len(ticks) // 2
    detectors.start(2)
    await _members(redis_client, keys, 2, detectors)
    await _feed(redis_client, keys, ticks[:half])
    await _bars_written(redis_client, keys, 200, detectors)
    detectors.kill(0)
    await _feed(redis_client, keys, ticks[half:])
    await asyncio.sleep(0.5)
    detectors.start(1)
    await _wait_and_compare(redis_client, keys, scenario, detectors)
    assert detectors.terminate_all() == [0, 0], detectors.log_tail()  # no other one died


async def test_four_detectors_throttled_all_restarted(
    redis_client: aioredis.Redis, keys: Keys, scenario: dict[str, Any], detectors: Detectors
) -> None:
    ticks = scenario["ticks"]
    cut = len(ticks) * 2 // 5
    detectors.start(4)
    await _members(redis_client, keys, 4, detectors)
    await _feed(redis_client, keys, ticks[:cut], pause=0.01)
    await _bars_written(redis_client, keys, 100, detectors)
    assert detectors.terminate_all() == [0, 0, 0, 0]
    detectors.start(4)
    await _feed(redis_client, keys, ticks[cut:], pause=0.01)
    await _wait_and_compare(redis_client, keys, scenario, detectors)
    assert detectors.terminate_all() == [0, 0, 0, 0], detectors.log_tail()
