"""The signals worker on real Redis: exactly-once append, crash and restart, two instances."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import redis.asyncio as aioredis

from common.columns import decode_events, encode_events
from common.contracts import PatternEvent
from common.names import GROUP_SIGNALS, Keys
from common.settings import CommonSettings
from common.stream_worker import BatchResult, Entry, StreamConsumer
from signals.append import SignalAppender
from signals.contract import Signal, decode_entry, load_schema
from signals.model import Model
from signals.offline import comparable, write_signals_jsonl
from signals.scoring import score_event
from signals.service import SignalsService
from signals.settings import SignalsSettings
from signals.versions import ModelHistory
from tests.conftest import REDIS_URL
from tests.signals_factory import MINUTE, T0, event_mix, strong_event

pytestmark = pytest.mark.redis
VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def settings_for(namespace: str, **common: Any) -> SignalsSettings:
    base: dict[str, Any] = {
        "redis_url": REDIS_URL,
        "namespace": namespace,
        "partitions": 4,
        "metrics_port": 0,
        "claim_idle_ms": 100,
        "batch_count": 50,
        "trim_interval_s": 0.0,
    }
    return SignalsSettings(common=CommonSettings(**(base | common)), model=Model())


async def write_events(r: aioredis.Redis, keys: Keys, events: Sequence[PatternEvent]) -> None:
    async with r.pipeline(transaction=False) as pipe:
        for e in events:
            pipe.xadd(keys.patterns, e.encode())  # type: ignore[arg-type]
        await pipe.execute()


async def stream_signals(r: aioredis.Redis, keys: Keys) -> list[Signal]:
    entries = await r.xrange(keys.signals)
    out = []
    for _, fields in entries:
        signal_ = decode_entry(fields)
        VALIDATOR.validate(signal_.to_dict())
        assert fields[b"id"].decode() == signal_.id
        out.append(signal_)
    return out


def expected(events: Sequence[PatternEvent]) -> dict[str, Signal]:
    history = ModelHistory.seed(Model())  # a fresh namespace: version 1 from the settings
    return {s.id: s for e in events for s in history.score(e)}


def without_time(signals: Sequence[Signal]) -> dict[str, Signal]:
    return {s.id: s.stamped("1970-01-01T00:00:00.000Z") for s in signals}


def assert_exactly(signals: Sequence[Signal], events: Sequence[PatternEvent]) -> None:
    ids = [s.id for s in signals]
    assert len(ids) == len(set(ids)), "a signal id appears twice on the stream"
    want = without_time(list(expected(events).values()))
    assert without_time(signals) == want


async def test_lua_check_and_append_dedupes_and_bounds_the_index(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    appender = SignalAppender(redis_client, keys, retention_ms=10 * MINUTE)
    first = score_event(strong_event("A", T0), Model())
    old = score_event(strong_event("B", T0 - 60 * MINUTE, -1), Model())
    assert [x is not None for x in await appender.append(old + first)] == [True, True]
    assert await appender.append(first) == [None]  # the same id again: not appended
    assert await redis_client.xlen(keys.signals) == 2
    # B's id is older than the newest open time minus the retention: trimmed from the index.
    members = await redis_client.zrange(keys.signal_ids, 0, -1)
    assert members == [first[0].id.encode()]
    assert keys.signal_ids == "{" + keys.signals + "}:ids"  # one Cluster slot with the stream


async def test_worker_emits_every_signal_once_and_acks(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    events = event_mix(600)
    await write_events(redis_client, keys, events)
    async with SignalsService(settings_for(namespace), redis=redis_client, burst=True) as w:
        await w.run()
    assert_exactly(await stream_signals(redis_client, keys), events)
    summary: Any = await redis_client.xpending(keys.patterns, GROUP_SIGNALS)
    assert summary["pending"] == 0


@pytest.mark.parametrize("slice_ms", [0, 2])
async def test_append_slices_give_the_same_signals_once_each(
    redis_client: aioredis.Redis, keys: Keys, namespace: str, slice_ms: int
) -> None:
    """A read of many detector writes is appended in slices (``SIGNALS_APPEND_SLICE_MS``):
    here a clock that moves 1.5 ms per look ends a slice after every second entry (0: one
    append per read). The same signals either way, each once, every entry acked."""
    events = event_mix(400)
    async with redis_client.pipeline(transaction=False) as pipe:
        for fields in encode_events(events[:200]) + encode_events(events[200:]):
            pipe.xadd(keys.patterns, fields)  # type: ignore[arg-type]
        for e in events[:40]:  # and v1 entries again: redeliveries of the same events
            pipe.xadd(keys.patterns, e.encode())  # type: ignore[arg-type]
        await pipe.execute()
    settings = settings_for(namespace)
    settings = replace(settings, append_slice_ms=slice_ms)
    ticks = iter(range(10**6))
    appends: list[int] = []
    async with SignalsService(settings, redis=redis_client, burst=True) as w:
        w.clock = lambda: next(ticks) * 0.0015
        append = w.appender.append

        async def counted(signals: Any, **kw: Any) -> Any:
            appends.append(len(signals))
            return await append(signals, **kw)

        w.appender.append = counted  # type: ignore[method-assign]
        await w.run()
    assert_exactly(await stream_signals(redis_client, keys), events)
    assert (await redis_client.xpending(keys.patterns, GROUP_SIGNALS))["pending"] == 0
    entries = 2 + 40
    assert len(appends) == (1 if slice_ms == 0 else entries // 2)
    assert sum(appends) == len(expected(events)) + len(expected(events[:40]))


async def test_redelivery_after_append_before_ack_gives_no_duplicate(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    """The exact crash window: signals appended, entries never acked, worker gone."""
    events = event_mix(200)
    await write_events(redis_client, keys, events)
    settings = settings_for(namespace)
    crashed = StreamConsumer.from_settings(
        redis_client, settings.common, group=GROUP_SIGNALS, streams=[keys.patterns]
    )
    await crashed.ensure_groups("0")
    batch: list[Entry] = await crashed.read(count=120, block_ms=0)
    appender = SignalAppender(redis_client, keys)
    seed = ModelHistory.seed(Model())
    half = [s.stamped() for e in batch for s in seed.score(PatternEvent.decode(e.fields))]
    await appender.append(half)  # ...and the process dies before XACK
    assert await crashed.pending_count() == 120
    async with SignalsService(settings, redis=redis_client, burst=True) as w:
        await w.run()
    assert_exactly(await stream_signals(redis_client, keys), events)
    assert await crashed.pending_count() == 0


def _worker_env(namespace: str, **extra: str) -> dict[str, str]:
    return (
        os.environ
        | {
            "REDIS_URL": REDIS_URL,
            "NAMESPACE": namespace,
            "PARTITIONS": "4",
            "METRICS_PORT": "0",
            "CLAIM_IDLE_MS": "200",
            "BATCH_COUNT": "5",  # small batches: many appends, so a kill lands mid-way
            "LOG_LEVEL": "WARNING",
            "GRACE_SECONDS": "2",
        }
        | extra
    )


@pytest.mark.slow
async def test_sigkill_mid_batch_then_restart_gives_no_duplicate_and_no_gap(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    events = event_mix(6000, symbols=200)
    await write_events(redis_client, keys, events)
    cmd = [sys.executable, "-m", "signals"]
    proc = await asyncio.create_subprocess_exec(*cmd, env=_worker_env(namespace))
    try:
        for _ in range(3000):  # up to 60 s for the worker to start appending
            if await redis_client.xlen(keys.signals) > 50:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the signals worker never appended")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
    assert await redis_client.xlen(keys.signals) < len(expected(events))  # really mid-way
    restart = await asyncio.create_subprocess_exec(*cmd, "--burst", env=_worker_env(namespace))
    assert await asyncio.wait_for(restart.wait(), 60) == 0
    assert_exactly(await stream_signals(redis_client, keys), events)


class CountingWorker(SignalsService):
    handled = 0

    async def handle(self, batch: list[Entry]) -> BatchResult:
        self.handled += len(batch)
        await asyncio.sleep(0)  # let the other instance read in between
        return await super().handle(batch)


async def test_two_instances_share_the_load_with_identical_output(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    events = event_mix(1000)
    await write_events(redis_client, keys, events)
    # No reclaiming here: on a loaded machine a batch can take past the suite's 100 ms idle
    # time, and the other instance would handle it again (legitimately: the output is exact).
    settings = settings_for(namespace, claim_idle_ms=60_000)
    workers = [
        CountingWorker(settings, redis=redis_client, burst=True, consumer=f"w{i}") for i in (1, 2)
    ]
    for w in workers:
        await w.start()
    await asyncio.gather(*(w.run() for w in workers))
    for w in workers:
        await w.stop()
    assert all(w.handled > 0 for w in workers)
    assert sum(w.handled for w in workers) == len(events)
    assert_exactly(await stream_signals(redis_client, keys), events)


async def test_a_bad_pattern_event_is_dead_lettered_and_the_rest_goes_on(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    events = event_mix(100)
    await redis_client.xadd(keys.patterns, {b"v": b"1", b"d": b"{not json"})
    await write_events(redis_client, keys, events)
    async with SignalsService(settings_for(namespace), redis=redis_client, burst=True) as w:
        await w.run()
    assert_exactly(await stream_signals(redis_client, keys), events)
    assert await redis_client.xlen(keys.dlq(keys.patterns)) == 1


async def test_columnar_entries_give_the_same_signals_and_v1_entries_are_still_read(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    """An upgrade: v1 entries (one event each) left by an older detector, then columnar ones
    (one per detector write); every event is scored once, as from v1 entries alone."""
    events = event_mix(300)
    await write_events(redis_client, keys, events[:100])
    async with redis_client.pipeline(transaction=False) as pipe:
        for fields in encode_events(events[100:]):
            pipe.xadd(keys.patterns, fields)  # type: ignore[arg-type]
        await pipe.execute()
    assert await redis_client.xlen(keys.patterns) < 150
    async with SignalsService(settings_for(namespace), redis=redis_client, burst=True) as w:
        await w.run()
    assert_exactly(await stream_signals(redis_client, keys), events)
    assert await redis_client.xlen(keys.dlq(keys.patterns)) == 0


async def test_an_unscorable_event_of_a_columnar_entry_is_dead_lettered_alone(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    events = [strong_event(f"S{i}", T0, 1 if i % 2 else -1) for i in range(12)]
    bad = replace(events[7], recent=[{"bogus": 1}])  # its cooldown cannot be judged
    good = events[:7] + events[8:]
    await redis_client.xadd(keys.patterns, {b"v": b"2", b"n": b"1"})  # does not decode
    (fields,) = encode_events([*events[:7], bad, *events[8:]])
    await redis_client.xadd(keys.patterns, fields)  # type: ignore[arg-type]
    async with SignalsService(settings_for(namespace), redis=redis_client, burst=True) as w:
        await w.run()
    assert_exactly(await stream_signals(redis_client, keys), good)
    dead: Any = await redis_client.xrange(keys.dlq(keys.patterns))
    reasons = sorted(f[b"reason"] for _, f in dead)
    assert reasons == [b"bar_columns", b"recent_event"]
    (letter,) = [f for _, f in dead if f[b"reason"] == b"recent_event"]
    kept = {k.removeprefix(b"f:"): v for k, v in letter.items() if k.startswith(b"f:")}
    assert kept[b"v"] == b"3" and decode_events(kept) == [bad]  # the event alone
    assert (await redis_client.xpending(keys.patterns, GROUP_SIGNALS))["pending"] == 0


async def test_offline_jsonl_equals_the_live_stream_minus_emitted_at(
    redis_client: aioredis.Redis, keys: Keys, namespace: str, tmp_path: Path
) -> None:
    events = event_mix(500)
    await write_events(redis_client, keys, events)
    async with SignalsService(settings_for(namespace), redis=redis_client, burst=True) as w:
        await w.run()
    n = write_signals_jsonl(tmp_path / "signals.jsonl", events)
    offline = (tmp_path / "signals.jsonl").read_bytes().splitlines()
    live = [f[b"d"] for _, f in await redis_client.xrange(keys.signals)]
    assert n == len(offline) == len(live) > 0
    assert [comparable(x) for x in offline] == [comparable(x) for x in live]
    assert all(orjson.loads(x)["emitted_at"] is None for x in offline)


async def test_signals_stream_is_trimmed_by_retention_but_never_below_a_group(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    for ms in (1000, 2000, 3000, 9000):
        await redis_client.xadd(keys.signals, {b"v": b"1"}, id=f"{ms}-0")
    settings = replace(settings_for(namespace), stream_retention_ms=5000)
    worker = SignalsService(settings, redis=redis_client)
    await worker.consumer.ensure_groups()  # its own input, as at start
    await redis_client.xgroup_create(keys.signals, "risk", id="1000-0")  # still needs 2000-0
    (result,) = [r for r in await worker.trim(now_ms=10_000) if r.stream == keys.signals]
    assert (result.minid, result.trimmed) == ("1000-1", 1)  # just above what it has read
    await redis_client.xgroup_setid(keys.signals, "risk", id="9000-0")
    (result,) = [r for r in await worker.trim(now_ms=10_000) if r.stream == keys.signals]
    assert (result.minid, result.trimmed) == ("5000-0", 2)
    assert [i for i, _ in await redis_client.xrange(keys.signals)] == [b"9000-0"]


async def test_new_signals_are_published_on_their_symbol_channel(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.signal_channel("binance", "AAA"))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    events = [strong_event("AAA", T0), strong_event("BBB", T0)]
    await write_events(redis_client, keys, events * 2)  # the repeats must not publish again
    async with SignalsService(settings_for(namespace), redis=redis_client, burst=True) as w:
        await w.run()
    (on_stream,) = [s for s in await stream_signals(redis_client, keys) if s.symbol == "AAA"]
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert message is not None
    assert decode_entry({b"d": message["data"]}) == on_stream
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
    await pubsub.aclose()
