"""The simulator's text helpers: reading what a client sent, writing what an exchange sends.

JSON client messages and REST query strings in; compact JSON frames, decimal strings as
exchanges print them (never an exponent) and ISO-8601 times with the exchange's precision
out. Shared by the server halves of ``ingest.simulator.venues``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import orjson

from common.errors import BadInput

_NS: Final = 1_000_000_000


def client_request(message: str | bytes) -> dict[str, Any] | None:
    """A simulated exchange's view of a client message: the JSON object, or None if it is not
    one (the session then replies with the exchange's error)."""
    try:
        req = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    return req if isinstance(req, dict) else None


def history_request(
    params: Mapping[str, str], keys: tuple[str, str, str], default_limit: int
) -> tuple[str, int, int]:
    """(native symbol, start, limit) of a REST history query string whose ``keys`` name the
    symbol, the integer start (a trade id or a time) and the limit; ``BadInput`` when one is
    missing or not a whole number, as the exchange refuses such a request."""
    symbol, start, limit = keys
    native, first = params.get(symbol, ""), params.get(start, "")
    most = params.get(limit, str(default_limit))
    if not native or not first.isdigit() or not most.isdigit():
        raise BadInput("missing_field", f"{symbol}, {start} and {limit} are needed")
    return native, int(first), int(most)


def json_text(obj: Any) -> str:
    """``obj`` as one compact JSON text frame."""
    return orjson.dumps(obj).decode()


def ns_to_iso8601(ns: int, digits: int = 9) -> str:
    """Epoch ns → ``YYYY-MM-DDTHH:MM:SS.<digits>Z`` (truncating below ``digits``)."""
    sec, frac = divmod(ns, _NS)
    stamp = _dt.datetime.fromtimestamp(sec, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits <= 0:
        return stamp + "Z"
    return f"{stamp}.{frac // 10 ** (9 - digits):0{digits}d}Z"


def fmt_decimal(x: float, places: int | None = None) -> str:
    """A float as an exchange writes it: fixed ``places`` when that is exact, else the
    shortest digits that read back as ``x`` — never an exponent (exchanges send none)."""
    if places is not None:
        fixed = f"{x:.{places}f}"
        if float(fixed) == x:
            return fixed
    text = repr(x)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text
