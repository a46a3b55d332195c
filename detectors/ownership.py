"""Partition ownership in Redis: leases with fencing epochs, membership, balanced assignment.

* **Lease** ``lease:{p}`` = the owner's member id, ``SET NX PX ttl``. Acquiring it increments
  ``epoch:{p}`` in the same Lua script; the new epoch is the owner's *fencing token*.
  Renewal and release are Lua compare-and-act on (member, epoch), so a detector whose lease
  expired (paused, partitioned) can neither renew nor release its successor's lease.
* **Checkpoint** ``checkpoint:{p}`` is written by a Lua script that first checks the epoch,
  then stores the state and XACKs the entries the state covers: a stale owner can neither
  overwrite its successor's state nor ack entries the successor has not applied. All keys of
  a partition share the ``{p}`` hash tag (one cluster slot), so the scripts are cluster-legal.
* **Membership**: every detector heartbeats into the sorted set ``detectors:members`` (score =
  Redis server time, ms); members silent for longer than the lease TTL are dropped.
* **Assignment** (:func:`assign`) is a pure function of the live member set: partitions
  go, in order, to the member ranking highest by a rendezvous hash among those with room
  left (``P // N``, or one more for ``P % N`` of them). Every detector computes the same
  table, so N live detectors settle on an even split; a detector releases (after a final
  checkpoint) what the table gives to others and acquires what it gives to it once free.
  A dead detector's leases expire after the TTL and its partitions are taken over.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from common.names import GROUP_DETECTORS, Keys
from common.redis import AnyRedis

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
# KEYS: epoch, checkpoint, ticks stream. ARGV: epoch, state, group, ids to ack...
_CHECKPOINT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
local i = 4
while i <= #ARGV do
  local j = math.min(i + 499, #ARGV)
  redis.call('XACK', KEYS[3], ARGV[3], unpack(ARGV, i, j))
  i = j + 1
end
return 1
"""
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def _rank(member: str, partition: int) -> bytes:
    return hashlib.blake2b(f"{member}/{partition}".encode(), digest_size=8).digest()


def assign(members: Sequence[str], partitions: int) -> dict[str, list[int]]:
    """Balanced, deterministic partition table for a member set (see the module docstring).

    Every member gets ``P // N`` or ``P // N + 1`` partitions (exactly ``P % N`` get the
    extra one); each partition goes to the highest-ranked member that still has room.
    """
    live = sorted(set(members))
    table: dict[str, list[int]] = {m: [] for m in live}
    if not live:
        return table
    base, extra = divmod(partitions, len(live))
    full = 0  # members already holding base + 1
    for p in range(partitions):
        for m in sorted(live, key=lambda m: _rank(m, p), reverse=True):
            have = len(table[m])
            if have < base or (have == base and full < extra):
                full += have == base
                table[m].append(p)
                break
    return table


class Ownership:
    """Lease, membership and fenced checkpoint operations of one detector (``member``)."""

    def __init__(self, redis: AnyRedis, keys: Keys, member: str, lease_ttl_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        self.member = member
        self.ttl = lease_ttl_ms
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._checkpoint = redis.register_script(_CHECKPOINT)
        self._heartbeat = redis.register_script(_HEARTBEAT)

    async def heartbeat(self, alive: bool = True) -> list[str]:
        """Refresh (or remove) this member; returns the live members."""
        reply: Any = await self._heartbeat(
            keys=[self.keys.detector_members], args=[self.member, "1" if alive else "0", self.ttl]
        )
        return [m.decode() if isinstance(m, bytes) else str(m) for m in reply]

    async def acquire(self, p: int) -> int:
        """Take the lease of a free partition: its new epoch, or 0 if someone holds it."""
        keys = [self.keys.lease(p), self.keys.epoch(p)]
        return int(await self._acquire(keys=keys, args=[self.member, self.ttl]))

    async def renew(self, p: int, epoch: int) -> bool:
        keys = [self.keys.lease(p), self.keys.epoch(p)]
        return bool(await self._renew(keys=keys, args=[self.member, epoch, self.ttl]))

    async def release(self, p: int, epoch: int) -> bool:
        keys = [self.keys.lease(p), self.keys.epoch(p)]
        return bool(await self._release(keys=keys, args=[self.member, epoch]))

    async def load_checkpoint(self, p: int) -> bytes | None:
        data: Any = await self.redis.get(self.keys.checkpoint(p))
        return None if data is None else bytes(data)

    async def write_checkpoint(self, p: int, epoch: int, state: bytes, ack: Sequence[str]) -> bool:
        """Store ``state`` and ack ``ack`` atomically, only while ``epoch`` is current."""
        keys = [self.keys.epoch(p), self.keys.checkpoint(p), self.keys.ticks(p)]
        args: list[Any] = [epoch, state, GROUP_DETECTORS, *ack]
        return bool(await self._checkpoint(keys=keys, args=args))
