"""The versioned live configuration document in Redis: history, compare-and-set, following.

One document per deployment (namespace). Every change writes a new, immutable *version*:
the whole validated document, its fingerprint, who changed it, when (wall clock), a comment
and ``effective_from`` — the event time (epoch ms, compared with a bar's open time) from which
it applies. Versions live as entries of the stream ``Keys.config_history`` (never trimmed:
they are few) and the hash ``Keys.config_current`` points at the newest one.

A new version is written by one Lua script (``config_propose.lua``) that checks, atomically:

* the current version is the one the writer read (compare-and-set: of two concurrent
  changes one wins and the other is told, none is lost);
* ``effective_from`` is after ``Keys.config_scored``, the greatest bar open time the signals
  stage has already scored (the signals worker advances it in the same atomic step as its
  append, after checking that it scored with the newest version). A version that took
  effect in the past would make already emitted signals disagree with a replay;
* ``effective_from`` is not before the current version's: versions apply in order, so the
  version covering time *t* is simply the newest one whose ``effective_from <= t``.

This module knows nothing about what the document holds (the stages validate their own
sections: see ``signals.liveconfig``). ``ConfigFollower`` keeps a process's copy of every
version current: a blocking XREAD on the history stream, so a new version is seen within
one read (well under a second), and the ``alphapulse_config_version{worker}`` gauge says
which version each process has.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.errors import AlphapulseError
from common.logging import get_logger
from common.lua import lua_script
from common.metrics import CONFIG_METRICS, ConfigMetrics
from common.names import Keys
from common.redis import AnyRedis

PROPOSE_LUA = lua_script("common", "config_propose")
MINUTE_MS = 60_000


def canonical_json(doc: Mapping[str, Any]) -> str:
    """Sorted keys, no blanks: the one serialisation fingerprints and the store use."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def document_fingerprint(doc: Mapping[str, Any]) -> str:
    """First 12 hex digits of SHA-256 over the canonical JSON of the document."""
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One immutable version of the configuration document."""

    version: int
    effective_from: int
    doc: Mapping[str, Any]
    fingerprint: str
    who: str
    at: str
    comment: str

    def to_dict(self) -> dict[str, Any]:
        """The exported form (``config history --json``, ``replay --config-history``)."""
        return {
            "version": self.version,
            "effective_from": self.effective_from,
            "fingerprint": self.fingerprint,
            "who": self.who,
            "at": self.at,
            "comment": self.comment,
            "doc": dict(self.doc),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConfigVersion:
        return cls(
            version=int(d["version"]),
            effective_from=int(d["effective_from"]),
            doc=dict(d["doc"]),
            fingerprint=str(d["fingerprint"]),
            who=str(d.get("who", "")),
            at=str(d.get("at", "")),
            comment=str(d.get("comment", "")),
        )

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes]) -> ConfigVersion:
        """A history stream entry -> version."""
        f = {k.decode(): v.decode() for k, v in fields.items()}
        return cls.from_dict({**f, "doc": json.loads(f["doc"])})


class ConfigRefused(AlphapulseError):
    """A new version was refused; nothing changed. ``reason``: conflict, past or order."""

    def __init__(self, reason: str, value: int) -> None:
        self.reason = reason
        self.value = value
        text = {
            "conflict": f"the configuration changed meanwhile (now version {value}); "
            "nothing changed: look at it again and retry",
            "past": f"effective_from must be after {value} (bar open time already scored); "
            "nothing changed",
            "order": f"effective_from must not be before the current version's ({value}); "
            "nothing changed",
        }.get(reason, f"refused: {reason} {value}")
        super().__init__(text)


async def read_history(
    redis: AnyRedis, keys: Keys, after: str = "0-0"
) -> list[tuple[str, ConfigVersion]]:
    """Every version written after stream id ``after``, oldest first, with its entry id."""
    entries: Any = await redis.xrange(keys.config_history, min=f"({after}")
    return [(eid.decode(), ConfigVersion.from_fields(fields)) for eid, fields in entries]


async def load_versions(redis: AnyRedis, keys: Keys) -> list[ConfigVersion]:
    """Every version, oldest first (empty when the namespace has no configuration yet)."""
    return [v for _, v in await read_history(redis, keys)]


async def scored_through(redis: AnyRedis, keys: Keys) -> int | None:
    """The greatest bar open time already scored, or None before the first event."""
    raw = await redis.get(keys.config_scored)
    return None if raw is None else int(raw)


async def write_version(
    redis: AnyRedis,
    keys: Keys,
    doc: Mapping[str, Any],
    *,
    who: str,
    at: str,
    comment: str,
    effective_from: int | None,
    expected_version: int,
) -> ConfigVersion:
    """Compare-and-set a new version of an already validated ``doc``; raises
    ``ConfigRefused`` (nothing written) on a conflict or an effective_from in the past."""
    script = redis.register_script(PROPOSE_LUA)
    fingerprint = document_fingerprint(doc)
    args: list[str | int] = [
        expected_version,
        "" if effective_from is None else str(int(effective_from)),
        canonical_json(doc),
        fingerprint,
        who,
        at,
        comment,
    ]
    reply: Any = await script(
        keys=[keys.config_history, keys.config_current, keys.config_scored], args=args
    )
    status = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
    if status != "ok":
        raise ConfigRefused(status, int(reply[1]))
    return ConfigVersion(
        version=int(reply[1]),
        effective_from=int(reply[2]),
        doc=dict(doc),
        fingerprint=fingerprint,
        who=who,
        at=at,
        comment=comment,
    )


class ConfigFollower:
    """A process's copy of every configuration version, kept current from the stream."""

    def __init__(
        self,
        redis: AnyRedis,
        keys: Keys,
        *,
        worker: str,
        on_change: Callable[[Sequence[ConfigVersion]], None] | None = None,
        block_ms: int = 500,
        metrics: ConfigMetrics = CONFIG_METRICS,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.worker = worker
        self.on_change = on_change
        self.block_ms = block_ms
        self.versions: list[ConfigVersion] = []
        self.last_id = "0-0"
        self.log = get_logger("config", worker=worker)
        self._version = metrics.version.labels(worker)
        self._version.set(0)

    @property
    def current(self) -> ConfigVersion | None:
        return self.versions[-1] if self.versions else None

    def _add(self, new: Sequence[tuple[str, ConfigVersion]]) -> bool:
        known = {v.version for v in self.versions}
        added = [v for _, v in new if v.version not in known]
        if new:
            self.last_id = new[-1][0]
        if not added:
            return False
        self.versions = sorted([*self.versions, *added], key=lambda v: v.version)
        newest = self.versions[-1]
        self._version.set(newest.version)
        # A change while running is news (INFO); what a worker loads at start is not: one
        # line per worker per start would crowd `make run`'s first screen (DEBUG).
        (self.log.info if known else self.log.debug)(
            "config_version_applied",
            version=newest.version,
            fingerprint=newest.fingerprint,
            effective_from=newest.effective_from,
        )
        if self.on_change is not None:
            self.on_change(self.versions)
        return True

    async def refresh(self) -> bool:
        """Read the versions written since the last read; True when there were any."""
        return self._add(await read_history(self.redis, self.keys, self.last_id))

    async def follow(self, stopping: Callable[[], bool]) -> None:
        """Block on the history stream until ``stopping()``; ride out Redis outages."""
        backoff = 0.0
        while not stopping():
            try:
                reply: Any = await self.redis.xread(
                    {self.keys.config_history: self.last_id}, block=self.block_ms
                )
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # redis-py may turn a cancellation inside a blocking read into a
                    # ConnectionError: a cancelled follower stops, it does not retry.
                    raise asyncio.CancelledError from e
                backoff = min(max(backoff * 2, 0.1), 5.0)
                self.log.warning("config_follow_failed", error=repr(e), retry_in_s=backoff)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                continue
            backoff = 0.0
            for _, entries in reply or []:
                self._add([(eid.decode(), ConfigVersion.from_fields(f)) for eid, f in entries])

    @contextlib.asynccontextmanager
    async def running(self, stopping: Callable[[], bool]) -> AsyncIterator[None]:
        """``follow`` as a task for the duration of the block (a worker's ``run``)."""
        done = asyncio.Event()  # also ends the loop should a cancellation be swallowed
        task = asyncio.create_task(
            self.follow(lambda: done.is_set() or stopping()), name=f"{self.worker}.config"
        )
        try:
            yield
        finally:
            done.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
