"""Field helpers shared by the exchange parsers and renderers: strict, and fast where it counts.

Every helper raises ``BadInput`` with a reason from ``base.BAD_INPUT_REASONS`` — never
``KeyError``/``ValueError`` — so a parser built from them cannot leak another exception.
Times are kept as integer nanoseconds from end to end: ISO-8601 strings are split by hand
(``datetime`` keeps only microseconds and a float timestamp would round), millisecond
integers are multiplied.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

import orjson

from common.contracts import Side
from common.errors import BadInput
from common.plausibility import MAX_TS_NS, MIN_TS_NS

_EPOCH_ORDINAL: Final = _dt.date(1970, 1, 1).toordinal()
_NS: Final = 1_000_000_000


def load_json(frame: str | bytes, max_bytes: int) -> Any:
    """Decode one frame, enforcing the size limit first."""
    if len(frame) > max_bytes:
        raise BadInput("frame_too_large", f"{len(frame)} > {max_bytes} bytes")
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError as e:
        raise BadInput("invalid_json", str(e)[:200]) from None


def load_object(frame: str | bytes, max_bytes: int) -> dict[str, Any]:
    """Decode a frame that must be a JSON object."""
    msg = load_json(frame, max_bytes)
    if not isinstance(msg, dict):
        raise BadInput("unknown_frame", f"top level is {type(msg).__name__}, not an object")
    return msg


def get(obj: Mapping[str, Any], key: str) -> Any:
    """``obj[key]``, or ``BadInput("missing_field")``."""
    try:
        return obj[key]
    except KeyError:
        raise BadInput("missing_field", key) from None


def get_str(obj: Mapping[str, Any], key: str) -> str:
    value = get(obj, key)
    if not isinstance(value, str):
        raise BadInput("bad_type", f"{key} is {type(value).__name__}, expected string")
    return value


def get_list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = get(obj, key)
    if not isinstance(value, list):
        raise BadInput("bad_type", f"{key} is {type(value).__name__}, expected array")
    return value


def get_dict(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = get(obj, key)
    if not isinstance(value, dict):
        raise BadInput("bad_type", f"{key} is {type(value).__name__}, expected object")
    return value


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadInput("bad_type", f"{what} is {type(value).__name__}, expected object")
    return value


def decimal_str(value: Any, key: str) -> float:
    """A price/size sent as a decimal string (or, for Kraken v2, a JSON number) → float."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise BadInput("bad_type", f"{key}={value[:40]!r} is not a number") from None
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value)
    raise BadInput("bad_type", f"{key} is {type(value).__name__}, expected a number")


def int_id(value: Any, key: str) -> str:
    """An integer trade id (JSON int) → its decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise BadInput("bad_type", f"{key} is {type(value).__name__}, expected integer")


def str_id(value: Any, key: str) -> str:
    """A trade id sent as a non-empty string (or an integer) → string."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise BadInput("bad_type", f"{key}={value!r:.40} is not a trade id")


