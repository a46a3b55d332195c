"""The WebSocket server on real Redis: token, filters, resume, slow client, limits."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from common.logging import configure_logging
from common.names import Keys
from common.settings import CommonSettings
from signals.append import SignalAppender
from signals.contract import Signal
from signals.model import Model
from signals.scoring import score_event
from signals.settings import WsSettings
from signals.ws import WsServer
from signals.ws_protocol import MAX_ID_PART
from tests.conftest import REDIS_URL
from tests.integration.e2e_support import RedisNode
from tests.signals_factory import event_mix

pytestmark = pytest.mark.redis
TOKEN = "s3cret-token"
Frame = dict[str, Any]


def event_signals() -> list[Signal]:
    model = Model()
    return [s for e in event_mix(3000, symbols=100) for s in score_event(e, model)]


@pytest.fixture
def all_signals() -> list[Signal]:
    return [s.stamped() for s in event_signals()]


async def start_server(redis_client: aioredis.Redis, namespace: str, **kw: Any) -> WsServer:
    common = CommonSettings(redis_url=REDIS_URL, namespace=namespace, metrics_port=0, block_ms=100)
    settings = WsSettings(common=common, tokens=frozenset({TOKEN}), host="127.0.0.1", port=0, **kw)
    server = WsServer(settings, redis=redis_client)
    await server.start()
    server.run_task = asyncio.create_task(server.run())  # type: ignore[attr-defined]
    return server


@pytest.fixture
def logs() -> Any:
    """The JSON log lines the code under test writes (structlog, as in production)."""
    out = io.BytesIO()
    configure_logging(level="INFO", fmt="json", stream=out)
    yield out
    structlog.reset_defaults()


def log_lines(out: io.BytesIO) -> list[Frame]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture
async def server(redis_client: aioredis.Redis, namespace: str) -> AsyncIterator[WsServer]:
    async with running_server(redis_client, namespace) as srv:
        yield srv


@contextlib.asynccontextmanager
async def running_server(
    redis_client: aioredis.Redis, namespace: str, **kw: Any
) -> AsyncIterator[WsServer]:
    """A started server (``start_server``), stopped on leaving."""
    srv = await start_server(redis_client, namespace, **kw)
    try:
        yield srv
    finally:
        await stop(srv)


async def stop(srv: WsServer) -> None:
    srv.request_stop()
    await srv.run_task  # type: ignore[attr-defined]
    await srv.stop()


def url(srv: WsServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{srv.port}/{query}"


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def subscribe(ws: ClientConnection, **fields: Any) -> Frame:
    await ws.send(orjson.dumps({"type": "subscribe", **fields}).decode())
    frame: Frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    assert frame["type"] == "subscribed"
    return frame


async def receive(ws: ClientConnection, n: int) -> list[Frame]:
    out: list[Frame] = []
    async with asyncio.timeout(30):
        while len(out) < n:
            out.append(orjson.loads(await ws.recv()))
    return out


async def stream_frames(r: aioredis.Redis, keys: Keys) -> list[Frame]:
    return [
        {"type": "signal", "cursor": i.decode(), "signal": orjson.loads(f[b"d"])}
        for i, f in await r.xrange(keys.signals)
    ]


async def append(r: aioredis.Redis, keys: Keys, signals: Sequence[Signal]) -> None:
    await SignalAppender(r, keys).append(signals)


async def close_code(ws: ClientConnection) -> int | None:
    try:
        async with asyncio.timeout(20):
            while True:
                await ws.recv()
    except ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


async def test_no_token_or_a_bad_token_is_refused_with_4401(server: WsServer) -> None:
    async with connect(url(server)) as ws:
        assert await close_code(ws) == 4401
    async with connect(url(server, "?token=wrong")) as ws:
        assert await close_code(ws) == 4401
    async with connect(url(server), additional_headers={"Authorization": "Bearer nope"}) as ws:
        assert await close_code(ws) == 4401


async def test_bad_subscribe_is_closed_with_4400(server: WsServer) -> None:
    async with connect(url(server), additional_headers=auth()) as ws:
        await ws.send('{"type": "subscribe", "symbols": "BTCUSDT"}')
        assert await close_code(ws) == 4400


async def test_filtered_and_unfiltered_clients_get_exactly_the_stream(
    server: WsServer, redis_client: aioredis.Redis, keys: Keys, all_signals: list[Signal]
) -> None:
    wanted = {"S0001", "S0002", "S0003"}
    async with (
        connect(url(server), additional_headers=auth()) as everything,
        connect(url(server, f"?token={TOKEN}")) as filtered,
    ):
        await subscribe(everything)
        await subscribe(filtered, symbols=sorted(wanted), timeframes=["1m"], min_score=0.7)
        n_subset = sum(1 for s in all_signals if s.symbol in wanted and s.score >= 0.7)
        assert 0 < n_subset < len(all_signals)
        readers = asyncio.gather(receive(everything, len(all_signals)), receive(filtered, n_subset))
        for i in range(0, len(all_signals), 100):
            await append(redis_client, keys, all_signals[i : i + 100])
        got_all, got_subset = await readers
    stream = await stream_frames(redis_client, keys)
    assert got_all == stream
    assert got_subset == [
        f for f in stream if f["signal"]["symbol"] in wanted and f["signal"]["score"] >= 0.7
    ]


async def test_reconnect_with_resume_misses_nothing_and_repeats_nothing(
    server: WsServer, redis_client: aioredis.Redis, keys: Keys, all_signals: list[Signal]
) -> None:
    first, second, third = all_signals[:300], all_signals[300:700], all_signals[700:]
    async with connect(url(server), additional_headers=auth()) as ws:
        await subscribe(ws)
        await append(redis_client, keys, first)
        got = await receive(ws, 200)  # disconnect mid-way, 100 unread
    await append(redis_client, keys, second)  # published while the client is away
    async with connect(url(server), additional_headers=auth()) as ws:
        await ws.send(
            orjson.dumps({"type": "subscribe", "resume_from": got[-1]["cursor"]}).decode()
        )
        writer = asyncio.create_task(
            append_in_chunks(redis_client, keys, third)  # and more while it catches up
        )
        frames = [orjson.loads(await asyncio.wait_for(ws.recv(), 10))]
        await writer
        stream = await stream_frames(redis_client, keys)
        frames += await receive(ws, len(stream) - 200 + 1 - len(frames))
    assert frames[0]["type"] == "subscribed"
    assert got + frames[1:] == stream


async def append_in_chunks(r: aioredis.Redis, keys: Keys, signals: Sequence[Signal]) -> None:
    for i in range(0, len(signals), 25):
        await append(r, keys, signals[i : i + 25])
        await asyncio.sleep(0)


async def slow_connection(srv: WsServer) -> ClientConnection:
    """A client whose socket receive buffer is tiny and that never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", srv.port))
    return await connect(url(srv), sock=sock, additional_headers=auth(), max_queue=1)


