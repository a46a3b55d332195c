"""Safe stream trimming: the lowest id some consumer group still needs (pure functions).

``XTRIM key MINID x`` deletes every entry with an id below ``x``. For each group an entry is
still needed when it is

* pending (delivered, not acked): every such id is ≥ the group's first pending id; or
* not yet delivered: every such id is > the group's last-delivered-id.

So group ``g`` needs nothing below ``need(g) = first_pending(g)`` when it has pending entries,
else ``last_delivered(g) + 1`` (the next possible id), and the stream may be trimmed to
``MINID = min over groups of need(g)``. Positions only move forward (acks shrink the PEL,
reads advance last-delivered), so positions read a moment ago are lower bounds and trimming
with them is still safe. A stream without any group is never trimmed here (nobody said what
they need); only the optional hard cap applies to it.

Each stream has one trim policy (``TrimPolicy``), owned by its producer and its contract:

* internal streams (``ticks:{p}``, ``bars``, ``patterns``): below the safe MINID, nothing
  more. Any worker of one of their groups may run it: the MINID depends only on the groups'
  positions, so whoever computes it computes the same one.
* the public ``signals`` stream (``Keys.public_streams``) also keeps at least its retention
  (``SIGNALS_STREAM_RETENTION_S``), because readers outside any group (WebSocket resume,
  ``XREAD`` and ``tail --from`` clients) depend on it. Only its producer, the signals worker,
  trims it; a worker that merely reads it (the sink) never does.

``trim_minid`` is the one function that turns a policy and the groups' positions into a MINID.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "INTERNAL",
    "GroupPosition",
    "TrimPolicy",
    "TrimResult",
    "next_id",
    "parse_id",
    "safe_minid",
    "trim_minid",
]

_MAX_SEQ = 2**64 - 1


@dataclass(frozen=True, slots=True)
class GroupPosition:
    """Where one consumer group of a stream stands."""

    name: str
    last_delivered: str
    pending: int
    first_pending: str | None
    lag: int | None = None


@dataclass(frozen=True, slots=True)
class TrimResult:
    stream: str
    minid: str | None
    trimmed: int
    hard_capped: int


@dataclass(frozen=True, slots=True)
class TrimPolicy:
    """How one stream is trimmed (see the module docstring).

    ``retention_ms`` 0: an internal stream, trimmed below what every group has acked.
    ``retention_ms`` > 0: a public stream that also keeps every entry younger than this.
    ``retention_ms`` None: keep everything (only the configured hard cap, if any, applies).
    """

    retention_ms: int | None = 0


INTERNAL = TrimPolicy()
"""The policy of every internal stream: below what every group has acked."""


def parse_id(entry_id: str) -> tuple[int, int]:
    """``"ms-seq"`` (or ``"ms"``) as a comparable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def next_id(entry_id: str) -> str:
    """The smallest id greater than ``entry_id``."""
    ms, seq = parse_id(entry_id)
    if seq == _MAX_SEQ:
        return f"{ms + 1}-0"
    return f"{ms}-{seq + 1}"


def group_needs_from(position: GroupPosition) -> str:
    """The lowest id ``position``'s group may still need (see the module docstring)."""
    if position.pending and position.first_pending is not None:
        return position.first_pending
    return next_id(position.last_delivered)


def safe_minid(positions: Iterable[GroupPosition]) -> str | None:
    """The MINID below which every group has acked everything; ``None`` without groups."""
    needs = [group_needs_from(p) for p in positions]
    if not needs:
        return None
    return min(needs, key=parse_id)


def trim_minid(positions: Iterable[GroupPosition], policy: TrimPolicy, now_ms: int) -> str | None:
    """Where a stream of ``policy`` may be trimmed at ``now_ms``; None = not at all.

    Internal: the safe MINID (None without groups). With a retention: below the safe MINID
    *and* below ``now_ms - retention_ms``, whichever is older; without any group only the
    retention bounds it (readers outside groups are what the retention is for)."""
    if policy.retention_ms is None:
        return None
    group_minid = safe_minid(positions)
    if not policy.retention_ms:
        return group_minid
    cutoff = f"{max(now_ms - policy.retention_ms, 0)}-0"
    if group_minid is None or parse_id(cutoff) < parse_id(group_minid):
        return cutoff
    return group_minid
