"""Settings of the sink, read from the environment once in ``main()``.

=============================  ===============================  ==================================
variable                       default                          meaning
=============================  ===============================  ==================================
``DATABASE_URL``               ``postgresql://postgres@``       PostgreSQL / TimescaleDB to write
                               ``127.0.0.1:5432/alphapulse``
``STORE_TICKS``                ``false``                        also store every tick (``ticks``)
``SINK_BATCH_ROWS``            ``5000``                         flush once this many rows wait
``SINK_FLUSH_MS``              ``500``                          ... or once the oldest waited this
``SINK_LINGER_MS``             ``250``                          a read that comes back short
                                                                waits this long and reads the
                                                                rest before decoding: a bar
                                                                boundary's entries are stored
                                                                after its signals, not amid
                                                                them (0 = decode at once; at
                                                                most ``SINK_FLUSH_MS``)
``SINK_WRITE_METHOD``          ``copy``                         ``copy`` (COPY, ON CONFLICT path
                                                                on a duplicate), ``staging`` or
                                                                ``unnest`` (see ``sink.store``)
``SINK_RETRY_MAX_S``           ``10``                           cap of the reconnect backoff
``SINK_MIGRATE``               ``true``                         apply migrations at start
``RETENTION_TICKS``            ``7d``                           drop ticks older than this
``RETENTION_BARS``             ``0``                            ... bars (``0`` = keep for ever)
``RETENTION_PATTERNS``         ``0``                            ... patterns
``RETENTION_SIGNALS``          ``0``                            ... signals
``RETENTION_INTERVAL_S``       ``3600``                         how often the sink applies them
``SINK_STATS_REFRESH_S``       ``300``                          how often the sink refreshes the
                                                                pre-aggregated outcome statistics
                                                                (``refresh_outcome_stats()``, read
                                                                by ``stats --db`` and the console's
                                                                Patterns page); 0 = never
=============================  ===============================  ==================================

Durations are a number with a unit ``s``, ``m``, ``h``, ``d`` or ``w`` (``90d``); ``0`` turns
retention off.
Plus every shared variable of ``CommonSettings`` (``REDIS_URL``, ``NAMESPACE``, ``BATCH_COUNT``…).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from common.errors import ConfigError
from common.secrets import redact_url, register_secret, register_url_secret
from common.settings import (
    CommonSettings,
    check_url,
    env_bool,
    env_choice,
    env_int,
    env_str,
    field_defaults,
)

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/alphapulse"
DATABASE_SCHEMES = ("postgresql", "postgres")
TABLES = ("ticks", "bars", "patterns", "signals")
WRITE_METHODS = ("copy", "staging", "unnest")  # see sink.store
_DURATION_RE = re.compile(r"^(\d+)\s*([smhdw]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DEFAULT_RETENTION = {"ticks": "7d", "bars": "0", "patterns": "0", "signals": "0"}


def env_duration_s(env: Mapping[str, str], name: str, default: str) -> int:
    """A duration in seconds from ``90d`` / ``12h`` / ``3600`` (``0`` = off)."""
    raw = env.get(name)
    text = (raw if raw is not None and raw.strip() else default).strip().lower()
    m = _DURATION_RE.match(text)
    if m is None:
        raise ConfigError(name, f"expected a duration like 7d, 12h, 30m or 0, got {raw!r}")
    return int(m[1]) * _UNIT_S[m[2]]


def database_url(env: Mapping[str, str]) -> str:
    """``DATABASE_URL``, checked to be a PostgreSQL URL with a valid port; its password is
    registered as a secret (masked in every log line and error message)."""
    url = env_str(env, "DATABASE_URL", DEFAULT_DATABASE_URL) or DEFAULT_DATABASE_URL
    register_url_secret(url)
    check_url("DATABASE_URL", url, DATABASE_SCHEMES)
    register_secret(*parse_qs(urlsplit(url).query).get("password", ()))
    return url


def retention_from_env(env: Mapping[str, str]) -> tuple[dict[str, int], int]:
    """``RETENTION_<TABLE>`` of every table (seconds) and ``RETENTION_INTERVAL_S``, validated.

    Also what validates the ``sink`` section of the live configuration (on a synthesized
    environment, see ``signals.liveconfig``), so start and live changes accept the same values.
    """
    retention = {
        t: env_duration_s(env, f"RETENTION_{t.upper()}", _DEFAULT_RETENTION[t]) for t in TABLES
    }
    interval = field_defaults(SinkSettings)["retention_interval_s"]
    return retention, env_int(env, "RETENTION_INTERVAL_S", interval, lo=1)


@dataclass(frozen=True, slots=True)
class SinkSettings:
    """The sink: shared settings plus the database, batching and retention."""

    common: CommonSettings
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    store_ticks: bool = False
    batch_rows: int = 5000
    flush_ms: int = 500
    linger_ms: int = 250
    write_method: str = "copy"
    retry_max_s: float = 10.0
    migrate: bool = True
    retention_s: Mapping[str, int] = field(default_factory=dict)
    retention_interval_s: int = 3600
    stats_refresh_s: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SinkSettings:
        e = os.environ if env is None else env
        d = field_defaults(cls)
        retention_s, retention_interval_s = retention_from_env(e)
        flush_ms = env_int(e, "SINK_FLUSH_MS", d["flush_ms"], lo=1, hi=3_600_000)
        return cls(
            common=CommonSettings.from_env(e),
            database_url=database_url(e),
            store_ticks=env_bool(e, "STORE_TICKS", d["store_ticks"]),
            batch_rows=env_int(e, "SINK_BATCH_ROWS", d["batch_rows"], lo=1, hi=1_000_000),
            flush_ms=flush_ms,
            linger_ms=env_int(e, "SINK_LINGER_MS", d["linger_ms"], lo=0, hi=flush_ms),
            write_method=env_choice(e, "SINK_WRITE_METHOD", d["write_method"], WRITE_METHODS),
            retry_max_s=float(env_int(e, "SINK_RETRY_MAX_S", int(d["retry_max_s"]), lo=1, hi=3600)),
            migrate=env_bool(e, "SINK_MIGRATE", d["migrate"]),
            retention_s=retention_s,
            retention_interval_s=retention_interval_s,
            stats_refresh_s=env_int(
                e, "SINK_STATS_REFRESH_S", d["stats_refresh_s"], lo=0, hi=86_400 * 30
            ),
        )

    def redacted(self) -> dict[str, object]:
        """Loggable form: no password."""
        out: dict[str, object] = {
            n: getattr(self, n) for n in self.__dataclass_fields__ if n != "common"
        }
        out["database_url"] = redact_url(self.database_url)
        out["common"] = self.common.redacted()
        return out
