"""Settings of the web console, read from the environment once (in ``main``).

==============================  ===========  ===================================================
variable                        default      meaning
==============================  ===========  ===================================================
``CONSOLE_HOST``                ``0.0.0.0``  address the console listens on
``CONSOLE_PORT``                ``8790``     its port (0 = any free port)
``CONSOLE_USERS_FILE``          (none)       users file: ``name role argon2-hash`` per line
``CONSOLE_USERS``               (none)       more users: ``name:role:argon2-hash;...``
``CONSOLE_API_TOKENS``          (none)       script tokens: ``name:role:token,...``
``SIGNALS_WS_TOKENS``           (none)       the signals feed's tokens: also viewer API tokens
``CONSOLE_SESSION_TTL_S``       ``43200``    a login lasts this long (12 h)
``CONSOLE_LOGIN_FAILURES``      ``5``        failed logins allowed per user and per address ...
``CONSOLE_LOGIN_WINDOW_S``      ``300``      ... within this window, then 429 until it passes
``CONSOLE_SECURE_COOKIES``      ``false``    mark cookies ``Secure`` (behind HTTPS)
``CONSOLE_WORKERS``             (none)       ``name=http://host:port,...`` metrics endpoints to
                                             scrape for readiness and alerts (Overview)
``PROMETHEUS_URL``              (none)       read firing alerts from this Prometheus instead
``CONSOLE_NODE_MODULES``        (repo's)     where ``npm ci`` put the front-end packages
``DATABASE_URL``                (sink's)     TimescaleDB/PostgreSQL with the sink's tables
==============================  ===========  ===================================================

Plus every shared variable of ``CommonSettings`` (``REDIS_URL``, ``NAMESPACE``…). At least one
user or token is required: nothing but ``/healthz`` is reachable without a login.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from common.errors import ConfigError
from common.settings import CommonSettings, env_bool, env_int, env_list, env_optional, env_str
from signals.console.auth import ApiToken, User, parse_tokens, parse_users
from sink.settings import database_url

DEFAULT_NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """The console process: who may log in, where it listens, what it reads."""

    common: CommonSettings
    users: tuple[User, ...] = ()
    tokens: tuple[ApiToken, ...] = ()
    database_url: str = field(default="postgresql://postgres@127.0.0.1:5432/test", repr=False)
    host: str = "0.0.0.0"
    port: int = 8790
    session_ttl_s: int = 43_200
    login_failures: int = 5
    login_window_s: int = 300
    secure_cookies: bool = False
    workers: tuple[tuple[str, str], ...] = ()
    prometheus_url: str | None = None
    node_modules: Path = DEFAULT_NODE_MODULES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConsoleSettings:
        e = os.environ if env is None else env
        users: list[User] = []
        users_file = env_optional(e, "CONSOLE_USERS_FILE")
        if users_file is not None:
            try:
                text = Path(users_file).read_text()
            except OSError as err:
                raise ConfigError("CONSOLE_USERS_FILE", f"cannot read it: {err.strerror}") from err
            users += parse_users(text.splitlines(), "CONSOLE_USERS_FILE")
        users += parse_users(env_str(e, "CONSOLE_USERS", "").split(";"), "CONSOLE_USERS")
        names = [u.name for u in users]
        if len(set(names)) != len(names):
            raise ConfigError("CONSOLE_USERS", "a user name appears twice")
        tokens = parse_tokens(env_list(e, "CONSOLE_API_TOKENS"), "CONSOLE_API_TOKENS")
        tokens += tuple(ApiToken.viewer(t) for t in env_list(e, "SIGNALS_WS_TOKENS"))
        if not users and not tokens:
            raise ConfigError(
                "CONSOLE_USERS", "no user and no token: set CONSOLE_USERS_FILE or CONSOLE_USERS"
            )
        node_modules = Path(env_str(e, "CONSOLE_NODE_MODULES", str(DEFAULT_NODE_MODULES)))
        if not (node_modules / "lightweight-charts").is_dir():
            raise ConfigError(
                "CONSOLE_NODE_MODULES", f"no lightweight-charts under {node_modules}: run npm ci"
            )
        return cls(
            common=CommonSettings.from_env(e),
            users=tuple(users),
            tokens=tokens,
            database_url=database_url(e),
            host=env_str(e, "CONSOLE_HOST", "0.0.0.0") or "0.0.0.0",
            port=env_int(e, "CONSOLE_PORT", 8790, lo=0, hi=65535),
            session_ttl_s=env_int(e, "CONSOLE_SESSION_TTL_S", 43_200, lo=60),
            login_failures=env_int(e, "CONSOLE_LOGIN_FAILURES", 5, lo=1),
            login_window_s=env_int(e, "CONSOLE_LOGIN_WINDOW_S", 300, lo=1),
            secure_cookies=env_bool(e, "CONSOLE_SECURE_COOKIES", False),
            workers=parse_workers(env_list(e, "CONSOLE_WORKERS")),
            prometheus_url=env_optional(e, "PROMETHEUS_URL"),
            node_modules=node_modules,
        )

    def __repr__(self) -> str:  # never log hashes or tokens
        return (
            f"ConsoleSettings(host={self.host!r}, port={self.port}, users=<{len(self.users)}>, "
            f"tokens=<{len(self.tokens)}>, workers={len(self.workers)})"
        )


def parse_workers(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``name=http://host:port`` items -> ((name, base URL), ...)."""
    workers = []
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError("CONSOLE_WORKERS", f"expected name=http://host:port, got {item!r}")
        workers.append((name, url.rstrip("/")))
    return tuple(workers)
