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
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from common.names import Keys
from signals.contract import Signal, signal_to_json

APPEND_LUA = files("signals").joinpath("append.lua").read_text()


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

    async def append(self, signals: Sequence[Signal]) -> list[bytes | None]:
        """Append the signals not seen before; returns each one's stream id, or None if dup."""
        if not signals:
            return []
        args: list[bytes | str | int] = [self.retention_ms, self.maxlen]
        for s in signals:
            args += [s.id, s.open_time_ms, s.v, signal_to_json(s)]
        result = await self._script(keys=[self.keys.signals, self.keys.signal_ids], args=args)
        return [r if isinstance(r, bytes) else None for r in result]

    async def publish(self, signals: Sequence[Signal]) -> None:
        """PUBLISH each signal on its symbol's channel (fire-and-forget: listeners accept loss)."""
        if not signals:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in signals:
                pipe.publish(self.keys.signal_channel(s.exchange, s.symbol), signal_to_json(s))
            await pipe.execute()
