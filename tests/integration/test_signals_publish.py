"""Publishing a batch in one ``publish.lua`` call: every signal on its symbol's channel, in
order, byte for byte its stream document (issue 17)."""

from __future__ import annotations

import redis.asyncio as aioredis

from common.names import Keys
from signals.append import SignalAppender
from signals.contract import signal_to_json
from signals.model import Model
from signals.offline import score_events
from tests.signals_factory import T0, strong_event


async def test_a_batch_is_published_in_order_as_its_stream_documents(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    pubsub = redis_client.pubsub()
    await pubsub.psubscribe(keys.signal_channel("binance", "*"))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    events = [strong_event(sym, T0, d) for sym in ("AAA", "BBB", "CCC") for d in (1, -1)]
    signals = [s.stamped("2024-08-08T23:55:00.012Z") for s in score_events(events, Model())]
    appender = SignalAppender(redis_client, keys)
    stream_ids = await appender.append(signals)
    assert stream_ids is not None and len(stream_ids) == 6 and all(stream_ids)
    # Without their documents given, publish encodes them (a copy not appended too).
    copy = signals[0].stamped(signals[0].emitted_at)
    await appender.publish([*signals, copy])
    got = []
    for _ in range(len(signals) + 1):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None
        got.append((message["channel"].decode(), message["data"]))
    assert got == [
        (keys.signal_channel(s.exchange, s.symbol), signal_to_json(s)) for s in [*signals, copy]
    ]
    on_stream = [fields[b"d"] for _, fields in await redis_client.xrange(keys.signals)]
    assert on_stream == [data for _, data in got[:-1]]
    await appender.publish([])  # nothing to do: no call
    await pubsub.aclose()