async def test_a_slow_client_is_cut_off_while_a_fast_one_keeps_up(
    redis_client: aioredis.Redis,
    keys: Keys,
    namespace: str,
    all_signals: list[Signal],
    logs: io.BytesIO,
) -> None:
    async with running_server(redis_client, namespace, queue_size=200) as srv:
        slow = await slow_connection(srv)
        async with connect(url(srv), additional_headers=auth()) as fast:
            await subscribe(fast)
            await subscribe(slow)  # the last thing it ever reads until it is cut off
            assert len(srv.hub.clients) == 2
            received: list[Frame] = []
            sent = 0
            rounds = 0
            while len(srv.hub.clients) == 2 and rounds < 200:
                rounds += 1
                # Make the signals unique per round: the same model output on a new exchange.
                ex = f"x{rounds}"
                batch = [
                    replace(s, exchange=ex, id=f"{ex}:{s.id.split(':', 1)[1]}")
                    for s in all_signals[:100]
                ]
                await append(redis_client, keys, batch)
                sent += len(batch)
                received += await receive(fast, len(batch))
            assert len(srv.hub.clients) == 1, "the slow client was never cut off"
            assert received == (await stream_frames(redis_client, keys))[:sent]
        assert await close_code(slow) == 4408
    (cut,) = [e for e in log_lines(logs) if e["event"] == "ws_cut"]
    assert (cut["reason"], cut["code"], cut["queue"]) == ("slow", 4408, 200)


