"""StreamWorker / StreamConsumer in-process on real Redis: dead letters, deferred acks, batch
isolation, XAUTOCLAIM details, and safe trimming with several groups."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from common.dead_letters import original_fields
from common.errors import BadInput, DecodeError
from common.names import Keys
from common.settings import CommonSettings
from common.stream_worker import BatchResult, Entry, StreamConsumer, StreamWorker

pytestmark = pytest.mark.redis


def _settings(namespace: str, **kw: object) -> CommonSettings:
    base: dict[str, object] = {
        "namespace": namespace,
        "claim_idle_ms": 30,
        "max_deliveries": 3,
        "metrics_port": 0,
        "block_ms": 20,
        "trim_interval_s": 0,
    }
    base.update(kw)
    return CommonSettings(**base)  # type: ignore[arg-type]


async def _consumer(
    client: aioredis.Redis, keys: Keys, namespace: str, name: str
) -> StreamConsumer:
    """Consumer ``name`` of group ``g`` over ``bars``, the group created."""
    consumer = StreamConsumer.from_settings(
        client, _settings(namespace), group="g", streams=[keys.bars], consumer=name
    )
    await consumer.ensure_groups()
    return consumer


async def _add(client: aioredis.Redis, stream: str, n: int, **fields: str) -> list[str]:
    return [(await client.xadd(stream, {"n": str(i), **fields})).decode() for i in range(n)]


async def test_poison_entry_reaches_dlq_after_max_deliveries_and_worker_goes_on(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    settings = _settings(namespace)
    seen: list[tuple[str, int]] = []
    before = await _add(redis_client, keys.bars, 3)
    poison = (await redis_client.xadd(keys.bars, {"poison": "1", "blob": b"\x00\xff"})).decode()
    after = await _add(redis_client, keys.bars, 3)

    async def handler(batch: list[Entry]) -> BatchResult:
        for e in batch:
            seen.append((e.id, e.deliveries))
            if b"poison" in e.fields:
                raise RuntimeError("cannot digest this")
        return BatchResult()

    async with StreamWorker(
        settings, group="g", streams=[keys.bars], handler=handler, redis=redis_client, burst=True
    ) as worker:
        await worker.run()

    # Delivery 1 (in the batch, then alone to isolate it), then redeliveries 2 and 3 -> DLQ.
    assert [d for i, d in seen if i == poison] == [1, 1, 2, 3]
    (dead,) = await redis_client.xrange(keys.dlq(keys.bars))
    f = dead[1]
    assert f[b"stream"] == keys.bars.encode() and f[b"id"] == poison.encode()
    assert f[b"error"] == b"RuntimeError: cannot digest this"
    assert f[b"reason"] == b"max_deliveries" and f[b"deliveries"] == b"3"
    assert f[b"group"] == b"g" and f[b"consumer"] == worker.consumer_name.encode()
    assert original_fields(f) == {b"poison": b"1", b"blob": b"\x00\xff"}
    # Its neighbours were handled (the batch was isolated entry by entry) and everything acked.
    assert {i for i, _ in seen} >= set(before + after)
    assert (await redis_client.xpending(keys.bars, "g"))["pending"] == 0


async def test_bad_input_is_dead_lettered_at_once_with_its_reason(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    ids = await _add(redis_client, keys.bars, 4)
    calls: list[list[str]] = []

    async def handler(batch: list[Entry]) -> BatchResult:
        calls.append([e.id for e in batch])
        result = BatchResult()
        for e in batch:
            if e.id == ids[1]:
                result.fail(e, DecodeError("bar", "missing field d"))
        return result

    async with StreamWorker(
        _settings(namespace), group="g", streams=[keys.bars], handler=handler,
        redis=redis_client, burst=True,
    ) as worker:  # fmt: skip
        await worker.run()
    assert calls == [ids]  # one batch, never retried
    (dead,) = await redis_client.xrange(keys.dlq(keys.bars))
    assert dead[1][b"reason"] == b"bar" and dead[1][b"deliveries"] == b"1"
    assert dead[1][b"error"] == b"DecodeError: bar: missing field d"
    assert (await redis_client.xpending(keys.bars, "g"))["pending"] == 0


async def test_deferred_entries_stay_pending_until_the_stage_acks_them(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    ids = await _add(redis_client, keys.bars, 5)

    async def handler(batch: list[Entry]) -> BatchResult:
        result = BatchResult()
        for e in batch[2:]:
            result.defer(e)
        return result

    worker = StreamWorker(
        _settings(namespace), group="g", streams=[keys.bars], handler=handler,
        redis=redis_client, burst=True,
    )  # fmt: skip
    async with worker:
        await worker.run()  # drained although 3 entries are pending: they are deferred
        assert [e.id for e in worker.deferred] == ids[2:]
        summary = await redis_client.xpending(keys.bars, "g")
        assert summary["pending"] == 3
        assert await worker.ack(worker.deferred[:1]) == 1
        assert await worker.ack_ids(keys.bars, ids[3:]) == 2
        assert worker.deferred == []
        assert (await redis_client.xpending(keys.bars, "g"))["pending"] == 0


async def test_claim_takes_idle_entries_of_a_dead_consumer_with_delivery_counts(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    dead = await _consumer(redis_client, keys, namespace, "dead")
    await dead.ensure_groups()  # BUSYGROUP is fine
    ids = await _add(redis_client, keys.bars, 4)
    assert [e.id for e in await dead.read()] == ids
    await redis_client.xdel(keys.bars, ids[0])  # deleted while pending
    alive = await _consumer(redis_client, keys, namespace, "alive")
    claimed = await alive.claim(min_idle_ms=0)
    assert [(e.id, e.deliveries) for e in claimed] == [(i, 2) for i in ids[1:]]
    assert claimed[0].fields == {b"n": b"1"}
    # The deleted id left the PEL (Redis >= 7); the rest now belongs to "alive".
    rows = await redis_client.xpending_range(keys.bars, "g", "-", "+", 10)
    assert {r["consumer"] for r in rows} == {b"alive"} and len(rows) == 3
    assert await alive.ack_entries(claimed) == 3
    assert await alive.delete_idle_consumers(idle_ms=0) == ["dead"]


async def test_trim_keeps_every_entry_a_group_has_not_acked(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    settings = _settings(namespace)
    stream = keys.bars
    ids = await _add(redis_client, stream, 10)

    fast = StreamConsumer.from_settings(redis_client, settings, group="fast", streams=[stream])
    slow = StreamConsumer.from_settings(redis_client, settings, group="slow", streams=[stream])
    late = StreamConsumer.from_settings(redis_client, settings, group="late", streams=[stream])
    for c in (fast, slow, late):
        await c.ensure_groups("0")

    # "late" has read nothing: nothing may go.
    result = await fast.trim(stream)
    assert result.trimmed == 0 and await redis_client.xlen(stream) == 10
    await redis_client.xgroup_destroy(stream, "late")

    await fast.ack_entries(await fast.read(count=10))  # fast: all 10 acked
    got = await slow.read(count=6)  # slow: 6 delivered, acks ids[0], ids[1], ids[3]
    await slow.ack(stream, [ids[0], ids[1], ids[3]])
    result = await fast.trim(stream)
    assert result.minid == ids[2] and result.trimmed == 2
    remaining = [i.decode() for i, _ in await redis_client.xrange(stream)]
    assert remaining == ids[2:]  # ids[2] is still pending in "slow": kept

    await slow.ack(stream, [e.id for e in got])  # slow: nothing pending, read up to ids[5]
    result = await slow.trim(stream)
    assert result.trimmed == 4  # ids[2..5]: acked by both; ids[6..] never read by slow
    remaining = [i.decode() for i, _ in await redis_client.xrange(stream)]
    assert remaining == ids[6:]
    assert result.hard_capped == 0


async def test_hard_cap_bites_only_when_configured_and_is_counted(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    settings = _settings(namespace, hard_maxlen=3)
    ids = await _add(redis_client, keys.bars, 8)
    c = StreamConsumer.from_settings(redis_client, settings, group="g", streams=[keys.bars])
    await c.ensure_groups("0")
    before = c.metrics.hard_cap_trims.labels(keys.bars)._value.get()
    result = await c.trim(keys.bars)
    assert result.trimmed == 0 and result.hard_capped == 5
    assert [i.decode() for i, _ in await redis_client.xrange(keys.bars)] == ids[5:]
    assert c.metrics.hard_cap_trims.labels(keys.bars)._value.get() - before == 5


async def test_worker_reads_several_streams_and_trims_them(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    settings = _settings(namespace, trim_interval_s=0.001, delete_idle_consumers_ms=1)
    streams = keys.all_ticks()
    for s in streams:
        await _add(redis_client, s, 3)
        await redis_client.xgroup_create(s, "g", id="0")
        await redis_client.xgroup_createconsumer(s, "g", "ghost-of-a-restart")
    await asyncio.sleep(0.01)
    seen: list[Entry] = []

    async def handler(batch: list[Entry]) -> None:
        seen.extend(batch)

    async with StreamWorker(
        settings, group="g", streams=streams, handler=handler, redis=redis_client, burst=True
    ) as worker:
        await worker.run()
        await worker.trim()
    assert sorted({e.stream for e in seen}) == sorted(streams) and len(seen) == 12
    for s in streams:
        assert await redis_client.xlen(s) == 0
        consumers = await redis_client.xinfo_consumers(s, "g")
        assert [c["name"] for c in consumers] == [worker.consumer_name.encode()]


async def test_a_worker_that_merely_reads_the_public_stream_never_trims_it(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    """The sink reads ``signals`` like any other stream, acks it, and trims what it acked of
    its internal inputs; the public stream keeps its history for readers outside any group."""
    settings = _settings(namespace, trim_interval_s=0.001)
    await _add(redis_client, keys.bars, 10)
    await _add(redis_client, keys.signals, 10)

    async def handler(batch: list[Entry]) -> None:
        return None

    async with StreamWorker(
        settings,
        group="sink",
        streams=[keys.bars, keys.signals],
        handler=handler,
        redis=redis_client,
        burst=True,
    ) as worker:
        await worker.run()  # reads and acks all 20 entries; trims every step on the way
        await _add(redis_client, keys.signals, 5)  # not read yet: the group's lag
        await worker.trim()
    assert (await redis_client.xinfo_groups(keys.signals))[0]["pending"] == 0
    assert await redis_client.xlen(keys.bars) == 0  # internal: trimmed below what was acked
    assert await redis_client.xlen(keys.signals) == 15  # public: not this worker's to trim
    # Not trimming it, the worker still reports where its group stands on it.
    assert worker.metrics.lag.labels(keys.signals, "sink")._value.get() == 5


async def test_batch_error_with_bad_input_isolates_the_culprit(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    ids = await _add(redis_client, keys.bars, 3)
    handled: list[str] = []

    async def handler(batch: list[Entry]) -> None:
        for e in batch:
            if e.id == ids[1]:
                raise BadInput("test_reason", "raised for the whole batch")
        handled.extend(e.id for e in batch)

    async with StreamWorker(
        _settings(namespace), group="g", streams=[keys.bars], handler=handler,
        redis=redis_client, burst=True,
    ) as worker:  # fmt: skip
        await worker.run()
    assert handled == [ids[0], ids[2]]
    (dead,) = await redis_client.xrange(keys.dlq(keys.bars))
    assert dead[1][b"id"] == ids[1].encode() and dead[1][b"reason"] == b"test_reason"


async def test_touch_keeps_deferred_entries_from_being_claimed(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    holder = await _consumer(redis_client, keys, namespace, "holder")
    await _add(redis_client, keys.bars, 2)
    held = await holder.read()
    await asyncio.sleep(0.3)
    before = await redis_client.xpending_range(keys.bars, "g", "-", "+", 10)
    await holder.touch(held)
    after = await redis_client.xpending_range(keys.bars, "g", "-", "+", 10)
    assert [r["times_delivered"] for r in after] == [1, 1]  # not counted as a redelivery
    assert all(a["consumer"] == b"holder" for a in after)
    assert all(
        a["time_since_delivered"] < b["time_since_delivered"]
        for a, b in zip(after, before, strict=True)
    )


async def test_a_consumer_name_held_in_turn_reads_its_pending_entries_in_id_order(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    """The detectors' partition consumer: a new owner under the same name reads back what a
    previous (or stale) owner took and never acked, in id order with the new entries."""
    first = await _consumer(redis_client, keys, namespace, "p0")
    ids = await _add(redis_client, keys.bars, 6)
    assert [e.id for e in await first.read(count=4)] == ids[:4]  # taken, never acked
    await redis_client.xdel(keys.bars, ids[1])  # deleted while pending
    second = await _consumer(redis_client, keys, namespace, "p0")
    pending = await second.read_pending(ids[0], count=10)
    assert [(e.id, e.fields) for e in pending] == [
        (ids[1], {}),  # deleted: empty fields, for the caller to dead-letter
        (ids[2], {b"n": b"2"}),
        (ids[3], {b"n": b"3"}),
    ]
    assert await second.read_pending(ids[3]) == []
    # New entries are taken into the same pending list and come back above the given id.
    in_order = await second.read_in_order(ids[2], count=10, block_ms=10)
    assert [e.id for e in in_order] == ids[3:]
    # Dead letters without ack: the entry stays pending until the caller acks it.
    assert await second.add_dead_letters([(pending[0], "gone", "missing_entry")]) == 1
    (dead,) = await redis_client.xrange(keys.dlq(keys.bars))
    assert dead[1][b"reason"] == b"missing_entry" and dead[1][b"consumer"] == b"p0"
    assert (await redis_client.xpending(keys.bars, "g"))["pending"] == 6  # all, the deleted too


async def test_a_lingering_worker_handles_a_burst_as_one_batch(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    """With ``linger_ms``, the read that the burst's first entry wakes waits, then tops the
    page up: the handler sees the whole burst at once (the sink keeps its work off a bar
    boundary this way); asked to stop while lingering, it handles what it holds and ends."""
    batches: list[list[str]] = []
    handled = asyncio.Event()

    async def handler(batch: list[Entry]) -> None:
        batches.append([e.id for e in batch])
        handled.set()

    worker = StreamWorker(
        _settings(namespace, block_ms=200), group="g", streams=[keys.bars], handler=handler,
        redis=redis_client, linger_ms=1000,
    )  # fmt: skip
    async with worker:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.3)  # the worker is blocked in its read
        first = await _add(redis_client, keys.bars, 1)
        rest = await _add(redis_client, keys.bars, 4)
        await asyncio.wait_for(handled.wait(), 10)
        assert batches == [first + rest]
        worker.linger_ms = 60_000
        late = await _add(redis_client, keys.bars, 1)
        await asyncio.sleep(0.3)  # read, now lingering
        worker.request_stop()
        async with asyncio.timeout(30):  # long before the linger would have ended
            await task
        assert batches == [first + rest, late]
        assert (await redis_client.xpending(keys.bars, "g"))["pending"] == 0
