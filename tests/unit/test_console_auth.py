"""The console's pure parts: users and tokens from configuration, passwords, sessions, the
failed-login limit, query parameters, the Wilson interval, settings errors (one line)."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from signals.console.auth import (
    LoginLimiter,
    SessionStore,
    check_password,
    check_token,
    hash_password,
    parse_tokens,
    parse_users,
)
from signals.console.params import ParamError, SeriesFilter, SignalFilter, cursor_param, make_cursor
from signals.console.settings import ConsoleSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_users_from_a_file_and_from_env_and_passwords_checked() -> None:
    h = hash_password("s3cret-pass")
    users = parse_users(["# comment", "", f"ada viewer {h}"], "F") + parse_users(
        [f"root:admin:{h}"], "E"
    )
    assert [(u.name, u.role) for u in users] == [("ada", "viewer"), ("root", "admin")]
    assert check_password(users, "ada", "s3cret-pass") == users[0]
    assert check_password(users, "ada", "wrong") is None
    assert check_password(users, "nobody", "s3cret-pass") is None
    assert "s3cret" not in repr(users) and h not in repr(users)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("ada viewer plaintext", "the password must be an argon2 hash"),
        ("ada boss $argon2id$x", "role must be one of viewer, admin"),
        ("ada viewer", "expected 'name role argon2-hash'"),
    ],
)
def test_bad_users_stop_the_start_naming_the_variable(line: str, reason: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_users([line], "CONSOLE_USERS_FILE")
    assert e.value.variable == "CONSOLE_USERS_FILE" and reason in str(e.value)


def test_tokens_match_by_digest() -> None:
    tokens = parse_tokens(["ci:viewer:abc", "ops:admin:def"], "T")
    found = check_token(tokens, "def")
    assert found is not None and (found.name, found.role) == ("ops", "admin")
    assert check_token(tokens, "abcd") is None
    with pytest.raises(ConfigError):
        parse_tokens(["nocolon"], "T")


def test_sessions_expire() -> None:
    clock = Clock()
    store = SessionStore(60, clock)
    s = store.create("ada", "viewer")
    assert store.get(s.id) is s and s.csrf and s.csrf != s.id
    clock.now += 61
    assert store.get(s.id) is None and len(store) == 0
    assert store.get(None) is None


def test_failed_logins_are_limited_per_key_within_the_window() -> None:
    clock = Clock()
    limiter = LoginLimiter(3, 300, clock)
    for _ in range(3):
        assert limiter.retry_after("user:ada", "addr:1") == 0
        limiter.failed("user:ada", "addr:1")
    assert limiter.retry_after("user:ada") == pytest.approx(300)
    assert limiter.retry_after("addr:1") > 0 and limiter.retry_after("user:bob") == 0
    clock.now += 301
    assert limiter.retry_after("user:ada", "addr:1") == 0
    limiter.failed("user:ada")
    limiter.succeeded("user:ada")
    assert limiter.retry_after("user:ada") == 0


def test_parameters_and_cursors() -> None:
    f = SignalFilter.parse({"from": "2024-08-08T23:54:00Z", "to": "1723161300000", "limit": "5"})
    assert f.start is not None and f.end is not None and f.limit == 5
    assert round(f.start.timestamp() * 1000) == 1_723_161_240_000
    cursor = make_cursor(f.start, "binance:BTCUSDT:1m:1:long")
    assert cursor_param({"before": cursor}) == (f.start, "binance:BTCUSDT:1m:1:long")
    with pytest.raises(ParamError, match=r"^limit: expected 1\.\.10000, got 0$"):
        SeriesFilter.parse(
            {"exchange": "b", "symbol": "s", "timeframe": "1m", "limit": "0"},
            default_limit=10,
            max_limit=10_000,
        )
    with pytest.raises(ParamError, match=r"^exchange: expected letters"):
        SignalFilter.parse({"exchange": "x'; drop table bars;--"})


def test_settings_need_a_user_or_token_and_the_front_end_packages(tmp_path: object) -> None:
    with pytest.raises(ConfigError) as e:
        ConsoleSettings.from_env({})
    assert e.value.variable == "CONSOLE_USERS"
    h = hash_password("long-enough")
    with pytest.raises(ConfigError) as e:
        ConsoleSettings.from_env(
            {"CONSOLE_USERS": f"a:viewer:{h}", "CONSOLE_NODE_MODULES": "/nope"}
        )
    assert e.value.variable == "CONSOLE_NODE_MODULES"
    s = ConsoleSettings.from_env(
        {"CONSOLE_USERS": f"a:viewer:{h}", "SIGNALS_WS_TOKENS": "t1,t2",
         "CONSOLE_WORKERS": "sink=http://127.0.0.1:5600"}
    )  # fmt: skip
    assert len(s.tokens) == 2 and s.workers == (("sink", "http://127.0.0.1:5600"),)
    assert h not in repr(s) and "t1" not in repr(s)
