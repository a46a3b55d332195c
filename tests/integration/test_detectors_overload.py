"""An overloaded detector keeps its leases and makes steady progress (issue 11, item 1).

One symbol whose every 4th trade closes a 1m bar floods one partition with heavy entries (480
trades, 120 closed bars, all 61 patterns each): a read batch of ``BATCH_COUNT`` entries takes
several times the lease TTL to apply. Two ``python -m detectors`` processes share the four
partitions. The old worker applied a whole batch without yielding to the event loop, so the
busy detector neither heartbeated nor renewed: its lease expired, the other detector took the
partition over from the last checkpoint, the first one was fenced, and the two ping-ponged
over the same un-checkpointed batch forever (``pending`` frozen, nothing more stored).
The second test checks the other half of the fix: a runner leaving mid-batch (stop, hand-over,
lost lease) does so after the current work slice, not after the whole batch.

Asserted here, with membership stable throughout: the stored bars grow at every sample until
all are there, no lease is ever lost, fenced or moved (every partition keeps the epoch and
holder it had before the flood), the backlog that built up during the flood drains once the
feed stops, and the bars and pattern events equal ``alphapulse replay`` of the same ticks.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.contracts import Tick, TickBatch
from common.names import GROUP_DETECTORS, Keys, partition_of
from common.settings import CommonSettings
from detectors import checkpoint
from detectors.metrics import DetectorMetrics
from detectors.partition import EngineConfig
from detectors.replay import event_record, replay_ticks
from detectors.service import DetectorService
from detectors.settings import DetectorSettings
from detectors.timeframes import parse_timeframes
from ingest.offline.ticks import read_ticks, write_trades_csv
from tests.conftest import REDIS_URL
from tests.integration.detectors_support import (
    PARTITIONS,
    ROOT,
    Detectors,
    bar_key,
    count_bars,
    dedup,
    read_bars,
    read_events,
    until,
)

pytestmark = pytest.mark.redis

EXCHANGE, SYMBOL, NATIVE = "binance-futures", "BTC-USDT", "BTCUSDT"
ENTRY_TRADES = 480  # 120 closed 1m bars per entry: each entry is heavy
ENTRIES = 150
ENGINE_ENV = {
    "TIMEFRAMES": "1m",
    "ALLOWED_LATENESS_MS": "0",
    # A read batch of 100 heavy entries takes several lease TTLs to apply.
    "BATCH_COUNT": "100",
    "LEASE_TTL_MS": "2000",
    "HEARTBEAT_MS": "200",
    "CHECKPOINT_INTERVAL": "200",
    "TRIM_INTERVAL_S": "0",  # keep every entry: the backlog is read from the group's lag
}
SAMPLE_S = 1.5
DRAIN_WAIT_S = 240.0


def _ticks() -> list[Tick]:
    """Four trades a minute (every 4th trade opens a new minute and closes the last bar), a
    seeded random walk so that candlestick patterns fire."""
    rng = random.Random(11)
    t0 = 1_723_161_600_000_000_000
    price = 60_000.0
    out = []
    for i in range(ENTRIES * ENTRY_TRADES):
        price = max(1.0, price + rng.gauss(0.0, 25.0))
        ts = t0 + (i // 4) * 60 * 10**9 + (i % 4) * 15 * 10**9
        qty = round(rng.uniform(0.001, 2.0), 3)
        side: Literal["buy", "sell"] = "buy" if rng.random() < 0.5 else "sell"
        out.append(Tick(EXCHANGE, SYMBOL, NATIVE, str(i + 1), round(price, 1), qty, side, ts, ts))
    return out


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The ticks (read back from a normalized CSV) and ``alphapulse replay`` of them, without
    the last bar (replay closes it at the end of input; live it stays open)."""
    tmp = tmp_path_factory.mktemp("overload")
    csv_path = tmp / "ticks.csv"
    with csv_path.open("w") as f:
        write_trades_csv(_ticks(), f)
    ticks = list(read_ticks(csv_path))
    out = tmp / "replay"
    cmd = [sys.executable, "-m", "common.cli", "replay", "--ticks", str(csv_path)]
    cmd += ["--partitions", str(PARTITIONS), "--out", str(out)]
    env = {**os.environ, **ENGINE_ENV}  # what the detector processes see too
    subprocess.run(cmd, env=env, check=True, timeout=300, cwd=ROOT)
    last_open = max(t.ts for t in ticks) // 1_000_000 // 60_000 * 60_000
    bars = [orjson.loads(x) for x in (out / "bars.jsonl").read_bytes().splitlines()]
    events = [orjson.loads(x) for x in (out / "patterns.jsonl").read_bytes().splitlines()]
    want_bars = _by_id([b for b in bars if b["open_time"] < last_open])
    want_events = _by_id([e for e in events if e["open_time"] < last_open])
    assert len(want_bars) == ENTRIES * ENTRY_TRADES // 4 - 1
    assert len(want_events) > 50
    return {"ticks": ticks, "bars": want_bars, "events": want_events}


