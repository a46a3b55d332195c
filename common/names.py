"""Every Redis key, stream and consumer-group name of alphapulse, and the partition function.

Keys that belong to one tick partition carry a Redis Cluster hash tag ``{p}`` so that all of a
partition's keys (its stream, lease, epoch, checkpoint) live in one slot: the Lua scripts that
touch several of them at once stay legal on a cluster.

An optional namespace prefixes every key, so several deployments (or concurrent test runs)
can share one Redis without seeing each other.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

# Consumer groups.
GROUP_DETECTORS = "detectors"
GROUP_SIGNALS = "signals"
GROUP_SINK = "sink"


def partition_of(exchange: str, symbol: str, partitions: int) -> int:
    """Stable partition of a symbol: CRC-32 of ``exchange:symbol`` modulo ``partitions``.

    CRC-32 is fixed by its definition (unlike Python's salted ``hash``), so every process,
    language and version computes the same partition for the same symbol.
    """
    return zlib.crc32(f"{exchange}:{symbol}".encode()) % partitions


@dataclass(frozen=True, slots=True)
class Keys:
    """Names of all streams and keys for one deployment (``namespace``) of ``partitions``."""

    partitions: int
    namespace: str = ""

    def _k(self, name: str) -> str:
        return f"{self.namespace}{name}"

    # --- streams -------------------------------------------------------------------
    def ticks(self, partition: int) -> str:
        """The tick stream of one partition, hash-tagged by partition number."""
        return self._k(f"ticks:{{{partition}}}")

    def all_ticks(self) -> list[str]:
        return [self.ticks(p) for p in range(self.partitions)]

    @property
    def bars(self) -> str:
        return self._k("bars")

    @property
    def patterns(self) -> str:
        return self._k("patterns")

    @property
    def signals(self) -> str:
        return self._k("signals")

    @property
    def public_streams(self) -> frozenset[str]:
        """Streams with a public contract: read by services outside any consumer group too,
        so they keep their retention and only their producer trims them."""
        return frozenset({self.signals})

    @property
    def outcomes(self) -> str:
        """Bar outcomes (``common.contracts.encode_outcomes``), detectors -> sink."""
        return self._k("outcomes")

    def dlq(self, stream: str) -> str:
        """Dead-letter stream of ``stream`` (a full key of this namespace, or ``ingest``)."""
        base = stream.removeprefix(self.namespace)
        return self._k(f"dlq:{base}")

    # --- ingest ------------------------------------------------------------------------
    def ingest_last_ids(self, partition: int) -> str:
        """Hash of the last trade id written per ``exchange:symbol`` of one partition (field
        value ``<id>:<trade time ns>``), kept by the tick writer's append script in the same
        atomic step as the entry, so a restarted ingest knows where each stream stopped."""
        return self._k(f"ingest:last_id:{{{partition}}}")

    # --- detector partition ownership (one slot per partition) ---------------------
    def lease(self, partition: int) -> str:
        return self._k(f"lease:{{{partition}}}")

    def epoch(self, partition: int) -> str:
        return self._k(f"epoch:{{{partition}}}")

    def checkpoint(self, partition: int) -> str:
        return self._k(f"checkpoint:{{{partition}}}")

    @property
    def detector_members(self) -> str:
        """Sorted set of live detector ids scored by heartbeat time (for rebalancing)."""
        return self._k("detectors:members")

    # --- signals ---------------------------------------------------------------------
    @property
    def signal_ids(self) -> str:
        """Ids already appended to ``signals``; same slot as the stream (tag = its name)."""
        return f"{{{self.signals}}}:ids"

    def signal_channel(self, exchange: str, symbol: str) -> str:
        """Pub/sub channel of one symbol's signals."""
        return self._k(f"signals:{exchange}:{symbol}")

    # --- live configuration (common.configstore) -----------------------------------------
    # Same hash tag as the signals stream: the signals worker's append script checks the
    # configuration version and advances the scored high-water mark in the same atomic step
    # as the append, and the propose script reads that mark, so all of them share one slot.
    @property
    def config_history(self) -> str:
        """Stream of configuration versions, one entry per version, never trimmed."""
        return f"{{{self.signals}}}:config:history"

    @property
    def config_current(self) -> str:
        """Hash ``version`` / ``effective_from`` of the newest configuration version."""
        return f"{{{self.signals}}}:config:current"

    @property
    def config_scored(self) -> str:
        """Greatest bar open time (ms) the signals stage has scored: no new version may
        take effect at or before it (already emitted signals would then disagree)."""
        return f"{{{self.signals}}}:config:scored"

    @property
    def config_profiles(self) -> str:
        """Hash of named configuration documents (``config profile save|load``)."""
        return f"{{{self.signals}}}:config:profiles"
