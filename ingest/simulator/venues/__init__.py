"""The simulator's server halves, one per exchange market it can stand in for.

``get_server(name)`` returns the shared ``VenueServer`` of an exchange (built around its
client adapter, ``ingest.venues.get_adapter``); ``SIMULATED`` lists the names. An exchange
adapter without an entry here still works live: the simulator just cannot serve it.
``stream_url``/``rest_url`` say where a simulator on ``host:port`` serves an exchange.
"""

from __future__ import annotations

from typing import Final

from ingest.simulator.venues.base import ServerReply, ServerSession, VenueServer
from ingest.venues import get_adapter
from ingest.venues.registry import LazyRegistry

# name -> "module:Class"; imported on first use, like the adapters.
_SPEC: Final = {
    "binance": "ingest.simulator.venues.binance:BinanceServer",
    "binance-futures": "ingest.simulator.venues.binance:BinanceServer",
    "coinbase": "ingest.simulator.venues.coinbase:CoinbaseServer",
    "kraken": "ingest.simulator.venues.kraken:KrakenServer",
    "bybit": "ingest.simulator.venues.bybit:BybitServer",
    "bybit-linear": "ingest.simulator.venues.bybit:BybitServer",
    "okx": "ingest.simulator.venues.okx:OkxServer",
}
_SERVERS: Final[LazyRegistry[VenueServer]] = LazyRegistry(
    VenueServer, _SPEC, "simulated exchange", lambda cls, name: cls(get_adapter(name))
)
SIMULATED: Final = _SERVERS.names


def get_server(name: str) -> VenueServer:
    """The server half of exchange ``name``; ``KeyError`` naming the simulated ones
    otherwise."""
    return _SERVERS.get(name)


def stream_url(host: str, port: int, exchange: str) -> str:
    """Where ingest connects for ``exchange`` on a simulator at ``host:port``
    (its ``INGEST_URL_*``): the exchange's name, then the path the real exchange uses."""
    return f"ws://{host}:{port}/{exchange}{get_server(exchange).path}"


def rest_url(host: str, port: int, exchange: str) -> str:
    """Where ingest fetches ``exchange``'s REST history from that simulator
    (its ``INGEST_REST_URL_*``)."""
    return f"http://{host}:{port}/{exchange}"


__all__ = [
    "SIMULATED",
    "ServerReply",
    "ServerSession",
    "VenueServer",
    "get_server",
    "rest_url",
    "stream_url",
]
