"""The sink's pending batch: rows waiting for the next flush, with the entries they came from.

Pure bookkeeping, no I/O. A flush writes ``rows`` (per table) in one transaction, then
dead-letters the rejected rows (``origin`` says which entry each row came from) and acks
``entries``. Its size is bounded by the worker: it stops reading once ``count`` reaches the
batch size, and reads no further while a flush is being retried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from common.stream_worker import Entry
from sink.rows import Rows


@dataclass(slots=True)
class PendingBatch:
    rows: dict[str, Rows] = field(default_factory=dict)
    origins: dict[str, list[Entry]] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    count: int = 0
    first_at: float = 0.0

    def add(self, entry: Entry, table: str, rows: Rows) -> None:
        """Add one entry's rows (an entry with no rows is still acked at the next flush).

        The batch takes ``rows`` over (a decoder's fresh list or ``TickRows``) as its
        table's first rows and extends them with the next entries' rows of that table.
        """
        if not self.entries:
            self.first_at = time.monotonic()
        self.entries.append(entry)
        if rows:
            held = self.rows.get(table)
            if held is None:
                self.rows[table] = rows
            else:
                held.extend(rows)
            self.origins.setdefault(table, []).extend([entry] * len(rows))
            self.count += len(rows)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def age_s(self) -> float:
        """Seconds since the oldest entry of the batch arrived (0 when empty)."""
        return time.monotonic() - self.first_at if self.entries else 0.0

    def due(self, max_rows: int, max_age_s: float) -> bool:
        """Whether a flush is due: enough rows, or the oldest has waited long enough."""
        return bool(self.entries) and (self.count >= max_rows or self.age_s() >= max_age_s)

    def newest_ms(self) -> dict[str, int]:
        """Per stream, the time (ms, from the entry id) of the newest entry in the batch."""
        out: dict[str, int] = {}
        for e in self.entries:
            ms = int(e.id.split("-", 1)[0])
            if ms > out.get(e.stream, -1):
                out[e.stream] = ms
        return out

    def clear(self) -> None:
        self.rows = {}
        self.origins = {}
        self.entries = []
        self.count = 0
        self.first_at = 0.0
