"""Exchange adapters (pure client protocol code) and their registry.

``get_adapter(name)`` returns the shared adapter of one exchange market; ``EXCHANGES`` lists
the names: ``binance``, ``binance-futures`` (USDⓈ-M), ``coinbase`` (Advanced Trade),
``kraken`` (WebSocket v2), ``bybit`` (v5 spot), ``bybit-linear`` (v5 USDT/USDC
perpetuals and futures), ``okx`` (v5, any instrument type). The interface is in
``ingest.venues.base``.
"""

from __future__ import annotations

import importlib
from typing import Final

from ingest.venues.base import (
    BAD_INPUT_REASONS,
    ExchangeAdapter,
    FrameKind,
    Heartbeat,
    ParseResult,
)

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
EXCHANGES: Final = tuple(_SPEC)
ADAPTERS: dict[str, ExchangeAdapter] = {}


def get_adapter(name: str) -> ExchangeAdapter:
    """The adapter called ``name``; ``KeyError`` naming the known ones otherwise."""
    adapter = ADAPTERS.get(name)
    if adapter is None:
        spec = _SPEC.get(name)
        if spec is None:
            raise KeyError(f"unknown exchange {name!r}; known: {', '.join(EXCHANGES)}")
        module, cls = spec.split(":")
        adapter = getattr(importlib.import_module(module), cls)()
        assert isinstance(adapter, ExchangeAdapter)
        ADAPTERS[name] = adapter
    return adapter


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