async def test_connections_beyond_the_limit_get_1013(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    async with (
        running_server(redis_client, namespace, max_connections=1) as srv,
        connect(url(srv), additional_headers=auth()) as first,
    ):
        await subscribe(first)
        async with connect(url(srv), additional_headers=auth()) as second:
            assert await close_code(second) == 1013


async def test_oversized_client_message_is_refused(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    async with (
        running_server(redis_client, namespace, max_message=1024) as srv,
        connect(url(srv), additional_headers=auth()) as ws,
    ):
        await ws.send('{"type": "subscribe", "symbols": ["' + "A" * 4000 + '"]}')
        assert await close_code(ws) == 1009


async def test_resume_from_a_trimmed_cursor_reports_the_gap(
    server: WsServer, redis_client: aioredis.Redis, keys: Keys, all_signals: list[Signal]
) -> None:
    await append(redis_client, keys, all_signals[:50])
    ids = [i.decode() for i, _ in await redis_client.xrange(keys.signals)]
    await redis_client.xtrim(keys.signals, minid=ids[20], approximate=False)
    async with connect(url(server), additional_headers=auth()) as ws:
        await subscribe(ws, resume_from=ids[5])
        frames = await receive(ws, 1 + 30)
    assert frames[0] == {"type": "gap", "after": ids[5], "first_available": ids[20]}
    assert [f["cursor"] for f in frames[1:]] == ids[20:]


MAX_ID = f"{MAX_ID_PART}-{MAX_ID_PART}"


@pytest.mark.parametrize(
    "cursor",
    ["1-0\n", "\u0661-\u0660", "10000000000000000000000000-0", f"1-{MAX_ID_PART + 1}"],
    ids=["newline", "arabic-digits", "overflow-ms", "overflow-seq"],
)
async def test_resume_cursors_redis_would_reject_are_refused_with_4400(
    server: WsServer,
    redis_client: aioredis.Redis,
    keys: Keys,
    cursor: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await append(redis_client, keys, [s.stamped() for s in event_signals()[:5]])
    with caplog.at_level(logging.INFO, logger="websockets"):
        async with connect(url(server), additional_headers=auth()) as ws:
            await ws.send(orjson.dumps({"type": "subscribe", "resume_from": cursor}).decode())
            assert await close_code(ws) == 4400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback
    async with connect(url(server), additional_headers=auth()) as ws:  # the server goes on
        await subscribe(ws, resume_from="0-0")
        assert len(await receive(ws, 5)) == 5


@pytest.mark.parametrize("cursor", ["99999999999999-0", MAX_ID], ids=["future", "max-id"])
async def test_resume_from_beyond_the_stream_says_so_and_goes_live(
    server: WsServer,
    redis_client: aioredis.Redis,
    keys: Keys,
    all_signals: list[Signal],
    cursor: str,
) -> None:
    await append(redis_client, keys, all_signals[:10])
    newest = (await redis_client.xrevrange(keys.signals, count=1))[0][0].decode()
    async with connect(url(server), additional_headers=auth()) as ws:
        await subscribe(ws, resume_from=cursor)
        async with asyncio.timeout(10):  # the old server stayed silent here forever
            ahead = orjson.loads(await ws.recv())
        assert ahead == {"type": "cursor_ahead", "after": cursor, "newest": newest}
        await append(redis_client, keys, all_signals[10:15])
        async with asyncio.timeout(10):
            frames = await receive(ws, 5)
    stream = await stream_frames(redis_client, keys)
    assert frames == stream[10:15]


async def test_connections_refusals_and_cuts_are_logged_rate_limited_without_tokens(
    redis_client: aioredis.Redis, namespace: str, logs: io.BytesIO
) -> None:
    wrong = [f"wrong-token-{i:03d}" for i in range(60)]
    async with running_server(
        redis_client, namespace, max_connections=1, log_lines=3, log_interval_s=3600
    ) as srv:
        async with connect(url(srv), additional_headers=auth()) as first:
            await subscribe(first)
            for i, token in enumerate(wrong):  # a flood of bad tokens, header and URL alike
                if i % 2:
                    bad = connect(url(srv), additional_headers={"Authorization": f"Bearer {token}"})
                else:
                    bad = connect(url(srv, f"?token={token}"))
                async with bad as ws:
                    assert await close_code(ws) == 4401
            async with connect(url(srv, f"?token={TOKEN}")) as second:
                assert await close_code(second) == 1013
        async with connect(url(srv), additional_headers=auth()) as ws:
            await ws.send('{"type": "subscribe", "resume_from": "1-0\\n"}')
            assert await close_code(ws) == 4400
    events = log_lines(logs)
    text = logs.getvalue().decode()
    assert TOKEN not in text and not [t for t in wrong if t in text]
    kinds = [(e["event"], e.get("reason")) for e in events if e["event"].startswith("ws_")]
    assert kinds.count(("ws_refused", "auth")) == 3  # 60 refusals, 3 lines
    assert ("ws_refused", "limit") in kinds and ("ws_refused", "bad_request") in kinds
    assert kinds.count(("ws_connected", None)) == 1
    assert kinds.count(("ws_disconnected", None)) == 1
    (summary,) = [e for e in events if e["event"] == "ws_events_summary"]
    assert summary["events"]["ws_refused:auth"] == 60 and summary["suppressed"] == 57
    refused = [e for e in events if e.get("reason") == "auth"]
    assert all(e["peer"].startswith("127.0.0.1:") and e["code"] == 4401 for e in refused)
    assert {e["token_given"] for e in refused} == {True}


async def test_redis_lost_under_a_resume_closes_with_1013_and_one_line_not_a_traceback(
    namespace: str, logs: io.BytesIO, caplog: pytest.LogCaptureFixture
) -> None:
    node = RedisNode()
    node.start()
    client = aioredis.Redis(port=node.port, socket_connect_timeout=0.5, socket_timeout=2)
    srv = await start_server(client, namespace)
    try:
        node.stop(crash=True)
        with caplog.at_level(logging.INFO, logger="websockets"):
            async with connect(url(srv), additional_headers=auth()) as ws:
                await subscribe(ws, resume_from="1-0")
                assert await close_code(ws) == 1013
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await stop(srv)
        await client.aclose()
        node.destroy()
    refused = [e for e in log_lines(logs) if e["event"] == "ws_refused"]
    assert [(e["reason"], e["code"]) for e in refused] == [("unavailable", 1013)]
