"""The WebSocket protocol's pure parts and the hub's dispatch rules (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest
import redis.asyncio as aioredis

from common.metrics import Readiness
from common.trimming import parse_id
from signals.ws_hub import Client, SignalsHub
from signals.ws_log import ConnectionLog, EventBudget
from signals.ws_protocol import (
    MAX_ID_PART,
    Filters,
    ProtocolError,
    parse_cursor,
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


MAX_ID = f"{MAX_ID_PART}-{MAX_ID_PART}"


@pytest.mark.parametrize(
    ("raw", "canonical"), [("0-0", "0-0"), ("007-00", "7-0"), ("17-3", "17-3"), (MAX_ID, MAX_ID)]
)
def test_cursors_redis_takes_are_accepted_in_canonical_form(raw: str, canonical: str) -> None:
    assert parse_cursor(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "1-0\n",  # passed ^\d+-\d+$ ($ matches before a final newline)
        "\u0661-\u0660",  # Arabic-Indic digits: \d matched them
        "10000000000000000000000000-0",  # beyond 64 bits
        f"1-{MAX_ID_PART + 1}",
        "0" * 200 + "1-0",
        " 1-0",
        "+1-0",
        "1",
        "1-",
        "-1-0",
        17,
        [],
    ],
)
def test_cursors_redis_would_reject_are_protocol_errors(raw: object) -> None:
    with pytest.raises(ProtocolError):
        parse_cursor(raw)
    with pytest.raises(ProtocolError):
        parse_subscribe(orjson.dumps({"type": "subscribe", "resume_from": raw}))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A logger that keeps what it was asked to log."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))


def test_a_flood_of_events_logs_a_few_lines_per_kind_then_one_summary() -> None:
    clock, out = Clock(), Recorder()
    log = ConnectionLog(cast(Any, out), lines=3, interval_s=10, clock=clock)
    for i in range(1000):
        log.event("ws_refused", "auth", peer=f"10.0.0.1:{i}", code=4401)
    log.event("ws_cut", "slow", peer="10.0.0.2:1")  # another kind keeps its own lines
    assert [(e, kw["reason"]) for _, e, kw in out.lines] == [("ws_refused", "auth")] * 3 + [
        ("ws_cut", "slow")
    ]
    clock.now += 9.9
    log.flush()
    assert len(out.lines) == 4  # the interval is not over yet
    clock.now += 0.1
    log.flush()
    level, event, summary = out.lines[-1]
    assert (level, event) == ("warning", "ws_events_summary")
    assert summary["events"] == {"ws_cut:slow": 1, "ws_refused:auth": 1000}
    assert summary["suppressed"] == 997
    log.event("ws_refused", "auth", peer="10.0.0.1:1", code=4401)  # a new interval: lines again
    assert out.lines[-1][1] == "ws_refused"


def test_no_summary_when_nothing_was_left_out() -> None:
    budget = EventBudget(lines=2, interval_s=1, now=0)
    assert budget.admit("ws_connected") and budget.admit("ws_connected")
    assert budget.roll(5) is None
    assert budget.admit("ws_connected") and budget.admit("ws_connected")
    assert not budget.admit("ws_connected")
    assert budget.roll(5.5) is None  # interval not over
    assert budget.roll(5.5, force=True) == {
        "interval_s": 0.5,
        "events": {"ws_connected": 3},
        "suppressed": 1,
    }


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

    remote_address = ("127.0.0.1", 50000)

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
