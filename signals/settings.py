"""Settings of the signals worker and of the WebSocket server, read from the environment once.

=============================  ==========  ======================================================
variable                       default     meaning
=============================  ==========  ======================================================
``SIGNALS_MODEL_FILE``         (none)      JSON/TOML overrides of the scoring model
``COOLDOWN_BARS``              ``5``       history in each pattern event (the detectors' setting);
                                           a model ``cooldown_bars`` above it stops the start
``SIGNALS_ID_RETENTION_S``     ``259200``  how long appended ids are remembered for dedupe (3 d)
``SIGNALS_STREAM_MAXLEN``      ``0``       approximate cap of ``signals`` (0 = none; last resort)
``SIGNALS_PUBLISH``            ``true``    also PUBLISH each new signal on ``signals:<ex>:<sym>``
``SIGNALS_EMIT_WARMING``       ``false``   also emit signals of events whose features are all
                                           still warming up (null); ``replay`` reads it too
``SIGNALS_APPEND_SLICE_MS``    ``2``       append what is scored after about this much scoring
                                           work, not only once per read (0 = once per read)
``SIGNALS_STREAM_RETENTION_S`` ``86400``   keep ``signals`` entries this long for group-less
                                           readers (WS resume, tail); older ones are trimmed
                                           once every consumer group has acked them (0 = never)
``SIGNALS_WS_HOST``            ``0.0.0.0`` WebSocket server address
``SIGNALS_WS_PORT``            ``8765``    WebSocket server port (0 = any free port)
``SIGNALS_WS_TOKENS``          (required)  comma-separated bearer tokens accepted by the server
``SIGNALS_WS_MAX_CONNECTIONS`` ``1000``    connections beyond this are closed with 1013
``SIGNALS_WS_QUEUE``           ``10000``   per-client send queue (frames); a full queue cuts it
``SIGNALS_WS_MAX_MESSAGE``     ``65536``   largest client message in bytes (1009 beyond)
``SIGNALS_WS_RESUME_MAX``      ``100000``  most entries replayed to one resuming client
``SIGNALS_WS_LOG_LINES``       ``20``      connection log lines per kind (connected, refused:
                                           auth…) per interval; the rest is counted and
                                           summarised in one line (``signals.ws_log``)
``SIGNALS_WS_LOG_INTERVAL_S``  ``10``      that interval, in seconds
=============================  ==========  ======================================================

Plus every shared variable of ``CommonSettings`` (``REDIS_URL``, ``NAMESPACE``, ``BATCH_COUNT``…).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import ConfigError
from common.secrets import register_secret
from common.settings import (
    CommonSettings,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_optional,
    env_str,
    field_defaults,
    recent_bars_from_env,
)
from signals.model import Model, load_model


@dataclass(frozen=True, slots=True)
class SignalsSettings:
    """The signals worker: shared settings plus the scoring model and dedupe bounds."""

    common: CommonSettings
    model: Model
    id_retention_ms: int = 3 * 86_400_000
    stream_maxlen: int = 0
    publish: bool = True
    stream_retention_ms: int = 86_400_000
    emit_warming: bool = False
    append_slice_ms: int = 2
    config_seed: Mapping[str, Any] | None = None
    """Version 1 of the live configuration if the namespace has none (default: ``model``
    and the environment's WebSocket and retention settings; ``signals.liveconfig``)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SignalsSettings:
        e = os.environ if env is None else env
        d = field_defaults(cls)
        model = load_model(env_optional(e, "SIGNALS_MODEL_FILE"))
        recent_bars = recent_bars_from_env(e)
        if model.params.cooldown_bars > recent_bars:
            raise ConfigError(
                "SIGNALS_MODEL_FILE",
                f"cooldown_bars {model.params.cooldown_bars} looks further back than the "
                f"{recent_bars} bars of history the detectors put in each pattern event "
                "(COOLDOWN_BARS); raise COOLDOWN_BARS for detectors and signals alike",
            )
        # The live configuration's section validators import this module: import late.
        from signals.liveconfig import seed_document  # noqa: PLC0415

        return cls(
            common=CommonSettings.from_env(e),
            model=model,
            config_seed=seed_document(e, model),
            id_retention_ms=_ms_from_env(e, "SIGNALS_ID_RETENTION_S", "id_retention_ms"),
            stream_maxlen=env_int(e, "SIGNALS_STREAM_MAXLEN", d["stream_maxlen"], lo=0),
            publish=env_bool(e, "SIGNALS_PUBLISH", d["publish"]),
            stream_retention_ms=_ms_from_env(
                e, "SIGNALS_STREAM_RETENTION_S", "stream_retention_ms"
            ),
            emit_warming=emit_warming_from_env(e),
            append_slice_ms=env_int(
                e, "SIGNALS_APPEND_SLICE_MS", d["append_slice_ms"], lo=0, hi=60_000
            ),
        )


def emit_warming_from_env(env: Mapping[str, str]) -> bool:
    """``SIGNALS_EMIT_WARMING`` (the live worker and ``replay`` must agree on it)."""
    return env_bool(env, "SIGNALS_EMIT_WARMING", field_defaults(SignalsSettings)["emit_warming"])


def _ms_from_env(env: Mapping[str, str], name: str, field: str) -> int:
    """A retention given in seconds (``name``) as the milliseconds of ``field``."""
    default_s = field_defaults(SignalsSettings)[field] // 1000
    return 1000 * env_int(env, name, default_s, lo=0, hi=10 * 365 * 86_400)


# The WebSocket limits the live configuration may change (``signals.liveconfig``, section
# ``ws``): key (a ``WsSettings`` field, whose default applies) -> (variable, lowest value).
# Read by ``ws_limits_from_env`` both at start and, on a synthesized environment, when a
# configuration document is validated.
WS_LIVE_LIMITS: dict[str, tuple[str, int]] = {
    "max_connections": ("SIGNALS_WS_MAX_CONNECTIONS", 1),
    "queue_size": ("SIGNALS_WS_QUEUE", 1),
    "resume_max": ("SIGNALS_WS_RESUME_MAX", 1),
}


def ws_limits_from_env(env: Mapping[str, str]) -> dict[str, int]:
    """The live-changeable WebSocket limits, validated (``ConfigError`` names the variable)."""
    d = field_defaults(WsSettings)
    return {key: env_int(env, var, d[key], lo=lo) for key, (var, lo) in WS_LIVE_LIMITS.items()}


@dataclass(frozen=True, slots=True)
class WsSettings:
    """The WebSocket fan-out server."""

    common: CommonSettings
    tokens: frozenset[str]
    host: str = "0.0.0.0"
    port: int = 8765
    max_connections: int = 1000
    queue_size: int = 10_000
    max_message: int = 65_536
    resume_max: int = 100_000
    log_lines: int = 20
    log_interval_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WsSettings:
        e = os.environ if env is None else env
        d = field_defaults(cls)
        tokens = frozenset(env_list(e, "SIGNALS_WS_TOKENS"))
        register_secret(*tokens)
        if not tokens:
            raise ConfigError("SIGNALS_WS_TOKENS", "expected at least one token (comma-separated)")
        return cls(
            common=CommonSettings.from_env(e),
            tokens=tokens,
            host=env_str(e, "SIGNALS_WS_HOST", d["host"]) or d["host"],
            port=env_int(e, "SIGNALS_WS_PORT", d["port"], lo=0, hi=65535),
            max_message=env_int(e, "SIGNALS_WS_MAX_MESSAGE", d["max_message"], lo=256),
            **ws_limits_from_env(e),
            log_lines=env_int(e, "SIGNALS_WS_LOG_LINES", d["log_lines"], lo=0),
            log_interval_s=env_float(
                e, "SIGNALS_WS_LOG_INTERVAL_S", d["log_interval_s"], lo=0.1, hi=86_400
            ),
        )

    def __repr__(self) -> str:  # never log the tokens
        return f"WsSettings(host={self.host!r}, port={self.port}, tokens=<{len(self.tokens)}>)"
