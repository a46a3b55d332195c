"""The admin's live configuration API: view, diff, change and roll back (docs/console.md).

::

    GET  /api/admin/config[?version=N]     the current (or version N's) version and document
    GET  /api/admin/config/history         every version (without its document), oldest first
    GET  /api/admin/config/diff?a=&b=      what differs (the same diff ``config diff`` prints)
    POST /api/admin/config                 {"set": ["threshold=0.7"], "doc": {...}, "comment",
                                            "effective_from", "expected_version"}
    POST /api/admin/config/rollback        {"version", "expected_version", "comment", ...}
    GET  /api/admin/config/profiles        the saved profiles' names
    POST /api/admin/config/profiles        {"action": "save"|"load", "name", ...}

A thin shell over the functions ``alphapulse config`` calls (``signals.liveconfig``): the
same validation, the same compare-and-set, the same diff. A change names the version it was
made from (``expected_version``, required): when another change came first the answer is
``409`` and nothing is written. An invalid change is ``400`` with the CLI's one line naming
the key. The author is ``console:<user>``. The middleware keeps these routes to the admin
role and checks the CSRF token of state-changing requests. Like the CLI, the settings a
namespace without a configuration starts from (``SIGNALS_MODEL_FILE``, ``COOLDOWN_BARS``…)
come from this process's environment.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from common.configstore import ConfigRefused, ConfigVersion, document_fingerprint, scored_through
from common.errors import ConfigError
from common.logging import get_logger
from common.settings import recent_bars_from_env
from signals.configcli import parse_event_time
from signals.console.state import REDIS, SETTINGS, USER
from signals.liveconfig import (
    apply_assignments,
    current_document,
    default_effective_from,
    diff_lines,
    diff_versions,
    list_profiles,
    load_history,
    load_profile,
    propose,
    rollback,
    save_profile,
    validate_document,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_COMMENT = 500
MAX_PROFILE_NAME = 64


def _error(status: int, doc: dict[str, Any]) -> web.Response:
    return web.json_response(doc, status=status)


def answered(handler: Handler) -> Handler:
    """``ConfigError`` -> 400 (one line naming the key), ``ConfigRefused`` -> 409."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ConfigError as e:
            return _error(400, {"error": f"invalid {e.variable}: {e.problem}", "key": e.variable})
        except ConfigRefused as e:
            return _error(409, {"error": f"refused: {e}", "reason": e.reason, "value": e.value})

    return run


# --- request parsing (pure) ------------------------------------------------------------------
def _int(value: Any, key: str, *, lo: int = 0) -> int:
    if isinstance(value, bool):
        raise ConfigError(key, f"expected an integer >= {lo}, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected an integer >= {lo}, got {value!r}") from None
    if number < lo or (isinstance(value, float) and value != number):
        raise ConfigError(key, f"expected an integer >= {lo}, got {value!r}")
    return number


def _optional_int(value: Any, key: str) -> int | None:
    return None if value is None or value == "" else _int(value, key)


def effective_from_of(body: Mapping[str, Any]) -> int | None:
    """``effective_from``: absent/empty (the default), epoch ms, or an ISO time (UTC)."""
    raw = body.get("effective_from")
    if raw is None or raw == "":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return _int(raw, "effective_from")
    try:
        return parse_event_time(str(raw))
    except ConfigError as e:
        raise ConfigError("effective_from", e.problem) from None


def comment_of(body: Mapping[str, Any]) -> str:
    comment = body.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise ConfigError("comment", f"expected text of at most {MAX_COMMENT} characters")
    return " ".join(comment.split())  # one line in the history


def assignments_of(body: Mapping[str, Any]) -> list[str]:
    """``set``: a list of ``KEY=VALUE`` (or one text, a setting per line); blanks skipped."""
    raw = body.get("set") or []
    items = raw.splitlines() if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ConfigError("set", "expected a list of KEY=VALUE settings")
    return [i.strip() for i in items if i.strip()]


