"""CommonSettings from the environment: defaults, every parse rule, secrets kept out of sight."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.secrets import redact_url
from common.settings import (
    CommonSettings,
    config_error_line,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_optional,
    exit_on_config_error,
)
from tests.integration.runtime_support import Certs, make_certs


def test_defaults() -> None:
    s = CommonSettings.from_env({})
    assert s == CommonSettings()
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert (s.partitions, s.namespace, s.metrics_port, s.log_format) == (16, "", 9100, "json")
    assert (s.batch_count, s.block_ms, s.claim_idle_ms, s.max_deliveries) == (100, 1000, 30000, 5)
    assert (s.hard_maxlen, s.grace_seconds, s.trim_interval_s) == (0, 10.0, 10.0)
    assert s.gc_gen0 == 50_000
    assert not s.cluster and not s.tls
    assert s.keys().partitions == 16 and s.keys().namespace == ""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA and a client certificate with its key, made by openssl."""
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_every_variable_is_read(certs: Certs) -> None:
    env = {
        "REDIS_URL": "rediss://u:pw@redis.example:6380/2",
        "REDIS_CLUSTER": "yes",
        "REDIS_TLS_CA": str(certs.ca),
        "REDIS_TLS_CERT": str(certs.client_cert),
        "REDIS_TLS_KEY": str(certs.client_key),
        "REDIS_USERNAME": "bob",
        "REDIS_PASSWORD": "pw2",
        "REDIS_SOCKET_TIMEOUT": "30",
        "REDIS_CONNECT_TIMEOUT": "2.5",
        "PARTITIONS": "64",
        "NAMESPACE": "prod:",
        "METRICS_HOST": "127.0.0.1",
        "METRICS_PORT": "0",
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "Console",
        "GRACE_SECONDS": "3.5",
        "BATCH_COUNT": "500",
        "BLOCK_MS": "2000",
        "CLAIM_IDLE_MS": "60000",
        "MAX_DELIVERIES": "7",
        "TRIM_INTERVAL_S": "0",
        "HARD_MAXLEN": "1000000",
        "CONSUMER_NAME": "pod-1",
        "DELETE_IDLE_CONSUMERS_MS": "60000",
        "GC_GEN0": "0",
    }
    s = CommonSettings.from_env(env)
    assert s.cluster and s.tls
    assert (s.redis_tls_ca, s.redis_tls_cert, s.redis_tls_key) == tuple(
        str(p) for p in (certs.ca, certs.client_cert, certs.client_key)
    )
    assert (s.redis_username, s.redis_password) == ("bob", "pw2")
    assert (s.redis_socket_timeout, s.redis_connect_timeout) == (30.0, 2.5)
    assert (s.partitions, s.namespace, s.metrics_host, s.metrics_port) == (
        64,
        "prod:",
        "127.0.0.1",
        0,
    )
    assert (s.log_level, s.log_format, s.grace_seconds) == ("DEBUG", "console", 3.5)
    assert (s.batch_count, s.block_ms, s.claim_idle_ms, s.max_deliveries) == (500, 2000, 60000, 7)
    assert (s.trim_interval_s, s.hard_maxlen, s.consumer_name) == (0.0, 1_000_000, "pod-1")
    assert s.keys().namespace == "prod:" and s.delete_idle_consumers_ms == 60000
    assert s.gc_gen0 == 0


def test_metrics_port_falls_back_to_honchos_port() -> None:
    assert CommonSettings.from_env({"PORT": "5100"}).metrics_port == 5100
    assert CommonSettings.from_env({"PORT": "5100", "METRICS_PORT": "0"}).metrics_port == 0
    assert CommonSettings.from_env({"DELETE_IDLE_CONSUMERS_MS": "0"}).delete_idle_consumers_ms == 0


