"""The simulator's market model (pure): per-symbol trade streams, replay clock, faults.

``alphapulse simulate`` is a thin websockets shell around this module.

How a replay behaves (and why)
------------------------------
* Each symbol is a stream of trades with a shared **head** (how far the market has got).
  A trade becomes *due* when the replay clock reaches it: ``--speed 1`` follows the trade
  timestamps in real time, ``--speed 10`` ten times faster, ``--speed 0`` makes everything due
  at once (as fast as the sockets take it).
* Every subscription of a connection has its own **cursor**. A new subscription starts at
  ``head - overlap``: a real exchange does not replay the past, but a reconnecting client
  gets the last ``overlap`` trades again (like the duplicate trades a client sees across
  Binance's 24-hour cut), rendered as the exchange's snapshot message where it has one
  (Kraken, Coinbase), so ingest must de-duplicate them. The
  head moves on only as subscribers receive trades, so a trade due while nobody was
  connected is delivered after the reconnect (then overlap-repeated): no trade of a
  subscribed symbol is ever lost by the simulator itself, which makes "exactly once" testable
  under disconnects. Trades are removed only by deliberate gap injection.
* ``loop`` repeats the file: round ``k`` shifts times by ``k`` spans and integer trade ids by
  ``k`` id ranges (other ids get a ``.k`` suffix), so ids keep increasing and never repeat.
* Gap injection (``skip_every=N``) removes the ``N``-th, ``2N``-th, ... trade of each symbol
  before the replay starts; each removed id is one gap of one trade, listed in
  ``Feed.skipped`` (within the first round), so a test compares them with what ingest counted.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from common.contracts import Tick
from ingest.venues.base import HistoryQuery


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault injection options of one simulator (per connection unless said otherwise)."""

    drop_every_s: float = 0.0  # close each connection after this many seconds (0 = never)
    drop_after_frames: int = 0  # ... or after sending this many trade frames
    malformed_every: int = 0  # send a malformed frame after every N-th trade frame
    duplicate_every: int = 0  # send every N-th trade frame twice
    skip_every: int = 0  # remove every N-th trade of each symbol (gap injection, per feed)
    stall_every_s: float = 0.0  # hang (no trades, no pongs) this long into each connection,
    stall_for_s: float = 0.0  # ... then cut it this much later
    rest_down: bool = False  # answer every REST history request with HTTP 503


@dataclass(slots=True)
class SymbolStream:
    """One symbol's trades (after gap injection) and how far the market has got."""

    ticks: list[Tick]
    offsets: list[int]  # ns of each trade after the feed's first trade (sorted)
    span_ns: int  # one round of the loop, in ns
    id_span: int  # one round of the loop, in integer trade ids
    head: int = 0  # trades delivered to at least one subscriber (virtual index when looping)

    def tick_at(self, index: int) -> Tick:
        """The trade at virtual ``index`` (beyond the file when looping: shifted)."""
        n = len(self.ticks)
        rnd, i = divmod(index, n)
        t = self.ticks[i]
        if rnd == 0:
            return t
        shift = rnd * self.span_ns
        tid = t.trade_id
        new_id = str(int(tid) + rnd * self.id_span) if tid.isdigit() else f"{tid}.{rnd}"
        return Tick(t.exchange, t.symbol, t.native_symbol, new_id, t.price, t.qty, t.side,
                    t.ts + shift, t.recv_ts + shift)  # fmt: skip

    def due(self, elapsed_ns: float, loop: bool) -> int:
        """How many trades (virtual index) are due after ``elapsed_ns`` of replay time."""
        n = len(self.ticks)
        if not loop:
            return bisect.bisect_right(self.offsets, elapsed_ns)
        if elapsed_ns == float("inf"):  # speed 0 and looping: endless
            return sys.maxsize
        rnd, rest = divmod(int(elapsed_ns), self.span_ns)
        return rnd * n + bisect.bisect_right(self.offsets, rest)

    def next_due_ns(self, index: int) -> int:
        """Replay time (ns after start) at which virtual ``index`` becomes due."""
        rnd, i = divmod(index, len(self.ticks))
        return rnd * self.span_ns + self.offsets[i]


