"""Exchange adapters (pure client protocol code) and their registry.

``get_adapter(name)`` returns the shared adapter of one exchange market; ``EXCHANGES`` lists
the names: ``binance``, ``binance-futures`` (USDⓈ-M), ``coinbase`` (Advanced Trade),
``kraken`` (WebSocket v2), ``bybit`` (v5 spot), ``bybit-linear`` (v5 USDT/USDC
perpetuals and futures), ``okx`` (v5, any instrument type). The interface is in
``ingest.venues.base``.
"""

from __future__ import annotations

from typing import Final

from ingest.venues.base import (
    BAD_INPUT_REASONS,
    ExchangeAdapter,
    FrameKind,
    Heartbeat,
    ParseResult,
)
from ingest.venues.registry import LazyRegistry

# name -> "module:Class"; imported on first use so one exchange's module costs nothing to
# the others (and the simulator and ingest share the same instances).
_SPEC: Final = {
    "binance": "ingest.venues.binance:BinanceSpot",
    "binance-futures": "ingest.venues.binance:BinanceFutures",
    "coinbase": "ingest.venues.coinbase:Coinbase",
    "kraken": "ingest.venues.kraken:Kraken",
    "bybit": "ingest.venues.bybit:BybitSpot",
    "bybit-linear": "ingest.venues.bybit:BybitLinear",
    "okx": "ingest.venues.okx:Okx",
}
_ADAPTERS: Final[LazyRegistry[ExchangeAdapter]] = LazyRegistry(
    ExchangeAdapter, _SPEC, "exchange", lambda cls, _: cls()
)
EXCHANGES: Final = _ADAPTERS.names
ADAPTERS: Final = _ADAPTERS.built  # the adapters built so far, by name


def get_adapter(name: str) -> ExchangeAdapter:
    """The adapter called ``name``; ``KeyError`` naming the known ones otherwise."""
    return _ADAPTERS.get(name)


__all__ = [
    "ADAPTERS",
    "BAD_INPUT_REASONS",
    "EXCHANGES",
    "ExchangeAdapter",
    "FrameKind",
    "Heartbeat",
    "ParseResult",
    "get_adapter",
]
