"""The WebSocket protocol's pure parts and the hub's dispatch rules (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest
import redis.asyncio as aioredis

from common.metrics import Readiness
from common.trimming import parse_id
from signals.ws import Client, SignalsHub
from signals.ws_protocol import (
    Filters,
    ProtocolError,
    parse_subscribe,
    signal_message,
    token_from_request,
    token_ok,
)

SIGNAL = {"exchange": "binance", "symbol": "BTCUSDT", "timeframe": "1m", "score": 0.72}


def test_subscribe_with_filters_and_resume() -> None:
    sub = parse_subscribe(
        '{"type":"subscribe","symbols":["BTCUSDT"],"timeframes":["1m"],'
        '"min_score":0.7,"resume_from":"17-3"}'
    )
    assert sub.filters == Filters(frozenset(), frozenset({"BTCUSDT"}), frozenset({"1m"}), 0.7)
    assert sub.resume_from == "17-3"
    assert parse_subscribe('{"type":"subscribe"}').filters == Filters()


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        '{"type":"hello"}',
        '{"type":"subscribe","symbols":"BTCUSDT"}',
        '{"type":"subscribe","symbols":[1]}',
        '{"type":"subscribe","min_score":"high"}',
        '{"type":"subscribe","resume_from":"yesterday"}',
    ],
)
def test_bad_subscribe_messages(raw: str) -> None:
    with pytest.raises(ProtocolError):
        parse_subscribe(raw)


def test_filters_match() -> None:
    assert Filters().matches(SIGNAL)
    assert Filters(exchanges=frozenset({"binance"}), min_score=0.7).matches(SIGNAL)
    assert not Filters(symbols=frozenset({"ETHUSDT"})).matches(SIGNAL)
    assert not Filters(timeframes=frozenset({"5m"})).matches(SIGNAL)
    assert not Filters(min_score=0.8).matches(SIGNAL)


def test_token_from_header_or_query_and_constant_time_check() -> None:
    assert token_from_request("/", {"Authorization": "Bearer abc"}) == "abc"
    assert token_from_request("/?token=xyz", {}) == "xyz"
    assert token_from_request("/", {"Authorization": "Basic abc"}) is None
    assert token_from_request("/", {}) is None
    assert token_ok("abc", {"abc", "def"})
    assert not token_ok("abd", {"abc"})
    assert not token_ok(None, {"abc"})


def test_signal_frame_is_json_with_cursor() -> None:
    frame = orjson.loads(signal_message("5-0", orjson.dumps(SIGNAL)))
    assert frame == {"type": "signal", "cursor": "5-0", "signal": SIGNAL}
    assert parse_id("1723161300123-4") == (1723161300123, 4)
    assert parse_id("10-0") > parse_id("9-99")


class FakeWs:
    """Enough of a connection for the hub: it only ever closes one."""

    def __init__(self) -> None:
        self.closed: list[tuple[int, str]] = []

    async def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


def client(queue: int = 10, **filters: Any) -> Client:
    c = Client(cast(Any, FakeWs()), Filters(**filters), queue)
    c.live = True
    return c


def entry(score: float = 0.72) -> dict[bytes, bytes]:
    return {b"d": orjson.dumps(SIGNAL | {"score": score})}


async def test_hub_offers_by_filter_skips_resumed_entries_and_cuts_slow_clients() -> None:
    hub = SignalsHub(cast(Any, None), "signals")
    everyone, picky, resumed, slow = client(), client(min_score=0.9), client(), client(queue=1)
    resumed.after = (2, 0)  # its backfill already sent entries up to 2-0
    hub.clients |= {everyone, picky, resumed, slow}
    for i in (1, 2, 3):
        hub.dispatch(f"{i}-0", entry())
    assert everyone.queue.qsize() == 3
    assert picky.queue.qsize() == 0
    assert resumed.queue.qsize() == 1  # only 3-0
    assert slow.kicked and slow not in hub.clients
    await hub.close_all(1001, "bye")
    assert cast(FakeWs, slow.ws).closed == [(4408, "slow client: send queue full")]
    assert cast(FakeWs, everyone.ws).closed == [(1001, "bye")]
    assert hub.last_id == "3-0"


async def test_hub_rides_out_a_redis_outage_and_reports_not_ready() -> None:
    down = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=None)
    readiness = Readiness("connected")
    readiness.set("connected")
    hub = SignalsHub(down, "signals", block_ms=10, readiness=readiness)
    stopping = asyncio.Event()
    task = asyncio.create_task(hub.run(stopping))
    for _ in range(1000):  # up to 10 s
        if not readiness.ready:
            break
        await asyncio.sleep(0.01)
    assert not task.done()  # still retrying, not crashed
    stopping.set()
    await asyncio.wait_for(task, 10)
    await down.aclose()
