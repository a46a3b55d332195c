"""The one Redis connection factory: single node or Cluster, plain or TLS, ACL user/password.

* ``redis://[user:pass@]host:port/db`` — a single server; ``rediss://`` the same over TLS.
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

A command run by a person (``alphapulse status``/``dlq``/``tail``…) uses
``redis_for_command``: it first pings with one connection attempt and no retries, so a wrong
password or a ``rediss://`` URL pointing at a plain port fails within
``REDIS_CONNECT_TIMEOUT`` instead of after four timed-out attempts; the command line then
prints it as one line (``common.cli``).
"""

from __future__ import annotations

import ssl
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.settings import CommonSettings

AnyRedis: TypeAlias = "Redis | RedisCluster"
"""What ``redis_from_settings`` returns; both speak the same async command API."""

HEALTH_CHECK_INTERVAL_S = 15
RETRIES = 3

__all__ = [
    "AnyRedis",
    "connection_kwargs",
    "plain_url",
    "redis_for_command",
    "redis_from_settings",
]


def plain_url(settings: CommonSettings) -> str:
    """The URL redis-py understands: cluster markers removed, ``rediss`` when TLS is on."""
    parts = urlsplit(settings.redis_url)
    scheme = parts.scheme.removesuffix("+cluster")
    if scheme == "redis" and settings.tls:
        scheme = "rediss"
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def connection_kwargs(settings: CommonSettings) -> dict[str, Any]:
    """Keyword arguments for ``from_url`` (pure, so the choices are unit-testable)."""
    kw: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "decode_responses": False,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), RETRIES),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
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
    return Redis.from_url(url, **kw)


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
