"""Symbol spelling: exchange-native names ↔ the normalized ``BASE-QUOTE[-KIND]`` ones.

Each adapter spells its own market (``ExchangeAdapter.normalize``/``to_native``); what is
shared lives here: splitting glued-together names (Binance and Bybit write ``BTCUSDT``) and
reading a symbol a person wrote either way (``EXCHANGES=binance:BTC-USDT`` or ``BTCUSDT``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from common.errors import BadInput

if TYPE_CHECKING:
    from ingest.venues.base import ExchangeAdapter


def symbol_names(adapter: ExchangeAdapter, symbol: str) -> tuple[str, str]:
    """(normalized, native) of a symbol written natively (``BTCUSDT``, ``BTC/USD``) or
    normalized (``BTC-USDT``), in any case. A spelling is taken as normalized when it survives
    the round trip ``normalize(to_native(s)) == s`` (some natives, like Coinbase's, are both)."""
    upper = symbol.strip().upper()
    native = native_of(adapter, upper)
    if native is not None:
        return upper, native
    return adapter.normalize(upper), upper


def native_of(adapter: ExchangeAdapter, symbol: str) -> str | None:
    """The native spelling of the normalized ``symbol`` on ``adapter``'s market, or None when
    it is not one the market spells (the round trip through ``to_native`` changes it)."""
    try:
        native = adapter.to_native(symbol)
        return native if adapter.normalize(native) == symbol else None
    except BadInput:
        return None


class ConcatSpot:
    """``normalize``/``to_native`` of spot markets that glue base and quote together
    (Binance, Bybit: ``BTCUSDT`` ↔ ``BTC-USDT``); listed before the adapter's base class."""

    def normalize(self, native: str) -> str:
        return concat_spot_symbol(native)

    def to_native(self, symbol: str) -> str:
        return concat_spot_native(symbol)


def derivative_parts(symbol: str) -> tuple[str, str, str]:
    """``BTC-USDT-PERP`` / ``BTC-USD-250926`` → (base, quote, kind), upper case;
    ``BadInput("unknown_symbol")`` for any other shape."""
    parts = symbol.upper().split("-")
    if len(parts) != 3:
        raise BadInput("unknown_symbol", f"{symbol!r} is not BASE-QUOTE-PERP|EXPIRY")
    base, quote, kind = parts
    return base, quote, kind


def concat_spot_symbol(native: str) -> str:
    """Binance/Bybit spot ``BTCUSDT`` → ``BTC-USDT``."""
    base, quote = split_concatenated(native, CONCAT_QUOTES)
    return f"{base}-{quote}"


def concat_spot_native(symbol: str) -> str:
    """``BTC-USDT`` → ``BTCUSDT`` (inverse of ``concat_spot_symbol``)."""
    return symbol.replace("-", "").upper()


def split_concatenated(native: str, quotes: tuple[str, ...]) -> tuple[str, str]:
    """``BTCUSDT`` → (``BTC``, ``USDT``) by the longest known quote suffix.

    Binance and Bybit glue base and quote together, so a list of quote assets is the only
    way to split them; ``quotes`` must be ordered longest first. Only letters and digits
    are accepted: a separator (``eth-usdt``, ``BTC/USDT``) is not this exchange's spelling,
    and splitting it anyway would make a symbol like ``ETH--USDT``.
    """
    up = native.upper()
    if not (up.isascii() and up.isalnum()):
        raise BadInput("unknown_symbol", f"{native[:40]!r} is not letters and digits only")
    for q in quotes:
        if up.endswith(q) and len(up) > len(q):
            return up[: -len(q)], q
    raise BadInput("unknown_symbol", f"cannot split {native[:40]!r} into base and quote")


#: Quote assets of Binance/Bybit symbols, longest first (so FDUSD wins over USD).
CONCAT_QUOTES: Final = tuple(
    sorted(
        (
            "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USDP", "USDE", "DAI", "USD", "BTC",
            "ETH", "BNB", "EUR", "EURI", "AEUR", "TRY", "BRL", "GBP", "AUD", "JPY", "RUB",
            "UAH", "PLN", "ZAR", "ARS", "MXN", "COP", "IDR", "NGN", "XRP", "DOGE", "DOT",
            "TRX", "SOL", "MNT", "BRZ", "CZK", "RON", "KZT", "UST",
        ),
        key=len,
        reverse=True,
    )
)  # fmt: skip
