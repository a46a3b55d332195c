"""The WebSocket server's connection events as log lines, rate-limited per kind of event.

The server logs each connection accepted (``ws_connected``), refused (``ws_refused`` with a
``reason``: ``auth``, ``limit``, ``bad_request``, ``resume_too_long``, ``unavailable``), cut
(``ws_cut``, ``reason=slow``), resumed ahead of the stream (``ws_cursor_ahead``) and ended
(``ws_disconnected``). A flood — a thousand clients reconnecting at once, a scanner trying
tokens — must not become a thousand lines a second, so each kind (event and reason) may log
``lines`` lines per ``interval_s``; past that its events are only counted, and when the
interval ends one ``ws_events_summary`` line gives the count of every kind and how many lines
were left out (no summary when nothing was left out).

Nothing secret is logged: callers pass the peer address, the reason and the cursor, never the
request path or headers (the bearer token travels in one or the other).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from structlog.typing import FilteringBoundLogger

__all__ = ["REFUSALS", "ConnectionLog", "EventBudget", "peer_of"]

REFUSALS = {
    # ws_refused reason: (alphapulse_signals_ws_closed_total label, close reason to the client)
    "auth": ("unauthorized", "unauthorized: a valid bearer token is required"),
    "limit": ("too_many", "too many connections, try again later"),
    "bad_request": ("bad_request", "bad subscribe message"),
    "resume_too_long": ("resume_too_long", "resume_from is too far behind"),
    "unavailable": ("unavailable", "signals are unavailable for now, try again later"),
}


class EventBudget:
    """How many lines each kind of event may still log in the current interval (pure)."""

    def __init__(self, lines: int, interval_s: float, now: float) -> None:
        self.lines = lines
        self.interval_s = interval_s
        self.started = now
        self.counts: Counter[str] = Counter()
        self.logged: Counter[str] = Counter()

    def admit(self, kind: str) -> bool:
        """Count one event of ``kind``; True while its kind still has lines in this interval."""
        self.counts[kind] += 1
        if self.logged[kind] >= self.lines:
            return False
        self.logged[kind] += 1
        return True

    def roll(self, now: float, *, force: bool = False) -> dict[str, Any] | None:
        """At or after the end of the interval (or at once with ``force``), start a new one and
        return the summary of the old one when some of its lines were left out; else None."""
        if now - self.started < self.interval_s and not force:
            return None
        suppressed = self.counts.total() - self.logged.total()
        summary = (
            {
                "interval_s": round(now - self.started, 3),
                "events": dict(sorted(self.counts.items())),
                "suppressed": suppressed,
            }
            if suppressed
            else None
        )
        self.started = now
        self.counts.clear()
        self.logged.clear()
        return summary


class ConnectionLog:
    """Logs connection events through an ``EventBudget``; ``flush`` writes the summary."""

    def __init__(
        self,
        log: FilteringBoundLogger,
        *,
        lines: int,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.clock = clock
        self.budget = EventBudget(lines, interval_s, clock())

    def event(self, event: str, reason: str | None = None, **fields: Any) -> None:
        """Log ``event`` (with ``reason``, if any) unless its kind has used up its lines."""
        self.flush()
        kind = f"{event}:{reason}" if reason else event
        if not self.budget.admit(kind):
            return
        if reason:
            fields["reason"] = reason
        self.log.info(event, **fields)

    def flush(self, *, force: bool = False) -> None:
        """Close the interval if it is over (``force``: now, e.g. at shutdown): one summary
        line when lines were left out."""
        summary = self.budget.roll(self.clock(), force=force)
        if summary is not None:
            self.log.warning("ws_events_summary", **summary)


def peer_of(remote_address: Any) -> str:
    """``host:port`` of a connection's peer (``"?"`` when the socket does not say)."""
    if isinstance(remote_address, tuple) and len(remote_address) >= 2:
        return f"{remote_address[0]}:{remote_address[1]}"
    return "?"