@dataclass(slots=True)
class Feed:
    """All symbols one simulated exchange serves, keyed by native symbol."""

    exchange: str
    symbols: dict[str, SymbolStream]
    loop: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (native symbol, trade id)

    @classmethod
    def build(
        cls, exchange: str, ticks: Iterable[Tick], *, loop: bool = False, skip_every: int = 0
    ) -> Feed:
        by_symbol: dict[str, list[Tick]] = {}
        for t in ticks:
            if t.exchange != exchange:
                raise ValueError(f"tick of {t.exchange!r} in the {exchange!r} feed")
            by_symbol.setdefault(t.native_symbol, []).append(t)
        if not by_symbol:
            raise ValueError(f"{exchange}: no trades to replay")
        start = min(ts[0].ts for ts in by_symbol.values())
        end = max(ts[-1].ts for ts in by_symbol.values())
        skipped: list[tuple[str, str]] = []
        streams: dict[str, SymbolStream] = {}
        for native, all_ticks in by_symbol.items():
            kept = all_ticks
            if skip_every > 1:
                kept = []
                for i, t in enumerate(all_ticks, start=1):
                    if i % skip_every == 0 and i != len(all_ticks):
                        skipped.append((native, t.trade_id))
                    else:
                        kept.append(t)
            ids = [int(t.trade_id) for t in all_ticks if t.trade_id.isdigit()]
            id_span = max(ids) - min(ids) + 1 if ids else 0
            streams[native] = SymbolStream(
                ticks=kept,
                offsets=[t.ts - start for t in kept],
                span_ns=max(1, end - start + 1_000_000),  # a 1 ms pause between rounds
                id_span=id_span,
            )
        return cls(exchange, streams, loop, skipped)

    def total(self) -> int:
        """Trades one full (non-looping) replay delivers, over all symbols."""
        return sum(len(s.ticks) for s in self.symbols.values())

    def finished(self) -> bool:
        """True when every symbol was delivered to the end (never when looping)."""
        return not self.loop and all(s.head >= len(s.ticks) for s in self.symbols.values())


@dataclass(slots=True)
class Subscription:
    """One connection's position in one symbol's stream."""

    stream: SymbolStream
    cursor: int
    replay_end: int = 0  # trades below this index are the overlap (sent as a snapshot)

    @classmethod
    def start(cls, stream: SymbolStream, overlap: int) -> Subscription:
        return cls(stream, max(0, stream.head - overlap), stream.head)

    @property
    def in_snapshot(self) -> bool:
        """The next trades are the overlap: exchanges that send recent trades on subscribe
        (Kraken, Coinbase) send them as a snapshot message."""
        return self.cursor < self.replay_end

    def take(self, due: int, limit: int) -> list[Tick]:
        """The next trades due (at most ``limit``, and never mixing the overlap with live
        trades), advancing the cursor and the head."""
        if self.in_snapshot:
            limit = min(limit, self.replay_end - self.cursor)
        end = min(due, self.cursor + limit)
        if end <= self.cursor:
            return []
        stream = self.stream
        if end <= len(stream.ticks):
            out = stream.ticks[self.cursor : end]
        else:
            out = [stream.tick_at(i) for i in range(self.cursor, end)]
        self.cursor = end
        stream.head = max(stream.head, end)
        return out


def history_slice(stream: SymbolStream, query: HistoryQuery, loop: bool) -> list[Tick]:
    """What the exchange's REST history answers for ``query`` (pure): trades the market has
    got to (virtual indexes below the stream's head), from id ``from_id`` on or at/after
    time ``since_ns``, at most ``limit``, in order. Ids and times grow along the stream (also
    across loop rounds), so the first one wanted is found by bisection."""
    head = stream.head if loop else min(stream.head, len(stream.ticks))
    if query.from_id is not None:
        want = query.from_id

        def before(i: int) -> bool:
            tid = stream.tick_at(i).trade_id
            return tid.isdigit() and int(tid) < want

    else:
        since = query.since_ns or 0

        def before(i: int) -> bool:
            return stream.tick_at(i).ts < since

    lo, hi = 0, head
    while lo < hi:
        mid = (lo + hi) // 2
        if before(mid):
            lo = mid + 1
        else:
            hi = mid
    return [stream.tick_at(i) for i in range(lo, min(head, lo + max(0, query.limit)))]


class FrameFaults:
    """Per-connection frame faults: which frames to repeat, when to add a malformed one."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.trade_frames = 0

    def expand(self, frames: Sequence[str]) -> list[str]:
        """``frames`` as they should go on the wire, with duplicates and malformed frames."""
        f = self.faults
        if not (f.duplicate_every or f.malformed_every):
            self.trade_frames += len(frames)
            return list(frames)
        out: list[str] = []
        for frame in frames:
            self.trade_frames += 1
            out.append(frame)
            if f.duplicate_every and self.trade_frames % f.duplicate_every == 0:
                out.append(frame)
            if f.malformed_every and self.trade_frames % f.malformed_every == 0:
                out.append(malformed(frame, self.trade_frames // f.malformed_every))
        return out

    def should_drop(self) -> bool:
        n = self.faults.drop_after_frames
        return bool(n) and self.trade_frames >= n


def malformed(frame: str, k: int) -> str:
    """A broken variant of a real frame (rotating kinds: truncated JSON, binary junk, a
    trade with a negative price where the frame has a quoted decimal)."""
    kind = k % 3
    if kind == 0:
        return frame[: max(1, len(frame) // 2)]
    if kind == 1:
        return "\x00\x01not json at all"
    # Corrupt the first quoted positive decimal (the price in every exchange's trade frame
    # that quotes numbers); frames without one fall back to truncation.
    i = frame.find('":"')
    while i != -1:
        j = i + 3
        if j < len(frame) and frame[j].isdigit():
            k2 = frame.find('"', j)
            if "." in frame[j:k2]:
                return frame[:j] + "-" + frame[j:]
        i = frame.find('":"', j)
    return frame[: max(1, len(frame) // 2)]
