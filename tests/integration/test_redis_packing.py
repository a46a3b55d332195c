"""Commands packed by hiredis through the factory's clients reach a real Redis intact: what the
server stores equals what redis-py's stock asyncio client stores for the same arguments, over
TCP and over a Unix socket (TLS: ``test_runtime_tls``). And they are sent before the sending
coroutine first yields to the event loop, however large, and also when a health check is due."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import DataError

from common.redis import (
    HiredisPackingConnection,
    HiredisPackingUnixDomainSocketConnection,
    redis_from_settings,
)
from common.settings import CommonSettings
from tests.conftest import REDIS_URL
from tests.integration.runtime_support import redis_server

pytestmark = pytest.mark.redis

ECHO_ARGV = "return ARGV"
FIELDS: dict[bytes | str, bytes | str | int | float] = {
    b"bytes": b"\x00\r\n\xff",
    "str": "clé €",
    "int": -(2**63),
    "float": 0.1,
    "big": b"x" * 100_000,  # past redis-py's 6000-byte chunking cutoff
}


async def _stored_by(client: Redis, stock: Redis, key: str) -> None:
    """XADD, EVALSHA and a pipeline through ``client`` store what ``stock`` stores."""
    streams = (f"{key}:ours", f"{key}:stock")
    try:
        for c, stream in zip((client, stock), streams, strict=True):
            async with c.pipeline(transaction=False) as pipe:
                for _ in range(3):
                    pipe.xadd(stream, FIELDS)
                await pipe.execute()
        ours, theirs = [await stock.xrange(s) for s in streams]
        assert [f for _, f in ours] == [f for _, f in theirs] and len(ours) == 3
        args = [7, 2.5, "ü", b"\x00", *(b"%d" % i for i in range(200))]
        sha = await stock.script_load(ECHO_ARGV)
        expected = await stock.evalsha(sha, 1, key, *args)
        assert await client.evalsha(sha, 1, key, *args) == expected
        assert expected[:4] == [b"7", b"2.5", "ü".encode(), b"\x00"]
        with pytest.raises(DataError):
            await client.set(key, None)  # type: ignore[arg-type]
    finally:
        await stock.delete(*streams)


@pytest.fixture
async def stock() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def test_tcp_round_trip_equals_redis_py(stock: Redis) -> None:
    client = redis_from_settings(CommonSettings(redis_url=REDIS_URL))
    assert isinstance(client, Redis)
    assert client.connection_pool.connection_class is HiredisPackingConnection
    try:
        await _stored_by(client, stock, f"redispack-{uuid.uuid4().hex[:8]}")
    finally:
        await client.aclose()


async def test_unix_socket_round_trip_equals_redis_py(tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    args = ["--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700"]
    with redis_server(args, tmp_path, {"unix_socket_path": str(socket_path)}):
        url = f"unix://{socket_path}"
        client = redis_from_settings(CommonSettings(redis_url=url))
        stock = Redis.from_url(url)
        assert isinstance(client, Redis)
        assert client.connection_pool.connection_class is HiredisPackingUnixDomainSocketConnection
        try:
            await _stored_by(client, stock, "unix")
        finally:
            await client.aclose()
            await stock.aclose()


async def _sent_without_yielding(conn: HiredisPackingConnection, *args: object) -> bool:
    """Send one command, then read its reply; True if the send gave the loop no turn (a
    callback scheduled just before it had not run by the time it returned)."""
    turns: list[int] = []
    asyncio.get_running_loop().call_soon(turns.append, 1)
    await conn.send_packed_command(conn.pack_command(*args))
    yielded = bool(turns)
    await conn.read_response()
    return not yielded


async def test_commands_leave_before_the_first_await_yields(stock: Redis) -> None:
    """A connected connection writes a command without giving the event loop a turn first
    (redis-py's own method, under ``REDIS_SOCKET_TIMEOUT``, runs the write as a new task on
    Python 3.11: the command would leave only after every other ready task had run — at a bar
    boundary, after the other partitions' steps). A command bigger than the socket takes,
    or one sent when the health check is due, goes redis-py's way and arrives whole."""
    client = redis_from_settings(CommonSettings(redis_url=REDIS_URL))
    assert isinstance(client, Redis)
    key = f"redispack-send-{uuid.uuid4().hex[:8]}"
    conn = await client.connection_pool.get_connection()
    try:
        assert isinstance(conn, HiredisPackingConnection) and conn.socket_timeout
        assert await _sent_without_yielding(conn, "XADD", key, "*", "f", b"small")
        assert await stock.xlen(key) == 1  # the reply was read: Redis has it
        big = b"x" * (64 << 20)  # far past any socket buffer: waits for the socket
        assert not await _sent_without_yielding(conn, "XADD", key, "*", "f", big)
        conn.next_health_check = -1.0  # due: redis-py pings first, then sends
        assert not await _sent_without_yielding(conn, "XADD", key, "*", "f", b"after the check")
        assert await _sent_without_yielding(conn, "XADD", key, "*", "f", b"small again")
        stored = [f[b"f"] for _, f in await stock.xrange(key)]
        assert stored == [b"small", big, b"after the check", b"small again"]
    finally:
        await client.connection_pool.release(conn)
        await stock.delete(key)
        await client.aclose()
