"""Exactly-once append of signals to the public stream, then lossy pub/sub fan-out.

The check ("was this signal id appended before?") and the append (XADD + index the id) run in
one Lua script (``append.lua``, loaded once with SCRIPT LOAD and called by EVALSHA through
redis-py's ``Script``), so a redelivered pattern event — a worker killed between append and ack,
or two workers racing on a claimed entry — can never put the same id on the stream twice.

The id index is a sorted set scored by the bar's open time and trimmed by age in the same
script (``SIGNALS_ID_RETENTION_S``, default 3 days): bounded memory, and one key whose hash tag
is the stream's name, so both keys share a Cluster slot. Per-id keys with a TTL would spread
over every slot and break the script on a cluster. A redelivery older than the retention would
be appended again; the retention must exceed the longest time an entry can stay pending.

The same script guards the live configuration (``common.configstore``): given the version a
batch was scored with, it appends nothing and answers *stale* when a newer version exists,
and otherwise raises the scored high-water mark to the batch's newest bar open time — in the
same atomic step, so a new version can never take effect on a bar already scored. The
configuration keys share the stream's hash tag (``Keys.config_*``).

Publishing (``publish=True``) happens in the same script: each newly appended signal is
PUBLISHed on its symbol's channel right after its XADD, so a batch is one call and its JSON
crosses the wire once. (A pipeline of one PUBLISH per signal cost the client about four times
as much CPU as one script call; a second script call after the append cost a round trip and a
second copy of every document, issue 17.)
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from common.lua import lua_script
from common.names import Keys
from signals.contract import Signal, signal_to_json

APPEND_LUA = lua_script("signals", "append")


class SignalAppender:
    """Appends batches of signals atomically and publishes the new ones."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        keys: Keys,
        *,
        retention_ms: int = 3 * 86_400_000,
        maxlen: int = 0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_ms = retention_ms
        self.maxlen = maxlen
        self._script = redis.register_script(APPEND_LUA)

    async def append(
        self,
        signals: Sequence[Signal],
        *,
        config_version: int | None = None,
        scored_through: int | None = None,
        publish: bool = False,
    ) -> list[bytes | None] | None:
        """Append the signals not seen before; returns each one's stream id, or None if dup.

        With ``config_version``: returns None (nothing appended, nothing moved) when the
        configuration has a newer version than that one. ``scored_through``: the greatest bar
        open time of the events the batch scored (signals or not), recorded when appended.
        ``publish``: PUBLISH each newly appended one on its symbol's channel (fire-and-forget:
        listeners accept loss), in order, its document byte for byte the stream's."""
        if not signals and scored_through is None:
            return []
        args: list[bytes | str | int] = [
            self.retention_ms,
            self.maxlen,
            "" if config_version is None else config_version,
            "" if scored_through is None else scored_through,
        ]
        channel = self.keys.signal_channel
        for s in signals:
            data = signal_to_json(s)
            # As bytes: redis-py passes bytes through, the cheapest argument it packs.
            to = channel(s.exchange, s.symbol) if publish else ""
            args += [s.id.encode(), b"%d" % s.open_time_ms, b"%d" % s.v, data, to]
        k = self.keys
        result = await self._script(
            keys=[k.signals, k.signal_ids, k.config_current, k.config_scored], args=args
        )
        if result[0] == b"stale":
            return None
        return [r if isinstance(r, bytes) else None for r in result[1:]]
