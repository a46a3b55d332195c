"""The live configuration document: what it holds, how it is validated, and its API.

One document per namespace, versioned in Redis by ``common.configstore``. It holds what may
change while the pipeline runs::

    {"model": {"threshold": 0.65, ..., "patterns": {"CDLHAMMER": {"kind": "reversal",
               "reliability": 0.6, "weight": 1.0}, ...}, "calibration": {...}},
     "ws":    {"max_connections": 1000, "queue_size": 10000, "resume_max": 100000},
     "sink":  {"retention_s": {"ticks": 604800, "bars": 0, "patterns": 0, "signals": 0},
               "retention_interval_s": 3600}}

* ``model`` — everything ``SIGNALS_MODEL_FILE`` holds, validated by ``model_from_mapping``
  and stored whole (every parameter and pattern), applied by the signals workers per event
  by ``effective_from`` (``signals.versions``);
* ``ws`` — the WebSocket server's limits (``WS_LIVE_LIMITS``), applied to new connections;
* ``sink`` — retention per table and the retention interval, applied on the sink's next
  retention pass.

Each section is validated by the code that validates the same settings at start (the
``env_*`` readers, fed a synthesized environment), so a value refused at start is refused
here, with one ``ConfigError`` naming the document key. What the detectors' checkpoints
depend on (timeframes, patterns, partitions...) is start-time only (``START_TIME_ONLY``).

The API for the CLI and the console's Admin page (``signals.console.adminconfig``):
``load_history``, ``current_document``, ``propose``, ``rollback``,
``save_profile`` / ``load_profile``, ``diff_documents``. Layering: the sink's section is
validated with ``sink.settings.retention_from_env``; the document is the composition of
the stages' live settings, as ``replay`` is the composition of their code.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from common.configstore import (
    ConfigVersion,
    load_versions,
    scored_through,
    write_version,
)
from common.contracts import DEFAULT_RECENT_BARS
from common.errors import ConfigError
from common.names import Keys
from common.redis import AnyRedis
from signals.contract import now_iso
from signals.model import (
    Model,
    ScoringParams,
    load_model,
    model_from_mapping,
    model_to_mapping,
)
from signals.settings import WS_LIVE_LIMITS, ws_limits_from_env
from sink.settings import TABLES, retention_from_env

__all__ = [
    "START_TIME_ONLY",
    "ConfigVersion",
    "apply_assignments",
    "current_document",
    "diff_documents",
    "diff_lines",
    "diff_versions",
    "list_profiles",
    "load_history",
    "load_profile",
    "propose",
    "rollback",
    "save_profile",
    "seed_document",
    "validate_document",
]

SECTIONS = ("model", "ws", "sink")
# Key (as given to ``config set``) -> the start-time variable that holds it, and who reads it.
START_TIME_ONLY: dict[str, tuple[str, str]] = {
    "timeframes": ("TIMEFRAMES", "detectors"),
    "patterns": ("PATTERNS", "detectors"),
    "partitions": ("PARTITIONS", "every worker"),
    "allowed_lateness_ms": ("ALLOWED_LATENESS_MS", "detectors"),
    "ema_period": ("EMA_PERIOD", "detectors"),
    "cooldown_history": ("COOLDOWN_BARS", "detectors and signals"),
    "outcome_horizons": ("OUTCOME_HORIZONS", "detectors"),
    "outcome_cost_bps": ("OUTCOME_COST_BPS", "detectors"),
    "ws.max_message": ("SIGNALS_WS_MAX_MESSAGE", "signals-ws"),
    "ws.host": ("SIGNALS_WS_HOST", "signals-ws"),
    "ws.port": ("SIGNALS_WS_PORT", "signals-ws"),
    "ws.tokens": ("SIGNALS_WS_TOKENS", "signals-ws"),
}
_ENV_ALIASES = {var.lower(): key for key, (var, _) in START_TIME_ONLY.items()}
_PARAMS = frozenset(f.name for f in fields(ScoringParams))


def start_time_only(key: str) -> ConfigError | None:
    """The refusal for a key that only a restart can change, or None."""
    k = _ENV_ALIASES.get(key.lower(), key.lower())
    if k not in START_TIME_ONLY:
        return None
    var, who = START_TIME_ONLY[k]
    return ConfigError(
        key,
        f"start-time only (the detectors' checkpoints or the server's socket depend on it): "
        f"set {var} in the environment of the {who} and restart them; nothing changed",
    )


# --- validation ---------------------------------------------------------------------------
def _section(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(name, "must be a table")
    return value


def _validate_model(section: Mapping[str, Any], recent_bars: int) -> dict[str, Any]:
    model = model_from_mapping(section, "model")
    if model.params.cooldown_bars > recent_bars:
        raise ConfigError(
            "model.cooldown_bars",
            f"{model.params.cooldown_bars} looks further back than the {recent_bars} bars of "
            "history the detectors put in each pattern event (COOLDOWN_BARS, start-time only)",
        )
    return model_to_mapping(model)


def _as_env(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return repr(value)  # refused by the readers: they take integers / durations only
    return str(value)


def _validate_ws(section: Mapping[str, Any]) -> dict[str, int]:
    for key in section:
        refusal = start_time_only(f"ws.{key}")
        if refusal is not None:
            raise refusal
        if key not in WS_LIVE_LIMITS:
            raise ConfigError(f"ws.{key}", f"unknown key (live: {', '.join(WS_LIVE_LIMITS)})")
    env = {WS_LIVE_LIMITS[k][0]: _as_env(v) for k, v in section.items()}
    names = {var: f"ws.{k}" for k, (var, _) in WS_LIVE_LIMITS.items()}
    try:
        return ws_limits_from_env(env)
    except ConfigError as e:
        raise ConfigError(names.get(e.variable, e.variable), e.problem) from None


def _validate_sink(section: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(section) - {"retention_s", "retention_interval_s"}
    if unknown:
        raise ConfigError(f"sink.{sorted(unknown)[0]}", "unknown key")
    retention = section.get("retention_s", {})
    if not isinstance(retention, Mapping):
        raise ConfigError("sink.retention_s", "must be a table of table -> duration")
    for table in retention:
        if table not in TABLES:
            raise ConfigError(f"sink.retention_s.{table}", f"unknown table (one of {TABLES})")
    env = {f"RETENTION_{t.upper()}": _as_env(v) for t, v in retention.items()}
    if "retention_interval_s" in section:
        env["RETENTION_INTERVAL_S"] = _as_env(section["retention_interval_s"])
    names = {f"RETENTION_{t.upper()}": f"sink.retention_s.{t}" for t in TABLES}
    names["RETENTION_INTERVAL_S"] = "sink.retention_interval_s"
    try:
        seconds, interval = retention_from_env(env)
    except ConfigError as e:
        raise ConfigError(names.get(e.variable, e.variable), e.problem) from None
    return {"retention_s": seconds, "retention_interval_s": interval}


def validate_document(
    doc: Mapping[str, Any], *, recent_bars: int = DEFAULT_RECENT_BARS
) -> dict[str, Any]:
    """The canonical, whole document (defaults filled in), or ``ConfigError`` naming the key."""
    if not isinstance(doc, Mapping):
        raise ConfigError("config", "the document must be a table")
    for key in doc:
        if key in SECTIONS:
            continue
        raise start_time_only(key) or ConfigError(
            key, f"unknown key (live sections: {', '.join(SECTIONS)})"
        )
    return {
        "model": _validate_model(_section(doc, "model"), recent_bars),
        "ws": _validate_ws(_section(doc, "ws")),
        "sink": _validate_sink(_section(doc, "sink")),
    }


def seed_document(env: Mapping[str, str], model: Model) -> dict[str, Any]:
    """Version 1 of a namespace: the process's start-time settings (model from
    ``SIGNALS_MODEL_FILE``, WebSocket limits and retention from the environment)."""
    retention, interval = retention_from_env(env)
    return validate_document(
        {
            "model": model_to_mapping(model),
            "ws": ws_limits_from_env(env),
            "sink": {"retention_s": retention, "retention_interval_s": interval},
        },
        recent_bars=max(model.params.cooldown_bars, DEFAULT_RECENT_BARS),
    )


# --- editing --------------------------------------------------------------------------------
def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _path_of(key: str) -> list[str]:
    refusal = start_time_only(key)
    if refusal is not None:
        raise refusal
    parts = key.split(".")
    if parts[0] in _PARAMS or parts[0] in ("patterns", "calibration"):
        parts = ["model", *parts]  # shorthand: threshold=0.7, patterns.CDLHAMMER.weight=1.2
    if parts[0] not in SECTIONS or len(parts) < 2 or not all(parts):
        raise ConfigError(key, f"unknown key (live: {', '.join(s + '.*' for s in SECTIONS)})")
    return parts


def apply_assignments(doc: Mapping[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """``["threshold=0.7", "ws.max_connections=500"]`` applied to a copy of ``doc``
    (values are JSON where they parse as JSON, else strings such as ``14d``; ``null``
    removes a key, e.g. ``model.calibration=null``). Not validated here."""
    out: dict[str, Any] = copy.deepcopy(dict(doc))
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(item, "expected KEY=VALUE")
        path = _path_of(key.strip())
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        value = _parse_value(raw.strip())
        if value is None:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return out


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys -> leaf values (lists are leaves)."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def diff_documents(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, value in a, value in b)`` for every key that differs (None = absent)."""
    fa, fb = flatten(a), flatten(b)
    return [
        (k, fa.get(k), fb.get(k)) for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)
    ]


