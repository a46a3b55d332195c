"""Commands packed by hiredis through the factory's clients reach a real Redis intact: what the
server stores equals what redis-py's stock asyncio client stores for the same arguments, over
TCP and over a Unix socket (TLS: ``test_runtime_tls``)."""

from __future__ import annotations

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
