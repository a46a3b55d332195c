"""``alphapulse config``: look at and change the live configuration (``signals.liveconfig``).

::

    alphapulse config show [--version N] [--json]
    alphapulse config set KEY=VALUE... [--comment C] [--effective-from T] [--expect-version N]
    alphapulse config load FILE            (JSON or TOML: sections model, ws, sink)
    alphapulse config load --model FILE    (a SIGNALS_MODEL_FILE, e.g. from calibrate)
    alphapulse config diff [A] [B]         (default: the previous version and the current one)
    alphapulse config history [--json]     (--json: the file ``replay --config-history`` reads)
    alphapulse config rollback N           (a new version with version N's document)
    alphapulse config profile save NAME | profile load NAME

Every change is validated first (one line naming the key, exit 2, nothing changed) and then
written by compare-and-set on the version read (a concurrent change: exit 1, nothing
changed). ``--effective-from`` takes epoch ms or an ISO time of *event* time; by default a
change applies from the next whole minute after the newest bar the signals stage scored.
Settings (``REDIS_URL``, ``NAMESPACE``, ``SIGNALS_MODEL_FILE`` for a namespace that has no
configuration yet, ``COOLDOWN_BARS``) come from the environment like the workers'.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from common.configstore import ConfigRefused, ConfigVersion, scored_through
from common.errors import ConfigError
from common.names import Keys
from common.redis import AnyRedis, redis_from_settings
from common.settings import CommonSettings, recent_bars_from_env
from signals.contract import iso_utc_ms
from signals.liveconfig import (
    apply_assignments,
    current_document,
    default_effective_from,
    diff_lines,
    diff_versions,
    load_history,
    load_profile,
    propose,
    rollback,
    save_profile,
    validate_document,
)
from signals.model import read_table_file

PROG = "alphapulse config"
Job = Callable[[AnyRedis, Keys, argparse.Namespace], Awaitable[int]]


def parse_event_time(raw: str) -> int:
    """``--effective-from``: epoch milliseconds, or an ISO-8601 time (UTC unless it says)."""
    text = raw.strip()
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ConfigError("--effective-from", f"expected epoch ms or ISO time, got {raw!r}") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _who(args: argparse.Namespace) -> str:
    return str(args.who or f"{getpass.getuser()}@{socket.gethostname()}")


def _line(v: ConfigVersion) -> str:
    comment = f"\t{v.comment}" if v.comment else ""
    return (
        f"v{v.version}\t{v.fingerprint}\tfrom {iso_utc_ms(v.effective_from)}"
        f"\t{v.at}\t{v.who}{comment}"
    )


async def _current(redis: AnyRedis, keys: Keys) -> tuple[int, Mapping[str, Any]]:
    """(current version, its document); version 0 and the start-time seed when none."""
    return await current_document(redis, keys, os.environ)


async def _write(
    redis: AnyRedis, keys: Keys, args: argparse.Namespace, doc: Mapping[str, Any], base: int
) -> int:
    expected = base if args.expect_version is None else args.expect_version
    effective = None if args.effective_from is None else parse_event_time(args.effective_from)
    v = await propose(
        redis,
        keys,
        doc,
        who=_who(args),
        comment=args.comment or "",
        effective_from=effective,
        expected_version=expected,
        recent_bars=recent_bars_from_env(os.environ),
    )
    print(f"config: version {v.version} ({v.fingerprint}) from {iso_utc_ms(v.effective_from)}")
    return 0


async def _show(redis: AnyRedis, keys: Keys, args: argparse.Namespace) -> int:
    history = await load_history(redis, keys)
    if not history:
        print("config: no configuration yet (the first signals worker writes version 1)")
        return 0
    v = next((h for h in history if h.version == args.version), None) if args.version else None
    v = v or history[-1]
    if args.json:
        print(json.dumps(v.to_dict(), indent=2, sort_keys=True))
        return 0
    print(_line(v))
    scored = await scored_through(redis, keys)
    if scored is not None:
        print(f"# scored through bar open time {iso_utc_ms(scored)}")
    start = max(await default_effective_from(redis, keys), history[-1].effective_from)
    print(f"# a change now would apply from {iso_utc_ms(start)} (event time)")
    print(json.dumps(v.doc, indent=2, sort_keys=True))
    return 0


async def _set(redis: AnyRedis, keys: Keys, args: argparse.Namespace) -> int:
    version, doc = await _current(redis, keys)
    return await _write(redis, keys, args, apply_assignments(doc, args.assignments), version)


async def _load(redis: AnyRedis, keys: Keys, args: argparse.Namespace) -> int:
    version, doc = await _current(redis, keys)
    table = read_table_file(args.file, "FILE")
    if args.model:  # a SIGNALS_MODEL_FILE (e.g. from alphapulse calibrate) as the model
        return await _write(redis, keys, args, {**doc, "model": table}, version)
    return await _write(redis, keys, args, table, version)


async def _diff(redis: AnyRedis, keys: Keys, args: argparse.Namespace) -> int:
    a, b, changes = diff_versions(await load_history(redis, keys), args.a, args.b)
    print("\n".join(diff_lines(a, b, changes)))
    return 0


async def _history(redis: AnyRedis, keys: Keys, args: argparse.Namespace) -> int:
    history = await load_history(redis, keys)
    if args.json:
        print(json.dumps([v.to_dict() for v in history], indent=1, sort_keys=True))
    else:
        for v in history:
            print(_line(v))
    return 0


async def _rollback(redis: AnyRedis, keys: Keys, args: argparse.Namespace) -> int:
    effective = None if args.effective_from is None else parse_event_time(args.effective_from)
    v = await rollback(
        redis,
        keys,
        args.version,
        who=_who(args),
        comment=args.comment or "",
        effective_from=effective,
        expected_version=args.expect_version,
    )
    print(f"config: version {v.version} ({v.fingerprint}) from {iso_utc_ms(v.effective_from)}")
    return 0


async def _profile(redis: AnyRedis, keys: Keys, args: argparse.Namespace) -> int:
    version, doc = await _current(redis, keys)
    if args.action == "save":
        await save_profile(redis, keys, args.name, validate_document(doc))
        print(f"config: profile {args.name!r} saved from version {version}")
        return 0
    return await _write(redis, keys, args, await load_profile(redis, keys, args.name), version)


def _run(args: argparse.Namespace, job: Job) -> int:
    try:
        settings = CommonSettings.from_env(os.environ)
    except ConfigError as e:
        print(f"{PROG}: invalid setting {e.variable}: {e.problem}", file=sys.stderr)
        return 2

    async def go() -> int:
        redis = redis_from_settings(settings)
        try:
            return await job(redis, settings.keys(), args)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    except ConfigError as e:
        print(f"{PROG}: invalid {e.variable}: {e.problem}", file=sys.stderr)
        return 2
    except ConfigRefused as e:
        print(f"{PROG}: refused: {e}", file=sys.stderr)
        return 1


def _change_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--comment", default="", help="why (kept in the history)")
    p.add_argument(
        "--effective-from",
        default=None,
        help="event time it applies from: epoch ms or ISO (default: next whole minute after "
        "the newest bar scored)",
    )
    p.add_argument(
        "--expect-version",
        type=int,
        default=None,
        help="refuse unless this is still the current version (default: the one read)",
    )
    p.add_argument("--who", default=None, help="author (default: user@host)")


def register(sub: Any) -> None:
    """Entry point of ``alphapulse config`` (group ``alphapulse.commands``)."""
    p = sub.add_parser("config", help="show, change, diff, roll back the live configuration")
    cmds = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = cmds.add_parser("show", help="the current (or --version N) document")
    show.add_argument("--version", type=int, default=None)
    show.add_argument("--json", action="store_true", help="the version as one JSON object")
    show.set_defaults(func=lambda a: _run(a, _show))
    set_ = cmds.add_parser("set", help="change keys: threshold=0.7 ws.max_connections=500 ...")
    set_.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    _change_options(set_)
    set_.set_defaults(func=lambda a: _run(a, _set))
    load = cmds.add_parser("load", help="a whole document from a JSON or TOML file")
    load.add_argument("file")
    load.add_argument(
        "--model",
        action="store_true",
        help="FILE is a scoring model file (SIGNALS_MODEL_FILE format, e.g. from alphapulse "
        "calibrate): it replaces the model section, over the defaults; the rest is kept",
    )
    _change_options(load)
    load.set_defaults(func=lambda a: _run(a, _load))
    diff = cmds.add_parser("diff", help="what differs between two versions")
    diff.add_argument("a", type=int, nargs="?", default=None)
    diff.add_argument("b", type=int, nargs="?", default=None)
    diff.set_defaults(func=lambda a: _run(a, _diff))
    hist = cmds.add_parser("history", help="every version (--json: for replay)")
    hist.add_argument("--json", action="store_true")
    hist.set_defaults(func=lambda a: _run(a, _history))
    rb = cmds.add_parser("rollback", help="a new version holding version N's document")
    rb.add_argument("version", type=int)
    _change_options(rb)
    rb.set_defaults(func=lambda a: _run(a, _rollback))
    prof = cmds.add_parser("profile", help="save the current document under a name, or load one")
    prof.add_argument("action", choices=("save", "load"))
    prof.add_argument("name")
    _change_options(prof)
    prof.set_defaults(func=lambda a: _run(a, _profile))
