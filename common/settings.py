"""Settings shared by every worker, read from the environment once in ``main()``.

Each stage writes its own frozen dataclass holding ``common: CommonSettings`` plus its own
fields, built with the ``env_*`` helpers below. Every helper raises ``ConfigError(variable,
"expected ..., got '...'")`` so a bad value stops the process at start with one line naming
the variable (see ``exit_on_config_error``). Nothing here reads the environment at import time.

Secrets: the Redis password (in ``REDIS_URL`` or ``REDIS_PASSWORD``) is kept out of ``repr``
and registered with ``common.secrets`` when the settings are built, so it is masked in every
log line and error message; ``CommonSettings.redacted()`` gives the loggable form. Files
(``env_file``) must exist and be readable, URLs (``check_url``) must carry a known scheme and a
port in range, all at start, so a bad one is one line and exit code 2 rather than a traceback.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import ssl
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

from common.contracts import DEFAULT_RECENT_BARS
from common.errors import ConfigError
from common.names import Keys
from common.secrets import redact_url, register_secret, register_url_secret, scrub

LogFormat = Literal["json", "console"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster", "unix")
#: ``GC_GEN0``: allocations between two collections of the youngest generation (Python: 700).
DEFAULT_GC_GEN0 = 50_000

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


# --- parse helpers -------------------------------------------------------------------------
def field_defaults(cls: type[Any]) -> dict[str, Any]:
    """The default of every field of dataclass ``cls`` that has one, by field name.

    A setting's default is written once, on its dataclass field; ``from_env`` takes it from
    here (``d = field_defaults(cls)``, then ``env_int(e, "X", d["x"])``), so a settings object
    built in code and one built from an empty environment agree.
    """
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    """The raw value of ``name`` (surrounding blanks stripped), or ``default`` when unset."""
    raw = env.get(name)
    return default if raw is None else raw.strip()


def env_optional(env: Mapping[str, str], name: str) -> str | None:
    """The value of ``name``, or ``None`` when unset or empty."""
    raw = env.get(name)
    return raw.strip() or None if raw is not None else None


def env_int(
    env: Mapping[str, str], name: str, default: int, *, lo: int | None = None, hi: int | None = None
) -> int:
    """An integer within ``lo..hi`` (inclusive; either bound optional)."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        value = None
    if value is None or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(name, f"expected an integer {_range(lo, hi)}, got {raw!r}")
    return value


def env_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    lo: float | None = None,
    hi: float | None = None,
) -> float:
    """A finite number within ``lo..hi`` (inclusive; either bound optional)."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value: float | None = float(raw.strip())
    except ValueError:
        value = None
    if (
        value is None
        or not math.isfinite(value)
        or (lo is not None and value < lo)
        or (hi is not None and value > hi)
    ):
        raise ConfigError(name, f"expected a number {_range(lo, hi)}, got {raw!r}")
    return value


def recent_bars_from_env(env: Mapping[str, str]) -> int:
    """``COOLDOWN_BARS``: how many bars back a pattern event's ``recent`` list reaches.

    Read by the detectors (they fill ``recent``) and by signals (its cooldown may not look
    further back than that), so one environment file keeps the two consistent.
    """
    return env_int(env, "COOLDOWN_BARS", DEFAULT_RECENT_BARS, lo=0, hi=100_000)


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A flag: ``1/true/yes/on`` or ``0/false/no/off`` (any case); unset gives ``default``."""
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(name, f"expected one of 1/0, true/false, yes/no, on/off, got {raw!r}")


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (compared case-insensitively, returned as spelled in ``choices``)."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    for choice in choices:
        if raw.strip().lower() == choice.lower():
            return choice
    raise ConfigError(name, f"expected one of {'|'.join(choices)}, got {raw!r}")


def env_list(
    env: Mapping[str, str], name: str, default: tuple[str, ...] = (), *, sep: str = ","
) -> tuple[str, ...]:
    """A ``sep``-separated list; blanks around items and empty items are dropped."""
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(sep) if item.strip())


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo}..{hi}"
    if lo is not None:
        return f">= {lo}"
    if hi is not None:
        return f"<= {hi}"
    return ""


def env_file(env: Mapping[str, str], name: str) -> str | None:
    """A path to a file that exists and this process can read, or ``None`` when unset."""
    path = env_optional(env, name)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise ConfigError(name, f"expected a readable file, got {path!r} ({e.strerror})") from e
    return path


