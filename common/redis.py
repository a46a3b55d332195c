"""The one Redis connection factory: single node or Cluster, plain or TLS, ACL user/password.

* ``redis://[user:pass@]host:port/db`` — a single server; ``rediss://`` the same over TLS.
* ``unix:///path/to/redis.sock`` — a single server on a Unix socket.
* ``redis+cluster://host:port`` (or ``rediss+cluster://``, or ``REDIS_CLUSTER=1`` with a plain
  URL) — a Redis Cluster reached through that seed node (``redis.asyncio.cluster.RedisCluster``).
* ``REDIS_TLS_CA`` / ``REDIS_TLS_CERT`` / ``REDIS_TLS_KEY`` — the CA that signed the server
  certificate and an optional client certificate (mutual TLS). A CA without ``rediss://``
  turns TLS on too.
* ``REDIS_USERNAME`` / ``REDIS_PASSWORD`` override the URL's user/password (so the password
  can come from a secret file mounted as an env var instead of the URL).

Timeouts: the socket timeout (``REDIS_SOCKET_TIMEOUT``) must exceed the longest blocking read
(``BLOCK_MS``, checked by ``CommonSettings``), else a quiet stream looks like a dead server.
Clients keep responses as bytes (``decode_responses=False``): stream payloads are binary.

Command packing: redis-py's asyncio connection builds every command's RESP bytes in Python (~3
µs for an XADD, ~10 µs for an EVALSHA the size of a 4-signal append), while its sync connection
hands them to hiredis' C ``pack_command`` (4-5× cheaper; 2.3× with the type check below,
``python -m tests.bench runtime``, which prints both). A single-node client from this factory
(``redis://``, ``rediss://``, ``unix://``) therefore uses ``HiredisPacking*`` connections: they
give hiredis a command whose arguments it encodes exactly as redis-py's ``Encoder`` does — exact
``bytes``, ``str`` (UTF-8, strict), ``int`` (``repr``, small enough that ``repr`` cannot fail:
hiredis crashes on one past ``sys.get_int_max_str_digits``) and ``float`` (``repr``) under a
one-word ``str`` command name — and leave anything else (``bool``, ``None``, subclasses, numpy
scalars, ``bytearray``/``memoryview``, ``"CLIENT SETNAME"``-style names, another encoding,
hiredis missing) to redis-py's own packer, so the bytes on the wire and the ``DataError`` for an
invalid argument are redis-py's. A Cluster client keeps redis-py's packer: ``RedisCluster``
fixes its nodes' ``connection_class`` inside ``__init__`` and takes no parameter for it.

Sending: the same connections write a command's bytes before the sending coroutine first
yields (``HiredisPacking.send_packed_command``). redis-py wraps every write in
``asyncio.wait_for`` for the socket timeout, which on Python 3.11 runs it as a new task: the
command left a loop turn later, after every other ready task — a detector's pattern events
waited behind the steps of all its other partitions at a bar boundary — and each command paid
for a task (``python -m tests.bench runtime``; issue 17).

A command run by a person (``alphapulse status``/``dlq``/``tail``…) uses
``redis_for_command``: it first pings with one connection attempt and no retries, so a wrong
password or a ``rediss://`` URL pointing at a plain port fails within
``REDIS_CONNECT_TIMEOUT`` instead of after four timed-out attempts; the command line then
prints it as one line (``common.cli``).
"""

from __future__ import annotations

import asyncio
import codecs
import ssl
from collections.abc import Iterable
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from redis._parsers import Encoder
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT
from redis.utils import HIREDIS_AVAILABLE

from common.settings import CommonSettings

if HIREDIS_AVAILABLE:
    from hiredis import pack_command as hiredis_pack_command

AnyRedis: TypeAlias = "Redis | RedisCluster"
"""What ``redis_from_settings`` returns; both speak the same async command API."""

HEALTH_CHECK_INTERVAL_S = 15
RETRIES = 3

HIREDIS_PACKS_COMMANDS = HIREDIS_AVAILABLE
"""Whether connections made here hand commands to hiredis (redis-py's own test for hiredis)."""

PACKED_BY_HIREDIS = frozenset({bytes, str, int, float})
"""Argument types hiredis encodes byte for byte like redis-py's ``Encoder`` (exact types only:
hiredis refuses an ``int`` subclass, and ``str``/``float`` subclasses may override what
redis-py calls)."""

SAFE_INT = 10**639
"""``repr`` of an int below this never fails: Python's digit limit is 0 (none) or at least 640."""
NEGATIVE_SAFE_INT = -SAFE_INT

__all__ = [
    "HIREDIS_PACKS_COMMANDS",
    "AnyRedis",
    "HiredisPackingConnection",
    "HiredisPackingSSLConnection",
    "HiredisPackingUnixDomainSocketConnection",
    "connection_kwargs",
    "plain_url",
    "redis_for_command",
    "redis_from_settings",
]


