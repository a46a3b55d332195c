"""``alphapulse status``: is the pipeline keeping up, and who owns which partition?

Per stream (every ``ticks:{p}``, ``bars``, ``patterns``, ``signals``): its length, dead
letters (``dlq:<stream>`` length) and each consumer group's lag and pending count; then the
partition owners, read from the detectors' lease keys (``Keys.lease(p)``: the holder's
member id) — common/ never imports a stage, the key names are the contract.

``alphapulse status --wait-idle --timeout S`` polls until every group of every stream has
consumed and acked everything (lag 0, pending 0) on two polls in a row with no new entries
in between, then exits 0; it exits 1 if that has not happened within S seconds. Streams are
read upstream first (ticks, bars, patterns, signals): every stage writes its outputs before
it acks its inputs, so an idle upstream seen earlier implies its outputs are in the streams
read after it. A stream without consumer groups has nothing to wait for.

The last line is the verdict: ``idle`` (every consumer group has read and acked every entry)
or ``busy`` (some group still has entries to read or to ack), each with that explanation.
When every stream of the chosen namespace is empty, the report ends with the namespaces that
do hold data (a ``make run`` writes under ``run:``; without ``NAMESPACE`` the CLI looks at
the unprefixed keys), e.g. ``NAMESPACE=run: alphapulse status``.

Redis reports ``lag`` as unknown (null) after some deletions; then a group counts as
caught up when its last delivered id is the stream's last generated id.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson
from redis.exceptions import ResponseError

from common.names import Keys
from common.redis import AnyRedis, redis_for_command
from common.settings import CommonSettings, exit_on_config_error
from common.stream_consumer import group_positions

__all__ = ["GroupStatus", "PipelineStatus", "StreamStatus", "collect_status", "register"]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class GroupStatus:
    name: str
    lag: int | None
    pending: int
    last_delivered: str


@dataclass(frozen=True, slots=True)
class StreamStatus:
    stream: str
    length: int
    last_id: str
    dead_letters: int
    groups: tuple[GroupStatus, ...]

    def group_idle(self, g: GroupStatus) -> bool:
        caught_up = g.lag == 0 if g.lag is not None else g.last_delivered == self.last_id
        return caught_up and g.pending == 0

    @property
    def idle(self) -> bool:
        return all(self.group_idle(g) for g in self.groups)


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    streams: tuple[StreamStatus, ...]
    owners: dict[int, str | None]  # partition -> lease holder (None: unowned)

    @property
    def idle(self) -> bool:
        return all(s.idle for s in self.streams)

    def fingerprint(self) -> tuple[tuple[str, str], ...]:
        """The streams' last ids: equal on two polls means nothing was appended in between."""
        return tuple((s.stream, s.last_id) for s in self.streams)

    def to_dict(self) -> dict[str, Any]:
        return {
            "idle": self.idle,
            "streams": [
                {
                    "stream": s.stream,
                    "length": s.length,
                    "dead_letters": s.dead_letters,
                    "groups": [
                        {"group": g.name, "lag": g.lag, "pending": g.pending} for g in s.groups
                    ],
                }
                for s in self.streams
            ],
            "owners": {str(p): m for p, m in sorted(self.owners.items())},
        }


def pipeline_streams(keys: Keys) -> list[str]:
    """Every stream of the deployment, upstream first (the order ``--wait-idle`` relies on)."""
    return [*keys.all_ticks(), keys.bars, keys.patterns, keys.outcomes, keys.signals]


async def stream_status(redis: AnyRedis, keys: Keys, stream: str) -> StreamStatus:
    """One stream's length, last id, dead letters and groups (a missing stream is empty)."""
    try:
        info: Any = await redis.xinfo_stream(stream)
        positions = await group_positions(redis, stream)
    except ResponseError:  # no such key: nothing written and no group created yet
        info, positions = {"length": 0, "last-generated-id": b"0-0"}, []
    groups = tuple(GroupStatus(p.name, p.lag, p.pending, p.last_delivered) for p in positions)
    return StreamStatus(
        stream=stream,
        length=int(info["length"]),
        last_id=_s(info["last-generated-id"]),
        dead_letters=int(await redis.xlen(keys.dlq(stream))),
        groups=groups,
    )


async def partition_owners(redis: AnyRedis, keys: Keys) -> dict[int, str | None]:
    """Holder of each partition's lease (the detectors' ``lease:{p}`` keys)."""
    owners: dict[int, str | None] = {}
    for p in range(keys.partitions):
        value = await redis.get(keys.lease(p))
        owners[p] = None if value is None else _s(value)
    return owners


async def collect_status(redis: AnyRedis, keys: Keys) -> PipelineStatus:
    streams = [await stream_status(redis, keys, s) for s in pipeline_streams(keys)]
    return PipelineStatus(tuple(streams), await partition_owners(redis, keys))


