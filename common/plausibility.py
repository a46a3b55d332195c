"""Plausibility of a trade against its symbol's own recent state (pure; ingest and detectors).

A trade can be well-formed and still poison a symbol: one trade id of 10^15 makes every
later real id look like an old duplicate, one trade time in 2099 makes every later trade of
the partition look late. So validity includes plausibility (docs/reliability.md,
"Plausibility"):

* **time ahead** — a trade time more than ``max_ahead_s`` ahead of its receive time (ingest:
  the wall clock at receipt; detectors: the ``recv_ts`` carried in the stream, and the
  partition's highest event time so far) is implausible;
* **id jump** — where an exchange's trade ids are integer sequences, an id more than
  ``max_id_jump + max_ids_per_s * elapsed`` above the symbol's highest id is implausible
  (``elapsed``: the trade's time minus the time of the symbol's last trade), so a
  legitimately quiet symbol that resumes after hours is allowed a proportionally larger
  jump. The first trade of a symbol has nothing to compare with and is only range-checked.

An implausible trade is dead-lettered with its reason and counted; it never moves a
watermark or a dedup high-water mark. The limits are settings (validated at start).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from common.settings import env_float, env_int, field_defaults

#: Bounds every stage applies to a trade (prices and quantities strictly inside).
MAX_PRICE: Final = 1e9
MAX_QTY: Final = 1e12
#: Trade times accepted at all: 2010-01-01 .. 2100-01-01 (ns since the epoch).
MIN_TS_NS: Final = 1_262_304_000_000_000_000
MAX_TS_NS: Final = 4_102_444_800_000_000_000

#: Reasons of an implausible trade (metric label and dead letter ``reason``).
TIME_AHEAD: Final = "time_ahead"
ID_JUMP: Final = "id_jump"


@dataclass(frozen=True, slots=True)
class PlausibilityLimits:
    """How far a trade may run ahead in time, and how far its id may jump."""

    max_ahead_s: float = 300.0
    max_id_jump: int = 1_000_000
    max_ids_per_s: float = 100_000.0

    @property
    def max_ahead_ns(self) -> int:
        return int(self.max_ahead_s * 1e9)

    def id_jump_allowed(self, jump: int, elapsed_ns: int) -> bool:
        """Whether ``jump`` ids skipped over after ``elapsed_ns`` of trade time is plausible."""
        return jump <= self.max_id_jump + self.max_ids_per_s * max(0, elapsed_ns) / 1e9

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str) -> PlausibilityLimits:
        """``<prefix>_MAX_AHEAD_S``, ``<prefix>_MAX_ID_JUMP``, ``<prefix>_MAX_IDS_PER_S``,
        range-checked by the same ``env_*`` helpers as every other setting."""
        d = field_defaults(cls)
        return cls(
            max_ahead_s=env_float(env, f"{prefix}_MAX_AHEAD_S", d["max_ahead_s"], lo=1.0),
            max_id_jump=env_int(env, f"{prefix}_MAX_ID_JUMP", d["max_id_jump"], lo=1),
            max_ids_per_s=env_float(env, f"{prefix}_MAX_IDS_PER_S", d["max_ids_per_s"], lo=1.0),
        )
