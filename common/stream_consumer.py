"""``StreamConsumer``: one consumer of one group over several streams — the Redis half of
the runtime (``common.stream_worker.StreamWorker`` is the loop on top of it).

What it does, and the Redis commands behind each step:

* ``ensure_groups`` — ``XGROUP CREATE … MKSTREAM`` per stream (``BUSYGROUP`` = already there).
* ``read`` — ``XREADGROUP GROUP g c COUNT n BLOCK ms STREAMS s… >`` (new entries only). On a
  Cluster the streams are read per hash slot (one command may not span slots).
* ``read_pending`` — ``XREADGROUP … STREAMS s… <id>``: this consumer's own pending entries
  above ``<id>`` (what it read before a restart but never acked), no XCLAIM needed.
* ``read_in_order`` — for a consumer name that one owner at a time holds (the detectors'
  ``p<n>`` per partition): ``XREADGROUP >`` (blocking) and the read-back of the own pending
  entries above the last applied id in one round trip, so entries are handled strictly in
  id order even when a stale owner under the same name took some.
* ``claim`` — ``XAUTOCLAIM`` entries pending longer than ``claim_idle_ms`` (their consumer died
  or stalled), then ``XPENDING`` for each claimed id to learn how often it was delivered.
  Ids whose entries were deleted meanwhile are dropped from the PEL by Redis ≥ 7 and counted.
* ``ack`` — ``XACK`` in one pipeline per call.
* ``dead_letter`` — ``XADD dlq:<stream>`` (``common.dead_letters``: the original fields, the
  error, reason, deliveries, group, consumer, time) *then* ``XACK``: a crash in between
  duplicates the dead letter, it never loses the entry.
  ``add_dead_letters`` is the XADD half alone, for a stage that acks later (the detectors ack
  with their checkpoint).
* ``trim`` — ``XTRIM MINID`` to where the stream's policy allows (``common.trimming``), then
  the ``HARD_MAXLEN`` last resort (counted).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError
from redis.typing import StreamIdT

from common.dead_letters import dead_letter_fields, error_reason, write_dead_letters
from common.metrics import RUNTIME_METRICS, RuntimeMetrics
from common.names import Keys
from common.redis import AnyRedis
from common.settings import CommonSettings, field_defaults
from common.trimming import INTERNAL, GroupPosition, TrimPolicy, TrimResult, trim_minid

__all__ = [
    "Entry",
    "StreamConsumer",
    "unique_consumer_name",
]


_COMMON = field_defaults(CommonSettings)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(slots=True)
class Entry:
    """One stream entry as delivered to this consumer."""

    stream: str
    id: str
    fields: dict[bytes, bytes]
    deliveries: int = 1
    """How many times Redis has delivered it to the group (1 = first delivery)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.stream, self.id)


def unique_consumer_name(prefix: str = "") -> str:
    """``host-pid-random``: unique per process, so a restarted worker never inherits a PEL."""
    base = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return f"{prefix}{base}" if prefix else base


def ids_by_stream(entries: Iterable[Entry]) -> dict[str, list[StreamIdT]]:
    """Entry ids grouped by stream, in delivery order."""
    out: dict[str, list[StreamIdT]] = defaultdict(list)
    for e in entries:
        out[e.stream].append(e.id)
    return out