def _entries(ticks: list[Tick]) -> Iterator[dict[bytes, bytes]]:
    for a in range(0, len(ticks), ENTRY_TRADES):
        yield dict(TickBatch.from_ticks(ticks[a : a + ENTRY_TRADES]).encode().items())


async def _backlog(r: aioredis.Redis, stream: str) -> int:
    """Entries of ``stream`` the detectors have not acked yet: never read, or pending."""
    groups: Any = await r.xinfo_groups(stream)
    (group,) = [g for g in groups if g["name"] in (GROUP_DETECTORS, GROUP_DETECTORS.encode())]
    assert group["lag"] is not None, group
    return int(group["lag"]) + int(group["pending"])


async def _leases(r: aioredis.Redis, keys: Keys) -> dict[int, tuple[Any, Any]]:
    """Holder and epoch of every partition's lease."""
    out = {}
    for p in range(PARTITIONS):
        out[p] = (await r.get(keys.lease(p)), await r.get(keys.epoch(p)))
    return out


@pytest.fixture
def detectors(namespace: str, tmp_path: Path) -> Iterator[Detectors]:
    procs = Detectors(namespace, tmp_path, ENGINE_ENV)
    yield procs
    procs.close()


@pytest.mark.slow
async def test_overloaded_partition_keeps_its_lease_and_drains(
    redis_client: aioredis.Redis, keys: Keys, scenario: dict[str, Any], detectors: Detectors
) -> None:
    r = redis_client
    stream = keys.ticks(partition_of(EXCHANGE, SYMBOL, PARTITIONS))
    detectors.start(2)

    async def settled() -> bool:
        holders = [h for h, _ in (await _leases(r, keys)).values()]
        return None not in holders and sorted(holders.count(h) for h in set(holders)) == [2, 2]

    await until(settled, detectors, "two detectors owning two partitions each")
    await asyncio.sleep(1.0)  # a few heartbeats: the table is stable
    before = await _leases(r, keys)
    log_start = {f: f.stat().st_size for f in detectors.logs.glob("*.log")}

    async def feed() -> None:
        # About 50 entries a second: several times what one detector applies.
        for fields in _entries(scenario["ticks"]):
            await r.xadd(stream, fields)  # type: ignore[arg-type]
            await asyncio.sleep(0.02)

    feeder = asyncio.create_task(feed())
    samples: list[tuple[float, int, int]] = []  # (time, stored bars, backlog)
    deadline = time.monotonic() + DRAIN_WAIT_S
    want = len(scenario["bars"])
    while True:
        await asyncio.sleep(SAMPLE_S)
        bars, backlog = await count_bars(r, keys.bars), await _backlog(r, stream)
        # Steady progress: every sample stored more bars than the one before, until all are in.
        if samples and bars <= samples[-1][1] < want:
            feeder.cancel()
            pytest.fail(f"stalled at {bars} bars: {samples}\n{detectors.log_tail()}")
        samples.append((time.monotonic(), bars, backlog))
        if feeder.done() and bars >= want and backlog == 0:
            break
        assert time.monotonic() < deadline, f"not drained: {samples}\n{detectors.log_tail()}"
    await feeder
    logs = "".join(f.read_bytes()[n:].decode() for f, n in sorted(log_start.items()))

    # It was an overload: a backlog built up while the feed ran, and drained after it.
    assert max(b for _, _, b in samples) >= 50, samples
    # No lease lost, fenced or moved while the membership was stable.
    for event in ("lease_lost", "checkpoint_fenced", "partition_failed", "partition_handover"):
        assert event not in logs, f"{event}: {samples}\n{logs}"
    assert await _leases(r, keys) == before
    assert detectors.terminate_all() == [0, 0], detectors.log_tail()

    # The same bars and pattern events as ``alphapulse replay``, each written once.
    bars_live = [_json(b.to_dict()) for b in await read_bars(r, keys.bars)]
    events_live = [_json(event_record(e)) for e in await read_events(r, keys.patterns)]
    assert len(dedup(bars_live)) == len(bars_live), "a bar was written twice"
    assert _by_id(bars_live) == scenario["bars"]
    assert _by_id(events_live) == scenario["events"]


