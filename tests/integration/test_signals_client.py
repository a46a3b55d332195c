"""``signals.client.SignalSubscription`` on real Redis: every signal, in order, at least once."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from common.names import Keys
from signals.append import SignalAppender
from signals.client import SignalSubscription
from signals.contract import Signal, decode_entry
from signals.model import Model
from signals.scoring import score_event
from tests.conftest import REDIS_URL
from tests.signals_factory import event_mix

pytestmark = pytest.mark.redis


async def append_mix(r: aioredis.Redis, keys: Keys, n: int, symbols: int = 50) -> list[Signal]:
    model = Model()
    signals = [s.stamped() for e in event_mix(n, symbols) for s in score_event(e, model)]
    await SignalAppender(r, keys).append(signals)
    return signals


async def stream_signals(r: aioredis.Redis, keys: Keys) -> list[Signal]:
    return [decode_entry(f) for _, f in await r.xrange(keys.signals)]


async def take(sub: SignalSubscription, n: int) -> list[Signal]:
    out: list[Signal] = []
    async with asyncio.timeout(20):
        async for s in sub:
            out.append(s)
            if len(out) == n:
                break
    return out


def subscription(namespace: str, **kw: object) -> SignalSubscription:
    return SignalSubscription(
        REDIS_URL,
        namespace=namespace,
        block_ms=100,
        claim_idle_ms=100,
        **kw,  # type: ignore[arg-type]
    )


async def test_every_signal_exactly_as_in_the_stream(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    await append_mix(redis_client, keys, 300)
    stream = await stream_signals(redis_client, keys)
    async with subscription(namespace, group="risk", start="beginning") as sub:
        got = await take(sub, len(stream))
    assert got == stream
    summary = await redis_client.xpending(keys.signals, "risk")
    assert summary["pending"] == 0  # auto mode acked everything, the last one on close


async def test_manual_ack_and_pending_recovery_after_a_restart(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    await append_mix(redis_client, keys, 300)
    stream = await stream_signals(redis_client, keys)
    async with subscription(namespace, group="g", start="beginning", ack="manual") as sub:
        first = await take(sub, 30)
        await sub.ack(*first[:10])
        assert sub.pending == 20
    # The process "restarts": the 20 unacked come back first, then the rest, nothing lost.
    async with subscription(namespace, group="g", start="beginning", ack="manual") as sub:
        again = await take(sub, len(stream) - 10)
        await sub.ack(*again)
    assert again == stream[10:]
    assert (await redis_client.xpending(keys.signals, "g"))["pending"] == 0


async def test_dead_consumer_pending_is_claimed_by_another(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    await append_mix(redis_client, keys, 100)
    stream = await stream_signals(redis_client, keys)
    async with subscription(
        namespace, group="g", start="beginning", ack="manual", consumer="a"
    ) as a:
        held = await take(a, 5)
    async with subscription(namespace, group="g", ack="manual", consumer="b") as b:
        got = await take(b, len(stream))
    assert sorted(s.id for s in got) == sorted(s.id for s in stream)
    assert {s.id for s in held} <= {s.id for s in got}


async def test_start_now_and_start_from_an_id(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    await append_mix(redis_client, keys, 100, symbols=10)
    old = await redis_client.xrange(keys.signals)
    mid_id = old[len(old) // 2][0].decode()
    now_sub = subscription(namespace, group="live", start="now")
    from_id = subscription(namespace, group="from", start=mid_id)
    await now_sub.start()
    await from_id.start()
    later = await append_mix(redis_client, keys, 200, symbols=20)
    stream = await stream_signals(redis_client, keys)
    new = stream[len(old) :]
    assert new and len(new) < len(later)  # some of the later ones were already there
    async with now_sub:
        assert await take(now_sub, len(new)) == new
    async with from_id:
        assert await take(from_id, len(stream) - len(old) // 2 - 1) == stream[len(old) // 2 + 1 :]


async def test_auto_ack_leaves_the_signal_the_body_failed_on_pending(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    await append_mix(redis_client, keys, 100)
    stream = await stream_signals(redis_client, keys)
    with pytest.raises(RuntimeError):
        async with subscription(namespace, group="g", start="beginning", consumer="c") as sub:
            async for s in sub:
                if s.id == stream[3].id:
                    raise RuntimeError("handler failed")
    # 0-2 were handled and acked; 3 failed; the rest were read ahead and never handed out.
    pending = await redis_client.xpending_range(keys.signals, "g", "-", "+", 1000)
    ids = [i for i, _ in await redis_client.xrange(keys.signals)]
    assert [p["message_id"] for p in pending] == ids[3:]
    async with subscription(namespace, group="g", consumer="c") as sub:
        assert (await take(sub, 1))[0] == stream[3]  # redelivered first after the restart


async def test_a_pending_signal_trimmed_meanwhile_is_acked_not_dead_lettered(
    redis_client: aioredis.Redis, keys: Keys, namespace: str
) -> None:
    await append_mix(redis_client, keys, 100, symbols=10)
    stream = await stream_signals(redis_client, keys)
    async with subscription(namespace, group="g", start="beginning", ack="manual") as sub:
        held = await take(sub, 6)
    ids = [i for i, _ in await redis_client.xrange(keys.signals, count=3)]
    await redis_client.xdel(keys.signals, *ids)  # trimmed by retention while still pending
    async with subscription(namespace, group="g", start="beginning", ack="manual") as sub:
        got = await take(sub, len(stream) - 3)
        await sub.ack(*got)
    assert got == stream[3:]  # the three still on the stream come back first, then the rest
    assert {s.id for s in held[3:]} <= {s.id for s in got}
    assert (await redis_client.xpending(keys.signals, "g"))["pending"] == 0
    assert await redis_client.xlen(keys.dlq(keys.signals)) == 0