def check_tls_files(ca: str | None, cert: str | None, key: str | None) -> None:
    """``REDIS_TLS_CA`` / ``_CERT`` / ``_KEY`` load as OpenSSL will load them at connect time:
    a PEM CA, a PEM certificate and its unencrypted private key (nothing prompts for a
    passphrase: redis-py has no setting for one)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for variable, path, what in (
        ("REDIS_TLS_CA", ca, "a PEM CA certificate"),
        ("REDIS_TLS_CERT", cert, "a PEM certificate"),
    ):
        if path is not None:
            try:
                context.load_verify_locations(cafile=path)
            except ssl.SSLError as e:
                raise ConfigError(variable, f"expected {what}, got {path!r} ({e.reason})") from e
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(cert, key, password=lambda: b"")
        except ssl.SSLError as e:
            raise ConfigError(
                "REDIS_TLS_KEY",
                f"expected the unencrypted PEM private key of REDIS_TLS_CERT, got {key!r} "
                f"({e.reason})",
            ) from e


def check_url(variable: str, url: str, schemes: tuple[str, ...]) -> str:
    """``url`` if its scheme is one of ``schemes`` and its port (when given) is 1..65535.

    The message shows the URL with its password masked.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(variable, f"expected a URL with a port 1..65535, got {shown!r}") from e
    if parts.scheme not in schemes:
        raise ConfigError(variable, f"expected a {'|'.join(schemes)}:// URL, got {shown!r}")
    if port == 0:
        raise ConfigError(variable, f"expected a URL with a port 1..65535, got {shown!r}")
    return url


# --- the shared settings -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CommonSettings:
    """What every worker needs: Redis, partitions, observability and stream-runtime knobs.

    ``redis_url`` may hold a password; ``repr`` shows only the redacted form and
    ``redis_password`` is hidden from ``repr`` altogether.
    """

    redis_url: str = field(default=DEFAULT_REDIS_URL, repr=False)
    redis_cluster: bool = False
    redis_tls_ca: str | None = None
    redis_tls_cert: str | None = None
    redis_tls_key: str | None = None
    redis_username: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    redis_socket_timeout: float = 10.0
    redis_connect_timeout: float = 5.0
    partitions: int = 16
    namespace: str = ""
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9100
    log_level: str = "INFO"
    log_format: LogFormat = "json"
    grace_seconds: float = 10.0
    batch_count: int = 100
    block_ms: int = 1000
    claim_idle_ms: int = 30_000
    max_deliveries: int = 5
    trim_interval_s: float = 10.0
    hard_maxlen: int = 0
    consumer_name: str | None = None
    delete_idle_consumers_ms: int = 3_600_000
    gc_gen0: int = DEFAULT_GC_GEN0  # 0: Python's default thresholds (``lifecycle.tune_gc``)

    def __post_init__(self) -> None:
        register_url_secret(self.redis_url)
        register_secret(self.redis_password)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks (the per-field ones are in the parse helpers)."""
        check_url("REDIS_URL", self.redis_url, REDIS_SCHEMES)
        if self.block_ms >= self.redis_socket_timeout * 1000:
            raise ConfigError(
                "BLOCK_MS",
                f"expected milliseconds below REDIS_SOCKET_TIMEOUT "
                f"({self.redis_socket_timeout:g} s), got '{self.block_ms}'",
            )
        if bool(self.redis_tls_cert) != bool(self.redis_tls_key):
            missing = "REDIS_TLS_KEY" if self.redis_tls_cert else "REDIS_TLS_CERT"
            raise ConfigError(missing, "expected a file path (TLS cert and key go together)")

    @property
    def cluster(self) -> bool:
        """True when Redis is a cluster (``REDIS_CLUSTER`` or a ``redis+cluster`` scheme)."""
        return self.redis_cluster or urlsplit(self.redis_url).scheme.endswith("+cluster")

    @property
    def tls(self) -> bool:
        return urlsplit(self.redis_url).scheme.startswith("rediss") or self.redis_tls_ca is not None

    def keys(self) -> Keys:
        """Key names of this deployment."""
        return Keys(partitions=self.partitions, namespace=self.namespace)

    def redacted(self) -> dict[str, object]:
        """The settings as a loggable mapping: no password anywhere."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "redis_url":
                value = redact_url(value)
            elif name == "redis_password":
                value = None if value is None else "***"
            out[name] = value
        return out

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"CommonSettings({body})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CommonSettings:
        """Read and validate every shared variable (docs/configuration-reference.md lists them)."""
        e = os.environ if env is None else env
        d = field_defaults(cls)
        url = env_str(e, "REDIS_URL", d["redis_url"]) or d["redis_url"]
        socket_timeout = env_float(
            e, "REDIS_SOCKET_TIMEOUT", d["redis_socket_timeout"], lo=0.1, hi=3600
        )
        ca, cert = env_file(e, "REDIS_TLS_CA"), env_file(e, "REDIS_TLS_CERT")
        key = env_file(e, "REDIS_TLS_KEY")
        check_tls_files(ca, cert, key)
        return cls(
            redis_url=url,
            redis_cluster=env_bool(e, "REDIS_CLUSTER", d["redis_cluster"]),
            redis_tls_ca=ca,
            redis_tls_cert=cert,
            redis_tls_key=key,
            redis_username=env_optional(e, "REDIS_USERNAME"),
            redis_password=env_optional(e, "REDIS_PASSWORD"),
            redis_socket_timeout=socket_timeout,
            redis_connect_timeout=env_float(
                e, "REDIS_CONNECT_TIMEOUT", d["redis_connect_timeout"], lo=0.1, hi=3600
            ),
            partitions=env_int(e, "PARTITIONS", d["partitions"], lo=1, hi=4096),
            namespace=env_str(e, "NAMESPACE", d["namespace"]),
            metrics_host=env_str(e, "METRICS_HOST", d["metrics_host"]) or d["metrics_host"],
            # Unset: honcho's/Heroku's per-process PORT, so `make run` gives each worker its own.
            metrics_port=env_int(
                e,
                "METRICS_PORT",
                env_int(e, "PORT", d["metrics_port"], lo=1, hi=65535),
                lo=0,
                hi=65535,
            ),
            log_level=env_choice(e, "LOG_LEVEL", d["log_level"], LOG_LEVELS),
            log_format="console"
            if env_choice(e, "LOG_FORMAT", d["log_format"], ("json", "console")) == "console"
            else "json",
            grace_seconds=env_float(e, "GRACE_SECONDS", d["grace_seconds"], lo=0, hi=3600),
            batch_count=env_int(e, "BATCH_COUNT", d["batch_count"], lo=1, hi=100_000),
            block_ms=env_int(e, "BLOCK_MS", d["block_ms"], lo=1, hi=3_600_000),
            claim_idle_ms=env_int(e, "CLAIM_IDLE_MS", d["claim_idle_ms"], lo=1, hi=86_400_000),
            max_deliveries=env_int(e, "MAX_DELIVERIES", d["max_deliveries"], lo=1, hi=1000),
            trim_interval_s=env_float(e, "TRIM_INTERVAL_S", d["trim_interval_s"], lo=0, hi=86_400),
            hard_maxlen=env_int(e, "HARD_MAXLEN", d["hard_maxlen"], lo=0),
            consumer_name=env_optional(e, "CONSUMER_NAME"),
            delete_idle_consumers_ms=env_int(
                e,
                "DELETE_IDLE_CONSUMERS_MS",
                d["delete_idle_consumers_ms"],
                lo=0,
                hi=30 * 86_400_000,
            ),
            gc_gen0=env_int(e, "GC_GEN0", d["gc_gen0"], lo=0),
        )