async def wait_idle(
    redis: AnyRedis, keys: Keys, timeout_s: float, poll_s: float = 0.2
) -> tuple[bool, PipelineStatus]:
    """Poll until idle on two consecutive polls with no new entries; False on timeout."""
    deadline = time.monotonic() + timeout_s
    previous: PipelineStatus | None = None
    while True:
        status = await collect_status(redis, keys)
        if (
            status.idle
            and previous is not None
            and previous.idle
            and previous.fingerprint() == status.fingerprint()
        ):
            return True, status
        if time.monotonic() >= deadline:
            return False, status
        previous = status
        await asyncio.sleep(poll_s)


def format_status(status: PipelineStatus, namespace: str) -> str:
    """The human-readable report: one line per stream, then the owners."""
    lines = []
    for s in status.streams:
        groups = " ".join(
            f"{g.name}(lag={'?' if g.lag is None else g.lag},pending={g.pending})" for g in s.groups
        )
        name = s.stream.removeprefix(namespace)
        lines.append(f"{name}\tlength={s.length}\tdlq={s.dead_letters}\t{groups or 'no groups'}")
    by_owner: dict[str, list[int]] = {}
    for p, owner in sorted(status.owners.items()):
        by_owner.setdefault(owner or "-", []).append(p)
    for owner, parts in sorted(by_owner.items()):
        label = "unowned" if owner == "-" else f"owner {owner}"
        lines.append(f"{label}\tpartitions={','.join(map(str, parts))}")
    lines.append(IDLE_VERDICT if status.idle else BUSY_VERDICT)
    return "\n".join(lines)


IDLE_VERDICT = "idle: every consumer group has read and acked every entry (lag 0, pending 0)"
BUSY_VERDICT = (
    "busy: some consumer group still has entries to read (lag) or to ack (pending): the"
    " pipeline is working through them, or a stage is stopped"
)
_TICKS_INFIX = "ticks:{"


async def namespaces_with_data(redis: AnyRedis, limit: int = 20) -> dict[str, int]:
    """Namespace → entries in its ``bars`` stream plus ticks, for every namespace whose
    ``ticks:{p}`` streams hold entries (found by SCAN; at most ``limit`` namespaces)."""
    found: dict[str, int] = {}
    async for raw in redis.scan_iter(match=f"*{_TICKS_INFIX}*", count=1000, _type="stream"):
        key = _s(raw)
        namespace = key[: key.rindex(_TICKS_INFIX)]
        if namespace.endswith("dlq:"):
            continue
        length = int(await redis.xlen(key))
        if length:
            found[namespace] = found.get(namespace, 0) + length
            if len(found) >= limit:
                break
    return found


def empty_namespace_hint(namespace: str, others: dict[str, int]) -> list[str]:
    """Lines saying where the data is when ``namespace`` holds none."""
    shown = repr(namespace) if namespace else "'' (no NAMESPACE)"
    if not others:
        return [f"namespace {shown} is empty, and no other namespace holds ticks"]
    lines = [f"namespace {shown} is empty; namespaces holding ticks:"]
    for other, n in sorted(others.items(), key=lambda item: -item[1]):
        lines.append(f"  {other or '(none)'}\t{n} ticks\tNAMESPACE={other} alphapulse status")
    return lines


def _run(args: argparse.Namespace) -> int:
    with exit_on_config_error():
        settings = CommonSettings.from_env(os.environ)
    keys = settings.keys()

    async def go() -> int:
        redis = await redis_for_command(settings)
        try:
            if args.wait_idle:
                ok, status = await wait_idle(redis, keys, args.timeout, args.poll)
            else:
                ok, status = True, await collect_status(redis, keys)
            empty = not any(s.length for s in status.streams)
            others = await namespaces_with_data(redis) if empty and not args.json else {}
        finally:
            await redis.aclose()
        if args.json:
            print(orjson.dumps(status.to_dict()).decode())
        else:
            print(format_status(status, keys.namespace))
            if empty:
                others.pop(keys.namespace, None)
                print("\n".join(empty_namespace_hint(keys.namespace, others)))
        if not ok:
            print(f"alphapulse status: not idle after {args.timeout} s", file=sys.stderr)
        return 0 if ok else 1

    return asyncio.run(go())


def register(subparsers: Any) -> None:
    """Entry point of the ``alphapulse.commands`` group: adds ``status``."""
    p = subparsers.add_parser(
        "status", help="per stream: length, group lag/pending, dead letters; partition owners"
    )
    p.add_argument(
        "--wait-idle",
        action="store_true",
        help="exit 0 once every group has consumed and acked everything (lag 0, pending 0)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="--wait-idle limit in s (60)")
    p.add_argument("--poll", type=float, default=0.2, help="--wait-idle poll interval in s")
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.set_defaults(func=_run)