@dataclass(slots=True)
class StreamConsumer:
    """Consumer ``consumer`` of group ``group`` over ``streams`` (full key names); the knobs
    default to ``CommonSettings``' defaults (``from_settings`` takes the configured ones)."""

    redis: AnyRedis
    group: str
    streams: Sequence[str]
    keys: Keys
    consumer: str = field(default_factory=unique_consumer_name)
    count: int = _COMMON["batch_count"]
    block_ms: int = _COMMON["block_ms"]
    claim_idle_ms: int = _COMMON["claim_idle_ms"]
    max_deliveries: int = _COMMON["max_deliveries"]
    hard_maxlen: int = _COMMON["hard_maxlen"]
    metrics: RuntimeMetrics = RUNTIME_METRICS
    _claim_cursor: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        redis: AnyRedis,
        settings: CommonSettings,
        *,
        group: str,
        streams: Sequence[str],
        consumer: str | None = None,
        metrics: RuntimeMetrics = RUNTIME_METRICS,
    ) -> StreamConsumer:
        return cls(
            redis=redis,
            group=group,
            streams=list(streams),
            keys=settings.keys(),
            consumer=consumer or settings.consumer_name or unique_consumer_name(),
            count=settings.batch_count,
            block_ms=settings.block_ms,
            claim_idle_ms=settings.claim_idle_ms,
            max_deliveries=settings.max_deliveries,
            hard_maxlen=settings.hard_maxlen,
            metrics=metrics,
        )

    # --- groups ---------------------------------------------------------------------------
    async def ensure_groups(self, start_id: str = "0") -> None:
        """Create the group on every stream (and the stream itself) unless it exists.

        ``start_id="0"``: a new group sees every entry still in the stream; ``"$"``: only new.
        """
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id=start_id, mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    # --- reading ----------------------------------------------------------------------------
    async def read(self, count: int | None = None, block_ms: int | None = None) -> list[Entry]:
        """New entries for this consumer; waits up to ``block_ms`` (0 = do not block)."""
        n = count or self.count
        block = self.block_ms if block_ms is None else block_ms
        if isinstance(self.redis, RedisCluster):
            by_slot: dict[int, list[str]] = defaultdict(list)
            for s in self.streams:
                by_slot[key_slot(s.encode())].append(s)
            parts = await asyncio.gather(*(self._read(g, n, block) for g in by_slot.values()))
            return [e for part in parts for e in part]
        return await self._read(self.streams, n, block)

    async def _read(self, streams: Sequence[str], count: int, block_ms: int) -> list[Entry]:
        reply = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            dict.fromkeys(streams, ">"),
            count=count,
            block=block_ms or None,
        )
        return list(_parse_read(reply))

    async def read_pending(self, after_id: str = "0-0", count: int | None = None) -> list[Entry]:
        """This consumer's own pending entries above ``after_id``, oldest first (never blocks).

        An entry deleted from the stream while pending comes back with empty ``fields``: the
        caller decides (the detectors dead-letter it as ``missing_entry``)."""
        reply = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            dict.fromkeys(self.streams, after_id),
            count=count or self.count,
        )
        return list(_parse_read(reply))

    async def read_in_order(
        self, after_id: str, count: int | None = None, block_ms: int | None = None
    ) -> list[Entry]:
        """The next own entries above ``after_id`` in id order, after taking new ones.

        ``XREADGROUP >`` (waiting up to ``block_ms``) moves new entries into this consumer's
        pending list, and in the same round trip (a pipeline, no transaction) the pending list
        is read back from ``after_id``. For a consumer name held by one owner at a time (a
        partition's consumer, handed from owner to owner with its pending list): whatever a
        previous or stale owner read under the name and never acked comes back here too, in
        id order with the new entries. On a Cluster the streams must share a hash slot (the
        detectors read one stream per consumer)."""
        n = count or self.count
        block = self.block_ms if block_ms is None else block_ms
        pipe = self.redis.pipeline(transaction=False)
        pipe.xreadgroup(
            self.group,
            self.consumer,
            dict.fromkeys(self.streams, ">"),
            count=n,
            block=block or None,
        )
        pipe.xreadgroup(self.group, self.consumer, dict.fromkeys(self.streams, after_id), count=n)
        _, pending = await pipe.execute()
        return list(_parse_read(pending))

    async def claim(self, min_idle_ms: int | None = None, count: int | None = None) -> list[Entry]:
        """Take over entries pending longer than ``min_idle_ms`` in any consumer of the group.

        Scans each stream's PEL from where the previous call stopped (XAUTOCLAIM's cursor), so
        a long PEL is worked through a page per call. ``deliveries`` comes from XPENDING.
        """
        idle = self.claim_idle_ms if min_idle_ms is None else min_idle_ms
        n = count or self.count
        claimed: list[Entry] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                start = self._claim_cursor.get(stream, "0-0")
                pipe.xautoclaim(
                    stream, self.group, self.consumer, min_idle_time=idle, start_id=start, count=n
                )
            replies: list[Any] = await pipe.execute()
        for stream, reply in zip(self.streams, replies, strict=True):
            self._claim_cursor[stream] = _s(reply[0])
            for item in reply[1]:
                if item[0] is None or item[1] is None:
                    continue  # Redis < 7 returns deleted entries as nil
                claimed.append(Entry(stream, _s(item[0]), item[1], 0))
        if claimed:
            await self._fill_deliveries(claimed)
            for e in claimed:
                self.metrics.redeliveries.labels(e.stream, self.group).inc()
        return claimed

    async def _fill_deliveries(self, entries: list[Entry]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for e in entries:
                pipe.xpending_range(e.stream, self.group, e.id, e.id, 1)
            replies: list[Any] = await pipe.execute()
        for e, rows in zip(entries, replies, strict=True):
            e.deliveries = int(rows[0]["times_delivered"]) if rows else 1

    async def touch(self, entries: Iterable[Entry]) -> None:
        """Reset the idle time of entries this consumer holds (``XCLAIM … JUSTID``: the
        delivery count is left alone), so nobody claims entries it has only deferred."""
        by_stream = ids_by_stream(entries)
        if not by_stream:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xclaim(stream, self.group, self.consumer, 0, ids, justid=True)
            await pipe.execute()

    # --- acknowledging ---------------------------------------------------------------------
    async def ack(self, stream: str, ids: Sequence[StreamIdT]) -> int:
        """XACK ``ids`` of ``stream``; returns how many were still pending."""
        if not ids:
            return 0
        return int(await self.redis.xack(stream, self.group, *ids))

    async def ack_entries(self, entries: Iterable[Entry]) -> int:
        """XACK ``entries`` (any mix of streams) in one round trip."""
        by_stream = ids_by_stream(entries)
        if not by_stream:
            return 0
        if len(by_stream) == 1:
            ((stream, ids),) = by_stream.items()
            return await self.ack(stream, ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            replies: list[Any] = await pipe.execute()
        return sum(int(r) for r in replies)

    async def dead_letter(
        self, entry: Entry, error: BaseException | str, reason: str | None = None
    ) -> None:
        """Move ``entry`` to ``dlq:<stream>`` with its error, then ack it."""
        why = reason or error_reason(error)
        await self.add_dead_letters([(entry, error, why)])
        await self.ack(entry.stream, [entry.id])
        self.metrics.dead_letters.labels(entry.stream, why).inc()

    async def add_dead_letters(
        self, letters: Iterable[tuple[Entry, BaseException | str, str]]
    ) -> int:
        """XADD ``(entry, error, reason)`` dead letters to each entry's ``dlq:<stream>`` in one
        pipeline, without acking (the caller acks: ``dead_letter`` at once, the detectors with
        their checkpoint). Returns how many."""
        return await write_dead_letters(
            self.redis,
            (
                (
                    self.keys.dlq(entry.stream),
                    dead_letter_fields(
                        entry, error, reason=why, group=self.group, consumer=self.consumer
                    ),
                )
                for entry, error, why in letters
            ),
        )

    # --- inspection -----------------------------------------------------------------------
    async def pending_count(self) -> int:
        """Entries of this group delivered but not acked, over all its streams."""
        total = 0
        for stream in self.streams:
            summary: Any = await self.redis.xpending(stream, self.group)
            total += int(summary["pending"])
        return total

    async def group_positions(self, stream: str) -> list[GroupPosition]:
        """Where every group of ``stream`` stands (not only this consumer's group)."""
        return await group_positions(self.redis, stream)

    async def report_position(self, stream: str) -> list[GroupPosition]:
        """Every group's position on ``stream``; sets this group's pending and lag gauges."""
        positions = await self.group_positions(stream)
        for p in positions:
            if p.name == self.group:
                self.metrics.pending.labels(stream, p.name).set(p.pending)
                if p.lag is not None:
                    self.metrics.lag.labels(stream, p.name).set(p.lag)
        return positions

    # --- trimming -----------------------------------------------------------------------------
    async def trim(
        self, stream: str, policy: TrimPolicy = INTERNAL, *, now_ms: int | None = None
    ) -> TrimResult:
        """Trim ``stream`` as its ``policy`` allows (``trim_minid``); then apply ``hard_maxlen``.

        A stream that does not exist yet (an output nobody has written to) is left alone."""
        try:
            positions = await self.report_position(stream)
        except ResponseError as e:
            if "no such key" not in str(e).lower():
                raise
            return TrimResult(stream=stream, minid=None, trimmed=0, hard_capped=0)
        now = int(time.time() * 1000) if now_ms is None else now_ms
        minid = trim_minid(positions, policy, now)
        safe = 0
        if minid is not None:
            safe = int(await self.redis.xtrim(stream, minid=minid, approximate=False))
            self.metrics.trimmed.labels(stream).inc(safe)
        hard = 0
        if self.hard_maxlen:
            hard = int(await self.redis.xtrim(stream, maxlen=self.hard_maxlen, approximate=False))
            self.metrics.hard_cap_trims.labels(stream).inc(hard)
        return TrimResult(stream=stream, minid=minid, trimmed=safe, hard_capped=hard)

    async def delete_idle_consumers(self, idle_ms: int) -> list[str]:
        """Remove consumers of the group idle for ``idle_ms`` that hold no pending entry."""
        removed: list[str] = []
        for stream in self.streams:
            consumers: Any = await self.redis.xinfo_consumers(stream, self.group)
            for c in consumers:
                name = _s(c["name"])
                if name != self.consumer and int(c["pending"]) == 0 and int(c["idle"]) >= idle_ms:
                    await self.redis.xgroup_delconsumer(stream, self.group, name)
                    removed.append(name)
        return removed


async def group_positions(redis: AnyRedis, stream: str) -> list[GroupPosition]:
    """Where every group of ``stream`` stands (XINFO GROUPS + XPENDING summary per group)."""
    groups: Any = await redis.xinfo_groups(stream)
    out: list[GroupPosition] = []
    for g in groups:
        name = _s(g["name"])
        pending = int(g["pending"])
        first = None
        if pending:
            summary: Any = await redis.xpending(stream, name)
            first = _s(summary["min"]) if summary["min"] is not None else None
        lag = g.get("lag")
        out.append(
            GroupPosition(
                name=name,
                last_delivered=_s(g["last-delivered-id"]),
                pending=pending,
                first_pending=first,
                lag=None if lag is None else int(lag),
            )
        )
    return out


def _parse_read(reply: Any) -> Iterable[Entry]:
    """Entries from an XREADGROUP reply in either shape redis-py returns (list or dict)."""
    if not reply:
        return
    pairs = reply.items() if isinstance(reply, dict) else reply
    for stream, items in pairs:
        name = _s(stream)
        for entry_id, fields in items or ():
            if entry_id is not None:  # a pending entry deleted meanwhile: empty fields
                yield Entry(name, _s(entry_id), fields if fields is not None else {}, 1)