def diff_versions(
    history: Sequence[ConfigVersion], a: int | None = None, b: int | None = None
) -> tuple[int, int, list[tuple[str, Any, Any]]]:
    """``(a, b, changes)`` between versions ``a`` and ``b`` of ``history``. Defaults: ``b``
    is ``a + 1`` (or the newest), ``a`` is ``b - 1``; a missing version is a ``ConfigError``."""
    by_number = {v.version: v for v in history}
    newest = max(by_number, default=0)
    b = b if b is not None else (a + 1 if a is not None else newest)
    a = a if a is not None else b - 1
    for n in (a, b):
        if n not in by_number:
            raise ConfigError("version", f"no version {n} (newest: {newest})")
    return a, b, diff_documents(by_number[a].doc, by_number[b].doc)


def diff_lines(a: int, b: int, changes: Sequence[tuple[str, Any, Any]]) -> list[str]:
    """What ``config diff`` prints: ``key: old -> new`` per change (JSON values)."""
    if not changes:
        return [f"config: versions {a} and {b} hold the same document"]
    return [f"{key}: {json.dumps(old)} -> {json.dumps(new)}" for key, old, new in changes]


# --- the API --------------------------------------------------------------------------------
async def load_history(redis: AnyRedis, keys: Keys) -> list[ConfigVersion]:
    """Every version of the namespace's configuration, oldest first."""
    return await load_versions(redis, keys)


