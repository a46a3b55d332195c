"""The factory's hiredis-packing connections write exactly redis-py's bytes, or raise its error.

redis-py's own asyncio ``Connection`` is the reference: for every command both pack, the joined
output must be equal byte for byte; for every command it refuses, ours must refuse with the
same exception type and message."""

from __future__ import annotations

import enum
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

import common.redis as factory
from common.redis import (
    HiredisPackingConnection,
    HiredisPackingSSLConnection,
    HiredisPackingUnixDomainSocketConnection,
    redis_from_settings,
)
from common.settings import CommonSettings

STOCK = Connection()
OURS = HiredisPackingConnection()


class Side(enum.IntEnum):
    BUY = 1


class Price(float):
    def __repr__(self) -> str:
        return "price"


class Name(str):
    pass


def _outcome(conn: Connection, args: tuple[object, ...]) -> bytes | tuple[type, str]:
    try:
        return b"".join(bytes(c) for c in conn.pack_command(*args))  # type: ignore[arg-type]
    except Exception as e:  # the refusal itself is what is compared
        return (type(e), str(e))


def _same(args: tuple[object, ...]) -> None:
    assert _outcome(OURS, args) == _outcome(STOCK, args), args


NAMES = st.sampled_from(
    ["XADD", "EVALSHA", "XACK", "SET", "CLIENT SETNAME", "CONFIG  GET", "x\tY", "é", "GEORADIUS_RO",
     b"XADD", b"CONFIG GET", Name("XADD"), "\ud800", ""]
)  # fmt: skip
ARGS = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=5990, max_size=7000),  # around redis-py's 6000-byte chunking cutoff
    st.text(max_size=32),
    st.integers(),
    st.integers(min_value=-(10**700), max_value=10**700),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.just({}),
    st.just([1]),
    st.binary(max_size=16).map(bytearray),
    st.binary(max_size=16).map(memoryview),
    st.sampled_from(
        [Side.BUY, Price(1.5), Name("sym"), np.float64(0.1), np.int64(3), np.float32(2)]
    ),
)


@settings(max_examples=600, deadline=None)
@given(NAMES, st.lists(ARGS, max_size=12))
def test_any_command_packs_like_redis_py(name: object, args: list[object]) -> None:
    _same((name, *args))


@pytest.mark.parametrize(
    "value",
    [0, -1, 2**63, 10**638, -(10**638), 10**5000, 1.5, 0.1, -0.0, float("nan"), float("inf"),
     1e300, 5e-324, "é€😀", "\ud800", b"", b"\r\n", b"x" * 100_000, True, None, 1 + 2j],
    ids=lambda v: type(v).__name__,  # str() of 10**5000 fails
)  # fmt: skip
def test_edge_values(value: object) -> None:
    """Ints past the digit limit must not reach hiredis (its ``repr`` failure crashes the
    process); here they get redis-py's ValueError."""
    _same(("SET", b"k", value))


def test_typical_commands_take_the_hiredis_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []
    real = factory.hiredis_pack_command

    def spy(args: tuple[object, ...]) -> bytes:
        calls.append(args)
        return real(args)  # type: ignore[arg-type]

    monkeypatch.setattr(factory, "hiredis_pack_command", spy)
    xadd = ("XADD", b"ns:signals", "*", b"v", b"1", b"d", b"x" * 9000)
    evalsha = ("EVALSHA", "a" * 40, 2, b"k1", b"k2", 259200000, 0, "", 17, b"id", b"{}")
    xack = ("XACK", b"ns:bars", b"g", *(b"1-%d" % i for i in range(100)))
    pipeline = [xadd, evalsha, xack]
    assert b"".join(OURS.pack_commands(pipeline)) == b"".join(STOCK.pack_commands(pipeline))
    assert calls == pipeline
    calls.clear()
    for refused in [("CLIENT SETNAME", b"x"), ("SET", b"k", True), ("SET", b"k", Side.BUY)]:
        _same(refused)
    assert calls == []


def test_redis_py_packs_without_hiredis_or_with_another_encoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    command = ("SET", "clé", 1.5)
    assert HiredisPackingConnection().packs_with_hiredis
    latin = HiredisPackingConnection(encoding="latin-1")
    assert not latin.packs_with_hiredis
    assert latin.pack_command(*command) == Connection(encoding="latin-1").pack_command(*command)
    monkeypatch.setattr(factory, "HIREDIS_PACKS_COMMANDS", False)
    without = HiredisPackingConnection()
    assert not without.packs_with_hiredis
    assert without.pack_command(*command) == STOCK.pack_command(*command)


@pytest.mark.parametrize(
    ("url", "stock", "ours"),
    [
        ("redis://127.0.0.1:6379/0", Connection, HiredisPackingConnection),
        ("rediss://u@127.0.0.1:6380/1", SSLConnection, HiredisPackingSSLConnection),
        ("unix:///r.sock", UnixDomainSocketConnection, HiredisPackingUnixDomainSocketConnection),
    ],
)  # fmt: skip
async def test_single_node_clients_pack_with_hiredis(url: str, stock: type, ours: type) -> None:
    client = redis_from_settings(CommonSettings(redis_url=url, redis_password="pw"))
    pool = client.connection_pool
    assert pool.connection_class is ours and issubclass(ours, stock)
    assert pool.connection_kwargs["password"] == "pw"  # the factory's options still apply
    assert client.auto_close_connection_pool  # closing the client closes its pool
    await client.aclose()


async def test_cluster_keeps_redis_py_packing() -> None:
    """``RedisCluster`` sets its nodes' connection class itself (no parameter for it)."""
    cluster = redis_from_settings(CommonSettings(redis_url="redis+cluster://127.0.0.1:7000"))
    assert isinstance(cluster, RedisCluster)
    assert cluster.startup_nodes[0].connection_class is Connection
    await cluster.aclose()


def test_the_digit_limit_bound_holds_at_its_strictest() -> None:
    assert factory.SAFE_INT == 10**639 and len(repr(factory.SAFE_INT - 1)) == 639
    assert sys.int_info.str_digits_check_threshold == 640  # the smallest limit Python allows