class HiredisPacking(AbstractConnection):
    """Packs commands with hiredis when that gives redis-py's bytes, else with redis-py."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        encoder = self.encoder
        self.packs_with_hiredis = (
            HIREDIS_PACKS_COMMANDS
            and type(encoder) is Encoder
            and codecs.lookup(encoder.encoding).name == "utf-8"
            and encoder.encoding_errors == "strict"
        )

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        """One command's RESP bytes (as a list, like redis-py: callers join or write them)."""
        name = args[0] if args else None
        # A one-word name: redis-py's ``name.encode().split()`` leaves it whole, and an alphabetic
        # str has no ASCII whitespace in its UTF-8 bytes.
        if self.packs_with_hiredis and type(name) is str and name.isalpha():
            kinds = set(map(type, args))
            if kinds <= PACKED_BY_HIREDIS and (
                int not in kinds
                or all([NEGATIVE_SAFE_INT < a < SAFE_INT for a in args if type(a) is int])
            ):
                try:
                    return [hiredis_pack_command(args)]  # type: ignore[arg-type]
                except UnicodeError:
                    pass  # a lone surrogate: redis-py raises its own error below
        return super().pack_command(*args)

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        """Hand the bytes to the transport before the first ``await``, then wait for the
        socket as redis-py does only if they did not all fit in it.

        redis-py's own method wraps the write in ``asyncio.wait_for`` (for
        ``REDIS_SOCKET_TIMEOUT``), which on Python 3.11 runs it as a new task: the bytes leave
        a loop turn later, after every other ready task has run, and each command costs a task.
        A connection that is not connected, or whose health check is due, takes redis-py's
        path unchanged; so does the wait for a full socket (with its timeout and its errors)."""
        writer = self._writer
        health_due = (
            check_health
            and self.health_check_interval
            and asyncio.get_running_loop().time() > self.next_health_check
        )
        if writer is None or not self.is_connected or health_due or writer.transport.is_closing():
            await super().send_packed_command(command, check_health)
            return
        if isinstance(command, str):
            command = command.encode()
        writer.writelines([command] if isinstance(command, bytes) else command)
        if writer.transport.get_write_buffer_size():
            await super().send_packed_command(b"", check_health=False)


class HiredisPackingConnection(HiredisPacking, Connection):
    """A TCP connection packing with hiredis."""


class HiredisPackingSSLConnection(HiredisPacking, SSLConnection):
    """A TLS connection packing with hiredis."""


class HiredisPackingUnixDomainSocketConnection(HiredisPacking, UnixDomainSocketConnection):
    """A Unix socket connection packing with hiredis."""


HIREDIS_PACKING_CLASS: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: HiredisPackingConnection,
    SSLConnection: HiredisPackingSSLConnection,
    UnixDomainSocketConnection: HiredisPackingUnixDomainSocketConnection,
}
"""redis-py's connection class for a URL scheme → the same class packing with hiredis."""


def plain_url(settings: CommonSettings) -> str:
    """The URL redis-py understands: cluster markers removed, ``rediss`` when TLS is on."""
    parts = urlsplit(settings.redis_url)
    scheme = parts.scheme.removesuffix("+cluster")
    if scheme == "redis" and settings.tls:
        scheme = "rediss"
    netloc = _without_overridden_credentials(parts.netloc, settings)
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


def _without_overridden_credentials(netloc: str, settings: CommonSettings) -> str:
    """The URL's user/password minus what ``REDIS_USERNAME``/``REDIS_PASSWORD`` override:
    redis-py lets a URL's credentials win over keyword arguments, so they must go."""
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return netloc
    user, _, password = userinfo.partition(":")
    if settings.redis_username is not None:
        user = ""
    if settings.redis_password is not None:
        password = ""
    if not (user or password):
        return host
    return f"{user}:{password}@{host}" if password else f"{user}@{host}"


def connection_kwargs(settings: CommonSettings) -> dict[str, Any]:
    """Keyword arguments for ``from_url`` (pure, so the choices are unit-testable)."""
    kw: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "decode_responses": False,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), RETRIES),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if not settings.redis_url.startswith("unix:"):
        kw["socket_keepalive"] = True  # a TCP option: a ``unix://`` connection refuses it
    if settings.redis_username is not None:
        kw["username"] = settings.redis_username
    if settings.redis_password is not None:
        kw["password"] = settings.redis_password
    if settings.tls:
        kw["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        if settings.redis_tls_ca:
            kw["ssl_ca_certs"] = settings.redis_tls_ca
        if settings.redis_tls_cert:
            kw["ssl_certfile"] = settings.redis_tls_cert
            kw["ssl_keyfile"] = settings.redis_tls_key
    return kw


def redis_from_settings(settings: CommonSettings, **overrides: Any) -> Redis | RedisCluster:
    """A client for ``settings`` (connections are opened lazily, on the first command)."""
    kw = connection_kwargs(settings) | overrides
    url = plain_url(settings)
    if settings.cluster:
        kw.pop("health_check_interval", None)  # per-node connections handle their own checks
        kw.pop("retry_on_error", None)
        return RedisCluster.from_url(url, **kw)
    # What ``Redis.from_url`` does (URL options win over keywords), with the connection class
    # swapped for its hiredis-packing twin; ``from_pool`` lets the client close the pool.
    options = kw | dict(parse_url(url))
    stock = options.get("connection_class", Connection)
    options["connection_class"] = HIREDIS_PACKING_CLASS.get(stock, stock)
    return Redis.from_pool(ConnectionPool(**options))


async def redis_for_command(settings: CommonSettings) -> Redis | RedisCluster:
    """A client for a command run by a person, once Redis has been reached.

    A probe client with a single attempt and no retries pings first, so a wrong password, an
    ACL refusal or a TLS mismatch fails at once; the client returned is the usual one, which
    rides out a later blip (``alphapulse tail`` follows for hours).
    """
    probe = redis_from_settings(settings, retry=Retry(NoBackoff(), 0), retry_on_error=[])
    try:
        await probe.ping()
    finally:
        await probe.aclose()
    return redis_from_settings(settings)