def _json(record: dict[str, Any]) -> dict[str, Any]:
    """A record as ``alphapulse replay`` writes it to its JSON lines."""
    out: dict[str, Any] = orjson.loads(orjson.dumps(record))
    return out


def _by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {":".join(map(str, bar_key(d))): d for d in records}


async def test_a_stop_mid_batch_leaves_the_rest_pending_for_the_next_owner(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    """A detector asked to stop while a read batch is still being applied stops after the
    current work slice: it checkpoints what it applied, leaves the rest of the batch pending,
    and the next owner applies exactly that rest (no bar missing, none written twice)."""
    r = redis_client
    ticks = _ticks()[: 30 * ENTRY_TRADES]
    stream = keys.ticks(partition_of(EXCHANGE, SYMBOL, PARTITIONS))
    ids: list[tuple[int, int]] = []
    for fields in _entries(ticks):
        entry_id: Any = await r.xadd(stream, fields)  # type: ignore[arg-type]
        ids.append(_entry_id(entry_id))
    config = EngineConfig(timeframes=parse_timeframes("1m"), allowed_lateness_ms=0)
    common = CommonSettings(
        redis_url=REDIS_URL, partitions=PARTITIONS, namespace=namespace, metrics_port=0
    )

    def settings(member: str) -> DetectorSettings:
        return DetectorSettings(
            common=replace(common, batch_count=100, block_ms=50),
            engine=config,
            idle_close_ms=0,
            lease_ttl_ms=5000,
            heartbeat_ms=100,
            checkpoint_interval_ms=60_000,  # only the checkpoint on leaving
            work_slice_ms=1,
            detector_id=member,
        )

    first = DetectorService(
        settings("first"), redis=r, metrics=DetectorMetrics(CollectorRegistry())
    )
    await first.start()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(first.run())
        deadline = time.monotonic() + 60
        while not await r.xlen(keys.bars):
            assert time.monotonic() < deadline, "no bar written"
            await asyncio.sleep(0.01)
        first.request_stop()
    await first.stop()
    state: Any = await r.get(keys.checkpoint(partition_of(EXCHANGE, SYMBOL, PARTITIONS)))
    applied = _entry_id(checkpoint.loads(state, config).last_id)
    assert applied < ids[-1], "the whole batch was applied before stopping"
    pending: Any = await r.xpending(stream, GROUP_DETECTORS)
    assert pending["pending"] == len([i for i in ids if i > applied])

    second = DetectorService(
        settings("second"), redis=r, metrics=DetectorMetrics(CollectorRegistry())
    )
    await second.start()
    last_open = ticks[-1].ts // 1_000_000 // 60_000 * 60_000
    replayed = replay_ticks(ticks, config, PARTITIONS).bars
    want = {b.id: b.to_dict() for b in replayed if b.open_time < last_open}
    async with asyncio.TaskGroup() as tg:
        tg.create_task(second.run())
        deadline = time.monotonic() + 120
        while await count_bars(r, keys.bars) < len(want):
            assert time.monotonic() < deadline, "the rest was not applied"
            await asyncio.sleep(0.05)
        second.request_stop()
    await second.stop()
    bars = await read_bars(r, keys.bars)
    assert {b.id: b.to_dict() for b in bars} == want
    assert len(bars) == len(want), "a bar was written twice"


def _entry_id(raw: Any) -> tuple[int, int]:
    """A stream entry id (bytes or str) as a comparable (ms, seq)."""
    ms, seq = (raw.decode() if isinstance(raw, bytes) else str(raw)).split("-")
    return int(ms), int(seq)
