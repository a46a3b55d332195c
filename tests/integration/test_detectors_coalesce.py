"""A live trickle of small entries is applied a few steps a second, not one step an entry
(``COALESCE_MS``, ``detectors.runner`` step 6), and what comes out equals replay.

An in-process detector owns every partition; one symbol gets a 3-tick entry every 5 ms for
about a second (as ingest writes at 10,000 ticks/s over 16 partitions), event time = the wall
clock, placed early in a minute so that no 1m bar can close meanwhile. With ``COALESCE_MS``
50 the runner waits between reads and applies the entries that gathered in one step, and
holds a read's entries for the next reads when none of their ticks can close a bar; with 0
it reads each entry as it comes (the baseline, same feed). Then a trailer closes the minute:
the bar equals ``replay_ticks`` of the same ticks either way. (That the entry closing a bar is
still read at once is the pure rule's test, ``test_detectors_runner``; the paced ``make bench``
run measures the latency.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from common.contracts import Tick, TickBatch
from common.names import GROUP_DETECTORS, Keys, partition_of
from common.settings import CommonSettings
from detectors import runner as runner_module
from detectors.metrics import DetectorMetrics
from detectors.partition import EngineConfig
from detectors.replay import replay_ticks
from detectors.service import DetectorService
from detectors.settings import DetectorSettings
from detectors.timeframes import parse_timeframes
from tests.conftest import REDIS_URL
from tests.integration.detectors_support import PARTITIONS, read_bars
from tests.polling import until

pytestmark = pytest.mark.redis

ENTRIES, TICKS_PER_ENTRY, EVERY_S = 200, 3, 0.005
CONFIG = EngineConfig(timeframes=parse_timeframes("1m"), allowed_lateness_ms=0)
P = partition_of("binance", "BTC-USDT", PARTITIONS)  # the partition of the one symbol fed


def _detector(
    r: aioredis.Redis, namespace: str, name: str, coalesce_ms: int, registry: CollectorRegistry
) -> DetectorService:
    """An in-process detector over every partition of ``namespace`` (bars by event time)."""
    common = CommonSettings(
        redis_url=REDIS_URL, partitions=PARTITIONS, namespace=namespace, metrics_port=0
    )
    settings = DetectorSettings(
        common=common, engine=CONFIG, idle_close_ms=0, coalesce_ms=coalesce_ms, detector_id=name
    )
    return DetectorService(settings, redis=r, metrics=DetectorMetrics(registry))


def _next_minute() -> int:
    """The next minute's start, ms (wall clock)."""
    return (time.time_ns() // 60_000_000_000 + 1) * 60_000


def _ticks(first_id: int, t_ms: int, n: int) -> list[Tick]:
    """``n`` trades of the symbol at ``t_ms``, ids from ``first_id``, prices 100, 101, ..."""
    ns = t_ms * 1_000_000
    return [
        Tick("binance", "BTC-USDT", "BTCUSDT", str(first_id + k), 100.0 + k, 1.0, "buy", ns, ns)
        for k in range(n)
    ]


async def _add(r: aioredis.Redis, keys: Keys, batch: list[Tick]) -> None:
    """``batch`` as one ``ticks:{p}`` entry, as ingest writes it."""
    fields = TickBatch.from_ticks(batch).encode()
    await r.xadd(keys.ticks(P), dict(fields.items()))  # type: ignore[arg-type]


async def _feed(r: aioredis.Redis, keys: Keys, coalesce_ms: int) -> tuple[int, int, list[Tick]]:
    """Run a detector over the trickle, then the trailer; its (steps, ticks) during the
    trickle and every tick sent."""
    registry = CollectorRegistry()

    def count(what: str) -> int:
        return int(registry.get_sample_value(f"alphapulse_detectors_{what}_total") or 0)

    service = _detector(r, keys.namespace, f"coalesce-{coalesce_ms}", coalesce_ms, registry)
    minute = _next_minute()
    sent: list[Tick] = []

    async def add(batch: list[Tick]) -> None:
        sent.extend(batch)
        await _add(r, keys, batch)

    await service.start()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(service.run())
        await add(_ticks(1, minute + 1000, 1))  # the partition's first entry: taken and applied
        await until(lambda: count("ticks") >= 1, "the detector's first tick")
        steps0, ticks0 = count("engine_steps"), count("ticks")
        started = time.monotonic()
        for i in range(ENTRIES):  # event time moves with the wall clock, from 0:02 on
            t_ms = minute + 2000 + int((time.monotonic() - started) * 1000)
            await add(_ticks(2 + i * TICKS_PER_ENTRY, t_ms, TICKS_PER_ENTRY))
            await asyncio.sleep(max(0.0, started + (i + 1) * EVERY_S - time.monotonic()))
        want = ticks0 + ENTRIES * TICKS_PER_ENTRY
        await until(lambda: count("ticks") >= want, "the trickle applied")
        steps, applied = count("engine_steps") - steps0, count("ticks") - ticks0
        await add(_ticks(10_000, minute + 60_000, 1))  # closes the minute

        async def bar_written() -> bool:
            return bool(await r.xlen(keys.bars))

        await until(bar_written, "the minute's bar")
        service.request_stop()
    await service.stop()
    return steps, applied, sent


async def test_a_trickle_of_entries_is_applied_in_few_steps(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    r = redis_client
    results: dict[int, tuple[int, int]] = {}
    for coalesce_ms in (50, 0):
        keys = Keys(namespace=f"{namespace}c{coalesce_ms}:", partitions=PARTITIONS)
        steps, applied, sent = await _feed(r, keys, coalesce_ms)
        results[coalesce_ms] = steps, applied
        trailer_minute = sent[-1].ts // 1_000_000  # replay also closes the trailer's bar
        want: dict[str, Any] = {
            b.id: b.to_dict()
            for b in replay_ticks(sent, CONFIG, PARTITIONS).bars
            if b.open_time < trailer_minute
        }
        got = {b.id: b.to_dict() for b in await read_bars(r, keys.bars)}
        assert got == want and len(got) == 1
    (steps, applied), (base_steps, base_applied) = results[50], results[0]
    assert applied == base_applied == ENTRIES * TICKS_PER_ENTRY
    # ~1 s of entries: about 20 reads 50 ms apart, a read's entries held for the next two
    # (no tick of theirs can close the minute's bar; held up to 2 x ``COALESCE_MS``), so
    # about 7 steps; against one step an entry when reading at once (a few merges if the
    # runner fell behind now and then).
    assert steps <= 14, results
    assert base_steps >= ENTRIES // 2, results


async def test_entries_held_at_a_stop_are_applied_by_the_next_owner(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """Entries read but not applied yet (none of their ticks could close a bar) stay pending
    above the checkpoint: a detector stopped while holding some hands them to the next owner,
    and the minute's bar still has every tick once."""
    r = redis_client
    keys = Keys(namespace=namespace, partitions=PARTITIONS)
    minute = _next_minute()
    sent: list[Tick] = []

    async def add(n: int, t_ms: int) -> None:
        batch = _ticks(len(sent) + 1, t_ms, n)
        sent.extend(batch)
        await _add(r, keys, batch)

    def detector(name: str) -> DetectorService:
        return _detector(r, namespace, name, 1000, CollectorRegistry())

    first = detector("first")
    await first.start()
    held = 0
    async with asyncio.TaskGroup() as tg:
        tg.create_task(first.run())
        await add(1, minute + 1000)
        await until(lambda: P in first.runners, "the first detector owns the partition")
        for i in range(200):
            await add(3, minute + 2000 + i)
            await asyncio.sleep(0.005)
            held = len(first.runners[P].held)
            if held:
                break
        first.request_stop()
    await first.stop()
    assert held, "no entry was ever held"
    assert await r.xlen(keys.bars) == 0
    # What the first detector held is still pending (unacked): nobody applied it.
    pending = await r.xpending(keys.ticks(P), GROUP_DETECTORS)
    assert pending["pending"] >= held

    second = detector("second")
    await second.start()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(second.run())
        await add(1, minute + 60_000)  # closes the minute

        async def bar_written() -> bool:
            return bool(await r.xlen(keys.bars))

        await until(bar_written, "the minute's bar")
        second.request_stop()
    await second.stop()
    want = {b.id: b.to_dict() for b in replay_ticks(sent, CONFIG, PARTITIONS).bars}
    got = {b.id: b.to_dict() for b in await read_bars(r, keys.bars)}
    assert got == {k: v for k, v in want.items() if v["open_time"] < minute + 60_000}
    assert len(got) == 1


async def test_the_wait_counts_the_held_ticks_event_time(
    redis_client: aioredis.Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait between reads counts the event time of the entries held unapplied: a tick
    held 80 ms before the minute's end leaves 30 ms until the last ``COALESCE_MS`` (50) before
    it, so the runner waits 30 ms, though what it applied is 59 s before the end; inside that
    last window entries are applied as they come (not held) and the runner reads at once."""
    r = redis_client
    keys = Keys(namespace=namespace, partitions=PARTITIONS)
    registry = CollectorRegistry()
    service = _detector(r, namespace, "held", 50, registry)
    minute = _next_minute()
    waits: list[tuple[int, int]] = []  # (entries held, the wait) at each decision
    real = runner_module.coalesce_delay_ms

    def recorded(until_close_ms: int | None, window_ms: int) -> int:
        delay = real(until_close_ms, window_ms)
        waits.append((len(service.runners[P].held), delay))
        return delay

    def applied() -> int:
        return int(registry.get_sample_value("alphapulse_detectors_ticks_total") or 0)

    monkeypatch.setattr(runner_module, "coalesce_delay_ms", recorded)
    n = 0

    async def add(t_ms: int) -> None:
        nonlocal n
        n += 1
        await _add(r, keys, _ticks(n, t_ms, 1))

    await service.start()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(service.run())
        await add(minute + 1000)
        await until(lambda: applied() == 1, "the first tick applied")
        waits.clear()
        await add(minute + 59_920)
        await until(lambda: any(held for held, _ in waits), "the entry held")
        assert waits[[held for held, _ in waits].index(1)] == (1, 30)
        for i in range(5):  # the last 50 ms: applied as they come, no wait
            await add(minute + 59_960 + i)
        await until(lambda: applied() == 7, "every tick applied")
        service.request_stop()
    await service.stop()
    assert waits[-1] == (0, 0)
