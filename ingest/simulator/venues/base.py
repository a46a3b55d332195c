"""The simulator's half of an exchange protocol: the interface (text helpers: ``wire``).

A ``VenueServer`` is what the simulator knows of one exchange market on top of its client
adapter (``ingest.venues``): the URL path it serves on, a fresh ``ServerSession`` per
connection (replies to subscribe requests and pings with the exchange's real acks/pongs,
renders trades exactly as the exchange sends them) and, where the exchange has one, its REST
trade history (``history_query`` reads a request, ``render_history`` writes the reply). All
pure: ``ingest.simulator.server`` does the I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from common.contracts import Tick
from ingest.venues.base import ExchangeAdapter, HistoryQuery


@dataclass(slots=True)
class ServerReply:
    """What the simulator does with one client message: frames to send, subscription changes."""

    frames: list[str] = field(default_factory=list)
    subscribed: list[str] = field(default_factory=list)  # native symbols
    unsubscribed: list[str] = field(default_factory=list)
    close: bool = False  # the exchange would close the connection (e.g. invalid request)


class ServerSession(ABC):
    """Server-side protocol state of one simulated connection (pure; the simulator does I/O).

    Holds what an exchange tracks per connection (subscriptions, sequence numbers) so the
    frames rendered are exactly what a real client would receive.
    """

    def __init__(self) -> None:
        self.subscribed: set[str] = set()

    def on_connect(self, path: str) -> ServerReply:
        """Frames sent on connect and subscriptions implied by the URL (Binance ``?streams=``)."""
        del path
        return ServerReply()

    @abstractmethod
    def handle(self, message: str | bytes) -> ServerReply:
        """Reply to one client message (subscribe → ack, ping → pong, junk → error)."""

    @abstractmethod
    def render_trades(self, ticks: Sequence[Tick], *, snapshot: bool = False) -> list[str]:
        """The frames the exchange would send for these trades (consecutive same-symbol
        trades may share a frame, as the exchange batches them)."""

    def heartbeat(self) -> list[str]:
        """Periodic server frames (Coinbase/Kraken heartbeat); empty where there are none."""
        return []

    def subscription_change(self, op: str, natives: list[str]) -> ServerReply:
        """A reply recording ``natives`` as subscribed (``op == "subscribe"``) or
        unsubscribed (any other op), with no frames yet."""
        if op == "subscribe":
            self.subscribed.update(natives)
            return ServerReply(subscribed=natives)
        self.subscribed.difference_update(natives)
        return ServerReply(unsubscribed=natives)


class VenueServer(ABC):
    """The simulator's knowledge of one exchange market (stateless and shared)."""

    def __init__(self, adapter: ExchangeAdapter) -> None:
        self.adapter = adapter

    @property
    def path(self) -> str:
        """URL path the real exchange serves its stream on (the simulator serves the same)."""
        return urlsplit(self.adapter.default_url).path or "/"

    @abstractmethod
    def session(self) -> ServerSession:
        """A fresh server-side protocol state for one simulated connection."""

    def history_query(self, params: Mapping[str, str]) -> HistoryQuery:
        """The query string of a REST history request → what it asks (``BadInput`` when it
        is not one the exchange would accept)."""
        raise NotImplementedError(f"{self.adapter.name} has no REST trade history")

    def render_history(self, ticks: Sequence[Tick], query: HistoryQuery) -> bytes:
        """The response body the exchange sends for ``ticks``."""
        raise NotImplementedError(f"{self.adapter.name} has no REST trade history")
