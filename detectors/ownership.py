"""Partition ownership in Redis: leases with fencing epochs, membership, balanced assignment.

* **Lease** ``lease:{p}`` = the owner's member id, ``SET NX PX ttl``. Acquiring it increments
  ``epoch:{p}`` in the same Lua script; the new epoch is the owner's *fencing token*.
  Renewal and release are Lua compare-and-act on (member, epoch), so a detector whose lease
  expired (paused, partitioned) can neither renew nor release its successor's lease.
* **Checkpoint** ``checkpoint:{p}`` is written by a Lua script that first checks the epoch,
  then stores the state and XACKs the entries the state covers: a stale owner can neither
  overwrite its successor's state nor ack entries the successor has not applied. All keys of
  a partition share the ``{p}`` hash tag (one cluster slot), so the scripts are cluster-legal.
  The scripts are the ``ownership_*.lua`` files beside this module (``common.lua``).
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

from common.lua import lua_script
from common.names import GROUP_DETECTORS, Keys
from common.redis import AnyRedis


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
        self._acquire = redis.register_script(lua_script("detectors", "ownership_acquire"))
        self._renew = redis.register_script(lua_script("detectors", "ownership_renew"))
        self._release = redis.register_script(lua_script("detectors", "ownership_release"))
        self._checkpoint = redis.register_script(lua_script("detectors", "ownership_checkpoint"))
        self._heartbeat = redis.register_script(lua_script("detectors", "ownership_heartbeat"))

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
