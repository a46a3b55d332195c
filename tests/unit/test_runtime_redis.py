"""The Redis factory's choices (pure: no connection is opened) and the log redaction."""

from __future__ import annotations

import io
import ssl

import orjson
import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from common.logging import bind_context, clear_context, configure_logging, get_logger
from common.redis import connection_kwargs, plain_url, redis_from_settings
from common.settings import CommonSettings


def test_plain_url_and_kwargs() -> None:
    s = CommonSettings(redis_socket_timeout=7, redis_connect_timeout=2)
    kw = connection_kwargs(s)
    assert plain_url(s) == "redis://127.0.0.1:6379/0"
    assert kw["socket_timeout"] == 7 and kw["socket_connect_timeout"] == 2
    assert kw["decode_responses"] is False and kw["health_check_interval"] > 0
    assert "ssl_cert_reqs" not in kw and "password" not in kw


def test_tls_options_and_acl_overrides() -> None:
    s = CommonSettings(
        redis_url="redis://u:p@h:6380/1",
        redis_tls_ca="/ca.pem",
        redis_tls_cert="/c.pem",
        redis_tls_key="/k.pem",
        redis_username="other",
        redis_password="pw",
    )
    # A CA turns TLS on; the URL's user and password give way to the overrides (redis-py would
    # let the URL's win over the keywords).
    assert plain_url(s) == "rediss://h:6380/1"
    kw = connection_kwargs(s)
    assert kw["ssl_cert_reqs"] == ssl.CERT_REQUIRED and kw["ssl_ca_certs"] == "/ca.pem"
    assert (kw["ssl_certfile"], kw["ssl_keyfile"]) == ("/c.pem", "/k.pem")
    assert (kw["username"], kw["password"]) == ("other", "pw")


async def test_redis_password_overrides_the_urls_password_in_the_client() -> None:
    s = CommonSettings(redis_url="redis://u:p@h:6380/1", redis_password="from-secret-file")
    assert plain_url(s) == "redis://u@h:6380/1"  # the user stays, the password gives way
    client = redis_from_settings(s)
    assert isinstance(client, Redis)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("u", "from-secret-file")
    await client.aclose()
    user_only = CommonSettings(redis_url="redis://u:p@h/0", redis_username="other")
    assert plain_url(user_only) == "redis://:p@h/0"
    assert plain_url(CommonSettings(redis_url="redis://u:p@h/0")) == "redis://u:p@h/0"


async def test_client_type_follows_the_cluster_flag() -> None:
    single = redis_from_settings(CommonSettings())
    assert isinstance(single, Redis)
    await single.aclose()
    cluster = redis_from_settings(CommonSettings(redis_url="redis+cluster://127.0.0.1:7000"))
    assert isinstance(cluster, RedisCluster)
    assert plain_url(CommonSettings(redis_url="rediss+cluster://h:1")) == "rediss://h:1"
    await cluster.aclose()


def test_json_logs_carry_context_and_never_a_password() -> None:
    out = io.BytesIO()
    configure_logging(CommonSettings(), stream=out)
    try:
        bind_context(worker="w1", partition=3)
        get_logger("t", stream="bars").info("hello", url="rediss://u:topsecret@h:1/0")
        get_logger("t").debug("filtered_out")
    finally:
        clear_context()
        structlog.reset_defaults()
    (line,) = out.getvalue().splitlines()
    event = orjson.loads(line)
    assert event["event"] == "hello" and event["level"] == "info"
    assert (event["worker"], event["partition"], event["stream"]) == ("w1", 3, "bars")
    assert event["url"] == "rediss://u:***@h:1/0" and b"topsecret" not in out.getvalue()


def test_console_logs_for_people() -> None:
    out = io.StringIO()
    configure_logging(level="DEBUG", fmt="console", stream=out)
    try:
        get_logger("t").debug("shown", n=1)
    finally:
        structlog.reset_defaults()
    assert "shown" in out.getvalue() and "n=1" in out.getvalue()


def test_a_logger_made_before_configuration_follows_it() -> None:
    # Stages create module-level loggers at import time, before main() configures logging.
    early = get_logger("stage", worker="w9")
    out = io.BytesIO()
    configure_logging(level="INFO", fmt="json", stream=out)
    try:
        early.info("after_config", n=2)
    finally:
        structlog.reset_defaults()
    event = orjson.loads(out.getvalue())
    assert (event["event"], event["component"], event["worker"], event["n"]) == (
        "after_config",
        "stage",
        "w9",
        2,
    )