def ms_to_ns(value: Any, key: str) -> int:
    """Epoch milliseconds (JSON int, or a digit string as OKX sends) → ns, range-checked."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadInput("bad_type", f"{key}={value!r:.40} is not epoch milliseconds")
    ns = value * 1_000_000
    if not MIN_TS_NS <= ns < MAX_TS_NS:
        raise BadInput("absurd_value", f"{key}={value} ms is outside 2010..2100")
    return ns


def _digits(s: str, a: int, b: int) -> int:
    part = s[a:b]
    if not (part.isascii() and part.isdigit()):
        raise BadInput("bad_type", f"timestamp {s[:40]!r} is not ISO-8601")
    return int(part)


#: "YYYY-MM-DDTHH:MM" → epoch seconds of that minute. Trade times of a feed share their
#: minute, so the calendar work is done once a minute instead of once a trade.
_MINUTES: dict[str, int] = {}
_MINUTES_MAX: Final = 4096


def _minute_start(s: str, key: str) -> int:
    if s[4] != "-" or s[7] != "-" or s[10] not in "Tt " or s[13] != ":":
        raise BadInput("bad_type", f"{key}={s[:40]!r} is not ISO-8601")
    year, month, day = _digits(s, 0, 4), _digits(s, 5, 7), _digits(s, 8, 10)
    hour, minute = _digits(s, 11, 13), _digits(s, 14, 16)
    if hour > 23 or minute > 59:
        raise BadInput("bad_type", f"{key}={s[:40]!r} has an invalid time of day")
    try:
        days = _dt.date(year, month, day).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise BadInput("bad_type", f"{key}={s[:40]!r} has an invalid date") from None
    start = days * 86_400 + hour * 3_600 + minute * 60
    if len(_MINUTES) >= _MINUTES_MAX:
        _MINUTES.clear()
    _MINUTES[s[:16]] = start
    return start


def iso8601_to_ns(value: Any, key: str = "time") -> int:
    """``YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+00:00)`` (UTC) → epoch ns, exactly.

    Coinbase sends nanoseconds, Kraken microseconds; both end in ``Z``. Only UTC is accepted:
    an exchange that sent another offset would be sending something we do not understand.
    """
    if type(value) is not str or not 20 <= len(value) <= 40:
        raise BadInput("bad_type", f"{key}={value!r:.40} is not an ISO-8601 timestamp")
    s = value
    minute = _MINUTES.get(s[:16])
    if minute is None:
        minute = _minute_start(s, key)
    sec = s[17:19]
    if s[16] != ":" or not (sec.isascii() and sec.isdigit()) or sec > "59":
        raise BadInput("bad_type", f"{key}={s[:40]!r} has invalid seconds")
    if s[-1] in "Zz":
        tail = s[19:-1]
    elif s.endswith("+00:00"):
        tail = s[19:-6]
    else:
        raise BadInput("bad_type", f"{key}={s[:40]!r} is not UTC")
    frac = 0
    if tail:
        digits = tail[1:]
        if tail[0] != "." or not 1 <= len(digits) <= 9 or not digits.isascii():
            raise BadInput("bad_type", f"{key}={s[:40]!r} has a bad fraction")
        if not digits.isdigit():
            raise BadInput("bad_type", f"{key}={s[:40]!r} has a bad fraction")
        frac = int(digits) * 10 ** (9 - len(digits))
    ns = (minute + int(sec)) * _NS + frac
    if not MIN_TS_NS <= ns < MAX_TS_NS:
        raise BadInput("absurd_value", f"{key}={s[:40]!r} is outside 2010..2100")
    return ns


def read_side(value: Any, key: str, sides: Mapping[str, Side] | None) -> Side:
    """The taker side: ``sides`` maps the wire values to it (``{"Buy": "buy", ...}``, or the
    opposite where the exchange prints the maker's side); None means ``value`` is a JSON
    boolean that is true when the buyer was the maker (Binance ``m``), i.e. the taker sold."""
    if sides is None:
        if type(value) is bool:
            return "sell" if value else "buy"
        raise BadInput("bad_type", f"{key} is {type(value).__name__}, expected boolean")
    side = sides.get(value) if type(value) is str else None
    if side is None:
        raise BadInput("bad_type", f"{key}={value!r:.40} is not {' or '.join(map(repr, sides))}")
    return side


class TradeFields(NamedTuple):
    """Where an exchange's JSON trade object keeps each field, and how the id and the time
    are read (``ExchangeAdapter.read_trade``): one table per exchange instead of one reader
    per exchange."""

    symbol: str  # "" where the object has none (a REST history row of one symbol)
    trade_id: str
    price: str
    qty: str
    side: str
    time: str
    #: Wire value → taker side; None: a "buyer was the maker" boolean (``read_side``).
    sides: Mapping[str, Side] | None
    read_id: Callable[[Any, str], str] = str_id
    read_time: Callable[[Any, str], int] = ms_to_ns


#: ``sides`` of exchanges that print the taker's side as ``buy``/``sell``.
TAKER_SIDES: Final[Mapping[str, Side]] = {"buy": "buy", "sell": "sell"}