def bind_error(
    host_variable: str, port_variable: str, host: str, port: int, error: OSError
) -> ConfigError:
    """The setting to blame when listening on ``host:port`` fails with ``error``.

    A name that does not resolve or an address not on this machine is the host's fault;
    anything else (port busy, privileged) the port's. Raise it from the bind at start, so a
    busy port is one line and exit code 2 like any other invalid setting.
    """
    if isinstance(error, socket.gaierror) or not error.errno:
        reason = error.strerror or str(error)
    else:  # asyncio words its bind errors at length; the errno's own text is enough
        reason = os.strerror(error.errno)
    if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            host_variable, f"expected a local address to listen on, got {host!r} ({reason})"
        )
    return ConfigError(port_variable, f"expected a port free on {host}, got '{port}' ({reason})")


def config_error_line(err: ConfigError) -> str:
    """The one line a process prints when a setting is invalid (secrets masked)."""
    return scrub(f"alphapulse: invalid setting {err.variable}: {err.problem}")


@contextmanager
def exit_on_config_error(stream: TextIO | None = None) -> Iterator[None]:
    """Turn a ``ConfigError`` raised inside into one line on stderr and exit code 2.

    Use in ``main()`` around building the settings::

        with exit_on_config_error():
            settings = MySettings.from_env(os.environ)
    """
    try:
        yield
    except ConfigError as err:
        print(config_error_line(err), file=stream or sys.stderr, flush=True)
        raise SystemExit(2) from None
