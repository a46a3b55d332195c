"""``alphapulse streams`` and ``alphapulse dlq``: look at the streams and their dead letters.

* ``alphapulse streams`` — per stream: length, each consumer group's lag / pending / last
  delivered id, the safe MINID the runtime would trim to, and the dead-letter count.
* ``alphapulse dlq show STREAM`` — the dead letters of STREAM (id, reason, error, deliveries).
* ``alphapulse dlq replay STREAM`` — append each dead letter's original fields to STREAM again,
  then delete it from the dead-letter stream. A crash in between replays it twice; the stages
  de-duplicate on the record ids inside the entries, so that is harmless.

Settings come from the environment like the workers' (``REDIS_URL``, ``NAMESPACE``, ...).
``STREAM`` is a name without the namespace (``bars``, ``ticks:{3}``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any

from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from common.dead_letters import original_fields
from common.names import Keys
from common.redis import AnyRedis, redis_for_command
from common.secrets import scrub
from common.settings import CommonSettings, exit_on_config_error
from common.stream_consumer import group_positions
from common.trimming import safe_minid

__all__ = ["register", "replay_dead_letters", "stream_status"]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def known_streams(keys: Keys) -> list[str]:
    return [*keys.all_ticks(), keys.bars, keys.patterns, keys.outcomes, keys.signals]


async def stream_status(redis: AnyRedis, keys: Keys, stream: str) -> dict[str, Any]:
    """Length, groups and dead letters of one stream (a full key name)."""
    length = int(await redis.xlen(stream))
    dead = int(await redis.xlen(keys.dlq(stream)))
    try:
        positions = await group_positions(redis, stream)
    except ResponseError:  # no such key
        positions = []
    rows = [{"group": p.name, "lag": p.lag, "pending": p.pending} for p in positions]
    return {
        "stream": stream,
        "length": length,
        "dead_letters": dead,
        "safe_minid": safe_minid(positions),
        "groups": rows,
    }


async def replay_dead_letters(
    redis: AnyRedis, keys: Keys, stream: str, count: int | None = None
) -> int:
    """Re-append up to ``count`` dead letters of ``stream`` to it; returns how many."""
    entries: Any = await redis.xrange(keys.dlq(stream), count=count)
    for dlq_id, fields in entries:
        payload: dict[FieldT, EncodableT] = dict(original_fields(fields).items())
        await redis.xadd(stream, payload)
        await redis.xdel(keys.dlq(stream), dlq_id)
    return len(entries)


def _run(args: argparse.Namespace, job: Callable[..., Coroutine[Any, Any, int]]) -> int:
    with exit_on_config_error():
        settings = CommonSettings.from_env(os.environ)

    async def go() -> int:
        redis = await redis_for_command(settings)
        try:
            return await job(redis, settings.keys(), args)
        finally:
            await redis.aclose()

    return asyncio.run(go())


async def _streams(redis: AnyRedis, keys: Keys, args: argparse.Namespace) -> int:
    names = [keys.namespace + s for s in args.stream] if args.stream else known_streams(keys)
    for name in names:
        st = await stream_status(redis, keys, name)
        groups = " ".join(
            f"{g['group']}(lag={g['lag']},pending={g['pending']})" for g in st["groups"]
        )
        print(
            f"{name}\tlength={st['length']}\tdlq={st['dead_letters']}\t"
            f"safe_minid={st['safe_minid']}\t{groups or 'no groups'}"
        )
    return 0


async def _dlq(redis: AnyRedis, keys: Keys, args: argparse.Namespace) -> int:
    stream = keys.namespace + args.stream
    if args.action == "replay":
        n = await replay_dead_letters(redis, keys, stream, args.count)
        print(f"replayed {n} dead letters into {stream}")
        return 0
    entries: Any = await redis.xrange(keys.dlq(stream), count=args.count)
    for dlq_id, f in entries:  # an error text may quote what a library said: scrubbed
        print(
            scrub(
                f"{_s(dlq_id)}\tid={_s(f.get(b'id', b''))}\treason={_s(f.get(b'reason', b''))}\t"
                f"deliveries={_s(f.get(b'deliveries', b''))}\terror={_s(f.get(b'error', b''))}"
            )
        )
    return 0


def register(subparsers: Any) -> None:
    """Entry point of the ``alphapulse.commands`` group: adds ``streams`` and ``dlq``."""
    p = subparsers.add_parser("streams", help="stream lengths, group lag/pending, dead letters")
    p.add_argument("stream", nargs="*", help="stream names without namespace (default: all)")
    p.set_defaults(func=lambda a: _run(a, _streams))
    d = subparsers.add_parser("dlq", help="show or replay the dead letters of a stream")
    d.add_argument("action", choices=("show", "replay"))
    d.add_argument("stream", help="stream name without namespace, e.g. bars or ticks:{3}")
    d.add_argument("--count", type=int, default=None, help="at most this many (default: all)")
    d.set_defaults(func=lambda a: _run(a, _dlq))
