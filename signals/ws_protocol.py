"""The WebSocket protocol of the signals server, as pure functions (no sockets here).

Connect to ``ws://host:8765/`` with ``Authorization: Bearer <token>`` (or ``?token=<token>``
in the URL, for browsers). Then send one text message::

    {"type": "subscribe",
     "exchanges": ["binance"], "symbols": ["BTCUSDT"], "timeframes": ["1m", "5m"],
     "min_score": 0.7,
     "resume_from": "1723161300123-0"}

Every field but ``type`` is optional; an absent or empty list means "all". ``resume_from`` is
the ``cursor`` of the last signal the client received (its entry id on the ``signals``
stream): the server first replays everything after it from the stream, then goes on live, so a
reconnecting client misses nothing that is still in the stream. The server answers::

    {"type": "subscribed", "cursor": "<newest stream id when subscribing>"}
    {"type": "signal", "cursor": "1723161300456-0", "signal": {...the signal JSON...}}

and, before the replay, when the client's cursor is older than the oldest entry still in the
stream (trimmed after ``SIGNALS_STREAM_RETENTION_S``; signals in between may be lost)::

    {"type": "gap", "after": "<the client's cursor>", "first_available": "<oldest id>"}

or, when the cursor is newer than anything on the stream (the stream was reset, or the cursor
is not from this server), instead of waiting in silence for the stream to reach it::

    {"type": "cursor_ahead", "after": "<the client's cursor>", "newest": "<newest id or 0-0>"}

and the client is then served from ``newest`` on (live), like a client without ``resume_from``.

A cursor is what Redis accepts as a stream id, written ``<ms>-<seq>`` in ASCII digits, each
part at most 2**64-1; anything else (a trailing newline, other scripts' digits, an overflow)
is refused with 4400 before Redis sees it. The server answers with the canonical form
(``"007-0"`` becomes ``"7-0"``).

Close codes:

========  ===========================================================================
``4401``  no or unknown bearer token
``4400``  the first message is not a valid subscribe message (reason says why)
``4408``  slow client: its send queue (``SIGNALS_WS_QUEUE``) was full; reconnect and resume
``1013``  too many connections (``SIGNALS_WS_MAX_CONNECTIONS``), or Redis unreachable
          during a resume; try again later
``1009``  a client message larger than ``SIGNALS_WS_MAX_MESSAGE``
``1001``  the server is shutting down; reconnect and resume
========  ===========================================================================
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_REQUEST = 4400
CLOSE_SLOW = 4408
CLOSE_TRY_AGAIN = 1013
CLOSE_GOING_AWAY = 1001
MAX_FILTER_ITEMS = 10_000
_STREAM_ID = re.compile(r"([0-9]+)-([0-9]+)", re.ASCII)
MAX_ID_PART = 2**64 - 1
"""The largest milliseconds or sequence part of a Redis stream id (an unsigned 64-bit int)."""
_MAX_ID_DIGITS = 64  # leading zeros allowed, but no 10,000-digit strings to int()


class ProtocolError(ValueError):
    """A client message that breaks the protocol; its text is the close reason."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Which signals a client wants; empty sets mean "all"."""

    exchanges: frozenset[str] = frozenset()
    symbols: frozenset[str] = frozenset()
    timeframes: frozenset[str] = frozenset()
    min_score: float = 0.0

    def matches(self, signal: Mapping[str, Any]) -> bool:
        return (
            (not self.exchanges or signal.get("exchange") in self.exchanges)
            and (not self.symbols or signal.get("symbol") in self.symbols)
            and (not self.timeframes or signal.get("timeframe") in self.timeframes)
            and float(signal.get("score", 0.0)) >= self.min_score
        )


@dataclass(frozen=True, slots=True)
class Subscribe:
    filters: Filters
    resume_from: str | None = None


def _names(doc: Mapping[str, Any], key: str) -> frozenset[str]:
    value = doc.get(key)
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"{key} must be a list of strings")
    if len(value) > MAX_FILTER_ITEMS:
        raise ProtocolError(f"{key}: at most {MAX_FILTER_ITEMS} items")
    return frozenset(value)


def parse_subscribe(raw: str | bytes) -> Subscribe:
    """Validate the client's subscribe message; raises ``ProtocolError`` with the reason."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ProtocolError("subscribe message is not JSON") from e
    if not isinstance(doc, dict) or doc.get("type") != "subscribe":
        raise ProtocolError('expected {"type": "subscribe", ...}')
    min_score = doc.get("min_score", 0.0)
    if isinstance(min_score, bool) or not isinstance(min_score, int | float):
        raise ProtocolError("min_score must be a number")
    resume = doc.get("resume_from")
    if resume is not None:
        resume = parse_cursor(resume)
    filters = Filters(
        _names(doc, "exchanges"), _names(doc, "symbols"), _names(doc, "timeframes"), min_score
    )
    return Subscribe(filters, resume)


def parse_cursor(value: object) -> str:
    """A client's ``resume_from`` in canonical form; ``ProtocolError`` unless Redis would take
    it as a stream id (see the module docstring)."""
    too_long = isinstance(value, str) and len(value) > 2 * _MAX_ID_DIGITS + 1
    match = _STREAM_ID.fullmatch(value) if isinstance(value, str) and not too_long else None
    if match is None:
        raise ProtocolError("resume_from must be a cursor like 1723161300123-0")
    ms, seq = int(match[1]), int(match[2])
    if ms > MAX_ID_PART or seq > MAX_ID_PART:
        raise ProtocolError("resume_from is out of range (each part at most 2**64-1)")
    return f"{ms}-{seq}"


def token_from_request(path: str, headers: Mapping[str, str]) -> str | None:
    """The bearer token of the upgrade request: ``Authorization`` header, else ``?token=``."""
    auth = headers.get("Authorization") or headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None
    values = parse_qs(urlsplit(path).query).get("token")
    return values[0] if values else None


def token_ok(token: str | None, accepted: Collection[str]) -> bool:
    """Constant-time comparison against every configured token."""
    if not token:
        return False
    found = False
    for t in accepted:
        found |= hmac.compare_digest(token.encode(), t.encode())
    return found


def signal_message(cursor: str, signal_json: bytes) -> str:
    """The frame sent for one signal; built once per signal and shared by every client."""
    return f'{{"type":"signal","cursor":"{cursor}","signal":{signal_json.decode()}}}'


def gap_message(cursor: str, first_available: str) -> str:
    """Sent before a resume whose cursor is older than what the stream still holds."""
    doc = {"type": "gap", "after": cursor, "first_available": first_available}
    return orjson.dumps(doc).decode()


def cursor_ahead_message(cursor: str, newest: str) -> str:
    """Sent when a resume cursor is newer than the stream's newest entry: the client is served
    from ``newest`` on, live, instead of waiting silently for the stream to catch up."""
    return orjson.dumps({"type": "cursor_ahead", "after": cursor, "newest": newest}).decode()


def subscribed_message(cursor: str) -> str:
    return orjson.dumps({"type": "subscribed", "cursor": cursor}).decode()
