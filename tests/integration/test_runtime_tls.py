"""The Redis factory against private ``redis-server`` processes the tests start themselves:
TLS (server and client certificates made here with openssl) plus an ACL user, and a
single-node Redis Cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AuthenticationError, ResponseError

from common.names import Keys
from common.redis import HiredisPackingSSLConnection, redis_from_settings
from common.settings import CommonSettings
from common.stream_worker import Entry, StreamWorker
from tests.integration.runtime_support import Certs, free_port, make_certs, redis_server

pytestmark = [pytest.mark.redis, pytest.mark.slow]

USER, PASSWORD = "stage", "s3cret-pw"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Certs]]:
    directory = tmp_path_factory.mktemp("redis-tls")
    certs = make_certs(directory)
    port = free_port()
    args = [
        "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.server_key),
        "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "yes",
        "--user", "default", "off",
        "--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all",
    ]  # fmt: skip
    ping = {
        "host": "127.0.0.1", "port": port, "ssl": True, "ssl_ca_certs": str(certs.ca),
        "ssl_certfile": str(certs.client_cert), "ssl_keyfile": str(certs.client_key),
        "username": USER, "password": PASSWORD,
    }  # fmt: skip
    with redis_server(args, directory, ping):
        yield port, certs


def _tls_settings(port: int, certs: Certs, **kw: object) -> CommonSettings:
    base: dict[str, object] = {
        "redis_url": f"rediss://{USER}:{PASSWORD}@127.0.0.1:{port}/0",
        "redis_tls_ca": str(certs.ca),
        "redis_tls_cert": str(certs.client_cert),
        "redis_tls_key": str(certs.client_key),
        "namespace": "tls:",
        "metrics_port": 0,
        "block_ms": 20,
    }
    base.update(kw)
    return CommonSettings(**base)  # type: ignore[arg-type]


async def test_worker_round_trips_an_entry_over_tls_with_an_acl_user(
    tls_server: tuple[int, Certs],
) -> None:
    port, certs = tls_server
    settings = _tls_settings(port, certs)
    assert PASSWORD not in repr(settings)
    keys = settings.keys()
    client = redis_from_settings(settings)
    assert isinstance(client, redis.asyncio.Redis)  # commands packed by hiredis, over TLS
    assert client.connection_pool.connection_class is HiredisPackingSSLConnection
    try:
        assert (await client.acl_whoami()) == USER
        entry_id = (await client.xadd(keys.bars, {"hello": b"tls"})).decode()
        got: list[Entry] = []

        async def handler(batch: list[Entry]) -> None:
            got.extend(batch)

        async with StreamWorker(
            settings, group="g", streams=[keys.bars], handler=handler, burst=True
        ) as worker:  # the worker builds its own TLS client from the settings
            await worker.run()
        assert [(e.id, e.fields) for e in got] == [(entry_id, {b"hello": b"tls"})]
        assert (await client.xpending(keys.bars, "g"))["pending"] == 0
    finally:
        await client.delete(keys.bars)
        await client.aclose()


async def test_wrong_password_and_plain_tcp_are_refused(tls_server: tuple[int, Certs]) -> None:
    port, certs = tls_server
    bad = redis_from_settings(
        _tls_settings(port, certs, redis_url=f"rediss://127.0.0.1:{port}/0", redis_password="no"),
        retry=None,
    )
    with pytest.raises((AuthenticationError, ResponseError)):
        await bad.ping()
    await bad.aclose()
    # Username and password may also come from REDIS_USERNAME/REDIS_PASSWORD.
    env = {
        "REDIS_URL": f"rediss://127.0.0.1:{port}/0",
        "REDIS_USERNAME": USER,
        "REDIS_PASSWORD": PASSWORD,
        "REDIS_TLS_CA": str(certs.ca),
        "REDIS_TLS_CERT": str(certs.client_cert),
        "REDIS_TLS_KEY": str(certs.client_key),
    }
    good = redis_from_settings(CommonSettings.from_env(env))
    assert await good.ping()
    await good.aclose()


@pytest.fixture(scope="module")
def cluster_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    directory: Path = tmp_path_factory.mktemp("redis-cluster")
    port = free_port()
    args = [
        "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
        "--cluster-config-file", str(directory / "nodes.conf"),
        "--cluster-port", str(free_port()),  # else port + 10000, which may not exist
    ]  # fmt: skip
    with (
        redis_server(args, directory, {"host": "127.0.0.1", "port": port}),
        redis.Redis(host="127.0.0.1", port=port) as c,
    ):
        c.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        for _ in range(400):  # bounded wait for the one-node cluster to agree it is up
            if b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO"):
                break
            time.sleep(0.05)
        yield port


async def test_cluster_worker_reads_streams_of_several_slots(cluster_port: int) -> None:
    settings = CommonSettings(
        redis_url=f"redis+cluster://127.0.0.1:{cluster_port}/0",
        namespace="c:",
        metrics_port=0,
        block_ms=20,
    )
    keys: Keys = settings.keys()
    client = redis_from_settings(settings)
    assert isinstance(client, RedisCluster)
    streams = [keys.ticks(0), keys.ticks(1), keys.bars]  # three different hash slots
    try:
        for s in streams:
            await client.xadd(s, {"s": s})
        got: list[Entry] = []

        async def handler(batch: list[Entry]) -> None:
            got.extend(batch)

        async with StreamWorker(
            settings, group="g", streams=streams, handler=handler, redis=client, burst=True,
            trim=True,
        ) as worker:  # fmt: skip
            await worker.run()
            await worker.trim()
        assert sorted(e.fields[b"s"].decode() for e in got) == sorted(streams)
        for s in streams:
            assert await client.xlen(s) == 0
    finally:
        for s in streams:
            await client.delete(s)
        await client.aclose()