async def current_document(
    redis: AnyRedis, keys: Keys, env: Mapping[str, str]
) -> tuple[int, dict[str, Any]]:
    """(current version, its document); version 0 and the start-time seed of ``env``
    (``SIGNALS_MODEL_FILE``, limits, retention) when the namespace has no configuration."""
    history = await load_history(redis, keys)
    if history:
        return history[-1].version, dict(history[-1].doc)
    return 0, seed_document(env, load_model(env.get("SIGNALS_MODEL_FILE")))


async def propose(
    redis: AnyRedis,
    keys: Keys,
    doc: Mapping[str, Any],
    *,
    who: str,
    comment: str = "",
    effective_from: int | None = None,
    expected_version: int,
    recent_bars: int = DEFAULT_RECENT_BARS,
) -> ConfigVersion:
    """Validate ``doc`` and write it as the version after ``expected_version``.

    ``effective_from`` (epoch ms of event time, compared with bar open times) defaults to the
    next whole minute after the newest bar the signals stage has scored. Raises
    ``ConfigError`` (invalid: names the key) or ``ConfigRefused`` (a concurrent change, or an
    ``effective_from`` already scored past); either way nothing changed."""
    canonical = validate_document(doc, recent_bars=recent_bars)
    return await write_version(
        redis,
        keys,
        canonical,
        who=who,
        at=now_iso(),
        comment=comment,
        effective_from=effective_from,
        expected_version=expected_version,
    )


async def rollback(
    redis: AnyRedis,
    keys: Keys,
    version: int,
    *,
    who: str,
    comment: str = "",
    effective_from: int | None = None,
    expected_version: int | None = None,
) -> ConfigVersion:
    """A new version holding version ``version``'s document (history stays immutable)."""
    history = await load_history(redis, keys)
    target = next((v for v in history if v.version == version), None)
    if target is None:
        raise ConfigError("version", f"no version {version} (newest: {len(history)})")
    current = history[-1].version if history else 0
    return await write_version(
        redis,
        keys,
        target.doc,
        who=who,
        at=now_iso(),
        comment=comment or f"rollback to version {version}",
        effective_from=effective_from,
        expected_version=current if expected_version is None else expected_version,
    )


async def save_profile(redis: AnyRedis, keys: Keys, name: str, doc: Mapping[str, Any]) -> None:
    """Keep ``doc`` (already validated) under ``name``."""
    await redis.hset(keys.config_profiles, name, json.dumps(doc, sort_keys=True))


async def load_profile(redis: AnyRedis, keys: Keys, name: str) -> dict[str, Any]:
    """The document saved as ``name``; ``ConfigError`` when there is none."""
    raw = await redis.hget(keys.config_profiles, name)
    if raw is None:
        raise ConfigError("profile", f"no profile named {name!r}")
    doc: dict[str, Any] = json.loads(raw)
    return doc


async def list_profiles(redis: AnyRedis, keys: Keys) -> list[str]:
    """The names of the saved profiles, sorted."""
    names: Any = await redis.hkeys(keys.config_profiles)
    return sorted(n.decode() if isinstance(n, bytes) else str(n) for n in names)


async def default_effective_from(redis: AnyRedis, keys: Keys) -> int:
    """What ``propose`` would pick now: the next whole minute after the scored mark."""
    scored = await scored_through(redis, keys)
    return 0 if scored is None else (scored // 60_000 + 1) * 60_000