def test_cluster_scheme_turns_cluster_on() -> None:
    assert CommonSettings(redis_url="redis+cluster://h:7000").cluster
    assert CommonSettings(redis_url="rediss+cluster://h:7000").tls


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PARTITIONS", "x", "expected an integer 1..4096, got 'x'"),
        ("PARTITIONS", "0", "expected an integer 1..4096, got '0'"),
        ("PARTITIONS", "4097", "expected an integer 1..4096, got '4097'"),
        ("METRICS_PORT", "65536", "expected an integer 0..65535, got '65536'"),
        ("GRACE_SECONDS", "-1", "expected a number 0..3600, got '-1'"),
        ("GRACE_SECONDS", "nan", "expected a number 0..3600, got 'nan'"),
        ("REDIS_CLUSTER", "maybe", "expected one of 1/0, true/false, yes/no, on/off, got 'maybe'"),
        ("LOG_LEVEL", "loud", "expected one of DEBUG|INFO|WARNING|ERROR|CRITICAL, got 'loud'"),
        ("LOG_FORMAT", "xml", "expected one of json|console, got 'xml'"),
        ("HARD_MAXLEN", "-5", "expected an integer >= 0, got '-5'"),
        ("GC_GEN0", "-1", "expected an integer >= 0, got '-1'"),
        ("GC_GEN0", "50k", "expected an integer >= 0, got '50k'"),
        ("MAX_DELIVERIES", "0", "expected an integer 1..1000, got '0'"),
        (
            "BLOCK_MS",
            "10000",
            "expected milliseconds below REDIS_SOCKET_TIMEOUT (10 s), got '10000'",
        ),
        (
            "REDIS_URL",
            "http://h",
            "expected a redis|rediss|redis+cluster|rediss+cluster|unix:// URL",
        ),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        CommonSettings.from_env({variable: value})
    assert info.value.variable == variable
    assert message in info.value.problem


def test_tls_files_must_be_readable_pem_and_belong_together(certs: Certs, tmp_path: Path) -> None:
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate")
    cases = [
        ({"REDIS_TLS_CA": str(tmp_path / "missing.pem")}, "REDIS_TLS_CA", "a readable file"),
        ({"REDIS_TLS_CA": str(not_pem)}, "REDIS_TLS_CA", "a PEM CA certificate"),
        ({"REDIS_TLS_CERT": str(certs.client_cert)}, "REDIS_TLS_KEY", "go together"),
        (
            {"REDIS_TLS_CERT": str(not_pem), "REDIS_TLS_KEY": str(certs.client_key)},
            "REDIS_TLS_CERT",
            "a PEM certificate",
        ),
        (
            {"REDIS_TLS_CERT": str(certs.client_cert), "REDIS_TLS_KEY": str(certs.server_key)},
            "REDIS_TLS_KEY",
            "private key of REDIS_TLS_CERT",
        ),
    ]
    for env, variable, says in cases:
        with pytest.raises(ConfigError) as info:
            CommonSettings.from_env(env)
        assert (info.value.variable, says in info.value.problem) == (variable, True), env


def test_block_ms_must_stay_below_the_socket_timeout() -> None:
    ok = CommonSettings.from_env({"BLOCK_MS": "9999", "REDIS_SOCKET_TIMEOUT": "10"})
    assert ok.block_ms == 9999
    with pytest.raises(ConfigError, match="BLOCK_MS"):
        CommonSettings.from_env({"BLOCK_MS": "5000", "REDIS_SOCKET_TIMEOUT": "5"})


def test_helpers() -> None:
    env = {"A": " 7 ", "B": "", "L": " a, ,b ,c", "F": "1e3", "T": "ON", "C": "JSON"}
    assert env_int(env, "A", 1) == 7
    assert env_int(env, "B", 3) == 3  # empty = unset
    assert env_float(env, "F", 0.0) == 1000.0
    assert env_bool(env, "T", False) is True and env_bool(env, "B", True) is False
    assert env_choice(env, "C", "console", ("json", "console")) == "json"
    assert env_list(env, "L") == ("a", "b", "c") and env_list(env, "missing", ("x",)) == ("x",)
    assert env_optional(env, "B") is None and env_optional(env, "A") == "7"


def test_secrets_are_redacted_everywhere() -> None:
    s = CommonSettings.from_env(
        {"REDIS_URL": "rediss://app:hunter2@10.0.0.1:6380/0", "REDIS_PASSWORD": "other-secret"}
    )
    text = repr(s) + str(s.redacted())
    assert "hunter2" not in text and "other-secret" not in text
    assert "rediss://app:***@10.0.0.1:6380/0" in text
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    assert redact_url("redis://:pw@[::1]:6379") == "redis://:***@[::1]:6379"


def test_exit_on_config_error_prints_one_line_and_exits_2() -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit) as info, exit_on_config_error(out):
        CommonSettings.from_env({"PARTITIONS": "x"})
    assert info.value.code == 2
    assert out.getvalue() == (
        "alphapulse: invalid setting PARTITIONS: expected an integer 1..4096, got 'x'\n"
    )
    assert config_error_line(ConfigError("X", "bad")) == "alphapulse: invalid setting X: bad"
