"""Poison written straight into ``ticks:{p}`` (issue 11 item 3): a detector process on real
Redis rejects each poisoned tick with its reason into ``dlq:ticks:{p}``, and its bars and
pattern events — across a restart from its checkpoint — equal the replay of the clean ticks.

Before: a NaN price, a negative quantity, a 2099 time or an id of 10^15 were applied as they
came (bars missing, bars dated 2099, wrong volumes) and checkpointed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from common.contracts import Tick, TickBatch
from common.dead_letters import original_fields
from common.names import Keys, partition_of
from detectors.replay import replay_ticks
from detectors.settings import engine_config_from_env
from ingest.offline.ticks import read_ticks
from tests.integration.detectors_support import (
    DATA,
    PARTITIONS,
    Detectors,
    count_bars,
    dedup,
    read_all,
    read_bars,
    read_events,
    until,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ENGINE_ENV = {"TIMEFRAMES": "1s,1m", "ALLOWED_LATENESS_MS": "1500"}


def _clean() -> list[Tick]:
    ticks = list(read_ticks(DATA / "binance-spot-btcusdt-20240808.rec.gz"))[:4000]
    last = ticks[-1]
    end = last.ts + 3_600 * 10**9  # closes every real bar by watermark
    ticks.append(last._replace(trade_id=str(int(last.trade_id) + 1), ts=end, recv_ts=end))
    return ticks


def _poisoned(clean: list[Tick]) -> tuple[list[Tick], dict[str, str]]:
    """The clean ticks with poison inserted; {trade id: expected reason}."""
    ref = clean[1500]
    nxt = int(clean[-1].trade_id) + 100
    bad = [
        (500, ref._replace(trade_id=str(nxt), price=float("nan")), "bad_price"),
        (900, ref._replace(trade_id=str(nxt + 1), qty=-0.5), "bad_qty"),
        (1300, ref._replace(trade_id=str(nxt + 2), ts=4_070_908_800 * 10**9), "time_ahead"),
        (1700, ref._replace(trade_id=str(10**15)), "id_jump"),
    ]
    out = list(clean)
    for pos, t, _ in sorted(bad, key=lambda x: -x[0]):
        out.insert(pos, t)
    return out, {t.trade_id: reason for _, t, reason in bad}


@pytest.fixture
def detectors(namespace: str, tmp_path: Path) -> Iterator[Detectors]:
    procs = Detectors(namespace, tmp_path, ENGINE_ENV)
    yield procs
    procs.close()


async def _feed(
    r: aioredis.Redis, keys: Keys, ticks: list[Tick], size: int = 97
) -> dict[str, bytes]:
    """XADD the ticks in entries of ``size``; {trade id: the id of its entry}."""
    p = partition_of(ticks[0].exchange, ticks[0].symbol, PARTITIONS)
    entry_of: dict[str, bytes] = {}
    for i in range(0, len(ticks), size):
        part = ticks[i : i + size]
        entry_id = await r.xadd(keys.ticks(p), dict(TickBatch.from_ticks(part).encode().items()))
        entry_of.update((t.trade_id, entry_id) for t in part)
    return entry_of


async def test_poisoned_ticks_are_dead_lettered_and_bars_equal_the_clean_replay(
    redis_client: aioredis.Redis, keys: Keys, detectors: Detectors
) -> None:
    clean = _clean()
    poisoned, expected = _poisoned(clean)
    want = replay_ticks(clean, engine_config_from_env(ENGINE_ENV), PARTITIONS)
    real = clean[-1].ts // 1_000_000 - 60_000  # bars before the watermark sentinel's
    want_bars = _before(dedup([b.to_dict() for b in want.bars]), real)
    want_events = _before(dedup([e.to_dict() for e in want.events]), real)
    assert len(want_bars) > 150 and want_events

    cut = 2000  # the first part, then a restart from the checkpoint, then the rest
    # Fed before the detector starts: its first read holds every entry, which it applies two
    # at a time (``MERGE_TICKS``: 194 ticks a step), each poison in the second entry of a
    # step; each rejected tick must still name its own entry.
    entry_of = await _feed(redis_client, keys, poisoned[:cut])
    detectors.start(1)

    async def written(n: int) -> bool:
        return await count_bars(redis_client, keys.bars) >= n

    await until(lambda: written(20), detectors, "20 bars")
    assert detectors.terminate_all() == [0], detectors.log_tail()
    detectors.start(1)
    entry_of |= await _feed(redis_client, keys, poisoned[cut:])
    await until(lambda: written(len(want_bars)), detectors, f"{len(want_bars)} bars")
    assert detectors.terminate_all() == [0], detectors.log_tail()

    bars = dedup([b.to_dict() for b in await read_bars(redis_client, keys.bars)])
    events = dedup([e.to_dict() for e in await read_events(redis_client, keys.patterns)])
    assert _before(bars, real) == want_bars
    assert _before(events, real) == want_events

    p = partition_of("binance", clean[0].symbol, PARTITIONS)
    dead: dict[str, str] = {}
    for fields in await read_all(redis_client, keys.dlq(keys.ticks(p))):
        (tick,) = TickBatch.decode(original_fields(fields))
        dead[tick.trade_id] = fields[b"reason"].decode()
        assert fields[b"group"] == b"detectors"
        assert fields[b"id"] == entry_of[tick.trade_id]
    assert dead == expected


def _before(by_id: dict[str, dict[str, Any]], t_ms: int) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in by_id.items() if v.get("bar", v)["open_time"] < t_ms}
