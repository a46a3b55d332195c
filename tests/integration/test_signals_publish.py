"""Publishing in the append's script call: each newly appended signal on its symbol's
channel, in order, byte for byte its stream document; a duplicate is not published again,
and nothing is published without ``publish`` (issue 17: one call and one copy of each
document per slice)."""

from __future__ import annotations

import redis.asyncio as aioredis

from common.names import Keys
from signals.append import SignalAppender
from signals.contract import signal_to_json
from signals.model import Model
from signals.offline import score_events
from tests.signals_factory import T0, strong_event


async def test_appended_signals_are_published_in_order_as_their_stream_documents(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    pubsub = redis_client.pubsub()
    await pubsub.psubscribe(keys.signal_channel("binance", "*"))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    events = [strong_event(sym, T0, d) for sym in ("AAA", "BBB", "CCC", "DDD") for d in (1, -1)]
    signals = [s.stamped("2024-08-08T23:55:00.012Z") for s in score_events(events, Model())]
    first, second, quiet = signals[:4], signals[4:6], signals[6:]
    appender = SignalAppender(redis_client, keys)
    ids = await appender.append(first, publish=True)
    assert ids is not None and all(ids)
    # Two already on the stream (not appended, not published again) between two new ones.
    ids = await appender.append([second[0], *first[:2], second[1]], publish=True)
    assert ids is not None and [bool(i) for i in ids] == [True, False, False, True]
    ids = await appender.append(quiet)  # appended, not published
    assert ids is not None and all(ids)
    got = []
    for _ in range(len(first) + len(second)):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None
        got.append((message["channel"].decode(), message["data"]))
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
    assert got == [
        (keys.signal_channel(s.exchange, s.symbol), signal_to_json(s)) for s in first + second
    ]
    on_stream = [fields[b"d"] for _, fields in await redis_client.xrange(keys.signals)]
    assert on_stream == [data for _, data in got] + [signal_to_json(s) for s in quiet]
    await pubsub.aclose()