def profile_name_of(body: Mapping[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_PROFILE_NAME:
        raise ConfigError("name", f"expected a profile name of 1..{MAX_PROFILE_NAME} characters")
    if not name.isprintable():
        raise ConfigError("name", "expected printable characters")
    return name.strip()


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ConfigError("body", "expected a JSON object") from None
    if not isinstance(body, dict):
        raise ConfigError("body", "expected a JSON object")
    return body


def _expected(body: Mapping[str, Any]) -> int:
    if body.get("expected_version") is None:
        raise ConfigError(
            "expected_version", "required: the version the change was made from (compare-and-set)"
        )
    return _int(body["expected_version"], "expected_version")


def _who(request: web.Request) -> str:
    return f"console:{request[USER]}"


def _summary(v: ConfigVersion) -> dict[str, Any]:
    out = v.to_dict()
    del out["doc"]
    return out


# --- handlers --------------------------------------------------------------------------------
async def show(request: web.Request) -> web.Response:
    redis, keys = request.app[REDIS], request.app[SETTINGS].common.keys()
    history = await load_history(redis, keys)
    wanted = _optional_int(request.query.get("version"), "version")
    newest = history[-1].version if history else 0
    if wanted is not None:
        found = next((v for v in history if v.version == wanted), None)
        if found is None:
            raise ConfigError("version", f"no version {wanted} (newest: {newest})")
        out = found.to_dict()
    elif history:
        out = history[-1].to_dict()
    else:
        _, seed = await current_document(redis, keys, os.environ)
        out = {
            "version": 0,
            "effective_from": 0,
            "fingerprint": document_fingerprint(seed),
            "who": "",
            "at": "",
            "comment": "no configuration yet: the start-time settings (a change writes version 1)",
            "doc": seed,
        }
    last_from = history[-1].effective_from if history else 0
    out["current"] = newest
    out["scored_through"] = await scored_through(redis, keys)
    out["next_effective_from"] = max(await default_effective_from(redis, keys), last_from)
    return web.json_response(out)


async def history(request: web.Request) -> web.Response:
    versions = await load_history(request.app[REDIS], request.app[SETTINGS].common.keys())
    return web.json_response(
        {
            "versions": [_summary(v) for v in versions],
            "current": versions[-1].version if versions else 0,
        }
    )


async def diff(request: web.Request) -> web.Response:
    versions = await load_history(request.app[REDIS], request.app[SETTINGS].common.keys())
    a, b, changes = diff_versions(
        versions,
        _optional_int(request.query.get("a"), "a"),
        _optional_int(request.query.get("b"), "b"),
    )
    return web.json_response(
        {
            "a": a,
            "b": b,
            "changes": [{"key": k, "old": old, "new": new} for k, old, new in changes],
            "lines": diff_lines(a, b, changes),
        }
    )


async def _written(request: web.Request, v: ConfigVersion, action: str) -> web.Response:
    get_logger("console").info(
        "config_changed",
        action=action,
        user=request[USER],
        version=v.version,
        fingerprint=v.fingerprint,
        effective_from=v.effective_from,
    )
    return web.json_response(_summary(v))


async def _propose(
    request: web.Request, doc: Mapping[str, Any], body: Mapping[str, Any]
) -> ConfigVersion:
    return await propose(
        request.app[REDIS],
        request.app[SETTINGS].common.keys(),
        doc,
        who=_who(request),
        comment=comment_of(body),
        effective_from=effective_from_of(body),
        expected_version=_expected(body),
        recent_bars=recent_bars_from_env(os.environ),
    )


async def change(request: web.Request) -> web.Response:
    body = await _body(request)
    settings = assignments_of(body)
    doc = body.get("doc")
    if doc is None:
        if not settings:
            raise ConfigError("set", "nothing to change: give KEY=VALUE settings or a document")
        _, doc = await current_document(
            request.app[REDIS], request.app[SETTINGS].common.keys(), os.environ
        )
    elif not isinstance(doc, dict):
        raise ConfigError("doc", "expected a JSON object with sections model, ws, sink")
    v = await _propose(request, apply_assignments(doc, settings), body)
    return await _written(request, v, "set")


async def roll_back(request: web.Request) -> web.Response:
    body = await _body(request)
    v = await rollback(
        request.app[REDIS],
        request.app[SETTINGS].common.keys(),
        _int(body.get("version"), "version", lo=1),
        who=_who(request),
        comment=comment_of(body),
        effective_from=effective_from_of(body),
        expected_version=_expected(body),
    )
    return await _written(request, v, "rollback")


async def profiles(request: web.Request) -> web.Response:
    names = await list_profiles(request.app[REDIS], request.app[SETTINGS].common.keys())
    return web.json_response({"profiles": names})


async def profile(request: web.Request) -> web.Response:
    body = await _body(request)
    redis, keys = request.app[REDIS], request.app[SETTINGS].common.keys()
    name = profile_name_of(body)
    action = body.get("action")
    if action == "save":
        version, doc = await current_document(redis, keys, os.environ)
        await save_profile(redis, keys, name, validate_document(doc))
        get_logger("console").info("config_profile_saved", user=request[USER], name=name)
        return web.json_response({"saved": name, "from_version": version})
    if action == "load":
        v = await _propose(request, await load_profile(redis, keys, name), body)
        return await _written(request, v, "profile load")
    raise ConfigError("action", f"expected save or load, got {action!r}")


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/api/admin/config", answered(show))
    r.add_post("/api/admin/config", answered(change))
    r.add_get("/api/admin/config/history", answered(history))
    r.add_get("/api/admin/config/diff", answered(diff))
    r.add_post("/api/admin/config/rollback", answered(roll_back))
    r.add_get("/api/admin/config/profiles", answered(profiles))
    r.add_post("/api/admin/config/profiles", answered(profile))
