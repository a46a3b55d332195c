"""The public ``signals`` contract: the ``Signal`` record, its JSON form and its stream codec.

The JSON form (``signal_to_json``) is what every consumer sees — on the ``signals`` stream, on
pub/sub, over the WebSocket server and in ``replay``'s ``signals.jsonl``. Its JSON Schema is
``signals/schema/signal.v1.json``. Compatibility rule: within ``v`` = 1 fields are only
*added*, never removed, renamed or retyped; readers must ignore fields they do not know. A
breaking change is a new version with a new schema file.

Example (one line on the stream, pretty-printed; a hammer after a downtrend, the spinning top
read against the trend too)::

    {"v": 1, "id": "binance:BTCUSDT:1m:1723161240000:long",
     "exchange": "binance", "symbol": "BTCUSDT", "timeframe": "1m",
     "open_time": "2024-08-08T23:54:00.000Z", "open_time_ms": 1723161240000,
     "direction": "long", "score": 0.8902,
     "patterns": {"CDLHAMMER": 100, "CDLSPINNINGTOP": -100},
     "supporting": ["CDLHAMMER", "CDLSPINNINGTOP"],
     "features": {"volume_ratio": 1.2, "trend": -1, "htf_trend": 1, "rsi": 41.5},
     "model": "v1:182570480c42", "emitted_at": "2024-08-08T23:55:00.012Z",
     "close": 61850.5, "contributions": {"CDLHAMMER": 0.7, "CDLSPINNINGTOP": 0.2275}}

``close`` (the close of the signal's bar, the price its outcomes are measured from) and
``contributions`` (each supporting pattern's capped contribution ``c_p`` to the score, see
:mod:`signals.scoring`, rounded to 4 places) were added within v1 (issue 12 §6); a signal
parsed from an older document has neither, and its JSON form then omits them. ``model``
names the live configuration version that scored the signal and its scoring model's
fingerprint (``signals.versions``).

Stream entry fields: ``v`` (b"1"), ``id`` (the signal id) and ``d`` (the JSON above), so a
reader can dedupe or route on ``id`` without parsing ``d``.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from common.contracts import Fields
from common.errors import DecodeError

SIGNALS_VERSION = 1
SCHEMA_PATH = Path(__file__).parent / "schema" / "signal.v1.json"

Direction = Literal["long", "short"]
FeatureValue = float | int | None


@functools.lru_cache(maxsize=4096)
def iso_utc_ms(epoch_ms: int) -> str:
    """``1723161240000`` -> ``"2024-08-08T23:54:00.000Z"`` (ISO-8601, UTC, milliseconds).

    Memoized (bounded): every signal's ``open_time`` goes through here, and a burst of signals
    shares a handful of bar open times."""
    dt = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    """Wall-clock time in the contract's format; only ``emitted_at`` uses it."""
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Signal:
    """One scored signal. Everything but ``emitted_at`` is a pure function of the pattern event."""

    id: str
    exchange: str
    symbol: str
    timeframe: str
    open_time_ms: int
    direction: Direction
    score: float
    patterns: Mapping[str, int]
    supporting: tuple[str, ...]
    features: Mapping[str, FeatureValue]
    model: str
    emitted_at: str | None = None
    v: int = SIGNALS_VERSION
    close: float | None = None
    contributions: Mapping[str, float] | None = None

    @property
    def open_time(self) -> str:
        return iso_utc_ms(self.open_time_ms)

    def stamped(self, emitted_at: str | None = None) -> Signal:
        """A copy with ``emitted_at`` set (now, unless given); field by field, without
        ``dataclasses.replace``'s per-call introspection (once per signal on the hot path)."""
        values = list(_field_values(self))
        values[_EMITTED_AT] = emitted_at or now_iso()
        return Signal(*values)

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON object, keys in a fixed order (so output lines are identical)."""
        doc = {
            "v": self.v,
            "id": self.id,
            "exchange": self.exchange,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "open_time": self.open_time,
            "open_time_ms": self.open_time_ms,
            "direction": self.direction,
            "score": self.score,
            "patterns": dict(self.patterns),
            "supporting": list(self.supporting),
            "features": dict(self.features),
            "model": self.model,
            "emitted_at": self.emitted_at,
        }
        if self.close is not None:
            doc["close"] = self.close
        if self.contributions is not None:
            doc["contributions"] = dict(self.contributions)
        return doc

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Signal:
        """Parse the JSON object; unknown fields are ignored (forward compatibility)."""
        try:
            if int(d["v"]) != SIGNALS_VERSION:
                raise DecodeError("signal_version", f"unsupported v={d['v']!r}")
            direction = d["direction"]
            if direction not in ("long", "short"):
                raise DecodeError("signal", f"bad direction {direction!r}")
            emitted = d.get("emitted_at")
            close = d.get("close")
            contributions = d.get("contributions")
            return cls(
                id=str(d["id"]),
                exchange=str(d["exchange"]),
                symbol=str(d["symbol"]),
                timeframe=str(d["timeframe"]),
                open_time_ms=int(d["open_time_ms"]),
                direction=direction,
                score=float(d["score"]),
                patterns={str(k): int(v) for k, v in d["patterns"].items()},
                supporting=tuple(str(p) for p in d["supporting"]),
                features=dict(d["features"]),
                model=str(d["model"]),
                emitted_at=None if emitted is None else str(emitted),
                close=None if close is None else float(close),
                contributions=None
                if contributions is None
                else {str(k): float(v) for k, v in contributions.items()},
            )
        except DecodeError:
            raise
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise DecodeError("signal", repr(e)) from e


_FIELD_NAMES = tuple(f.name for f in fields(Signal))
_field_values = operator.attrgetter(*_FIELD_NAMES)  # every field, in declaration order
_EMITTED_AT = _FIELD_NAMES.index("emitted_at")


def signal_to_json(signal: Signal) -> bytes:
    """The one JSON encoding of a signal (stream ``d`` field, pub/sub, WebSocket, jsonl)."""
    return orjson.dumps(signal.to_dict())


def signal_from_json(raw: bytes | str) -> Signal:
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise DecodeError("signal_json", repr(e)) from e
    if not isinstance(d, dict):
        raise DecodeError("signal_json", "not an object")
    return Signal.from_dict(d)


def encode_entry(signal: Signal) -> dict[bytes, bytes]:
    """Stream entry fields of a signal."""
    return {
        b"v": b"%d" % signal.v,
        b"id": signal.id.encode(),
        b"d": signal_to_json(signal),
    }


def decode_entry(fields: Fields) -> Signal:
    """Inverse of ``encode_entry``; raises ``DecodeError`` on anything malformed."""
    try:
        raw = fields[b"d"]
    except KeyError as e:
        raise DecodeError("signal_entry", "missing field d") from e
    return signal_from_json(raw)


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the current version."""
    doc: dict[str, Any] = orjson.loads(SCHEMA_PATH.read_bytes())
    return doc
