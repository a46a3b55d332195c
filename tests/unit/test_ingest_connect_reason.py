"""The ``reason`` label of ``alphapulse_ingest_connect_failures_total``, from the exception a
failed connect raised (the exception types are the ones websockets and the event loop raise;
``tests/integration/test_make_run_live.py`` sees dns and closed from a real process)."""

from __future__ import annotations

import errno
import socket
import ssl

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosedError,
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.frames import Close
from websockets.http11 import Response

from ingest.disconnects import CONNECT_FAILURE_REASONS, connect_failure_reason


def _eof_before_response() -> InvalidMessage:
    """What websockets raises when the peer closes before the HTTP response."""
    try:
        try:
            raise EOFError("connection closed while reading HTTP status line")
        except EOFError as eof:
            raise InvalidMessage("did not receive a valid HTTP response") from eof
    except InvalidMessage as e:
        return e


CASES = [
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused"),
    (TimeoutError(), "timeout"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls"),
    (ssl.SSLError(1, "wrong version number"), "tls"),
    (InvalidStatus(Response(429, "Too Many Requests", Headers())), "handshake"),
    (InvalidHeader("Upgrade", None), "handshake"),
    (InvalidMessage("did not receive a valid HTTP response"), "handshake"),
    (_eof_before_response(), "closed"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "closed"),
    (ConnectionAbortedError(), "closed"),
    (BrokenPipeError(), "closed"),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "closed"),
    (ConnectionClosedError(Close(1011, "internal error"), None), "closed"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), "other"),
    (InvalidURI("ws:/x", "no host"), "other"),
]


@pytest.mark.parametrize(("error", "reason"), CASES)
def test_connect_failure_reason(error: BaseException, reason: str) -> None:
    assert connect_failure_reason(error) == reason


def test_every_reason_is_reachable_and_none_is_outside_the_set() -> None:
    assert sorted({reason for _, reason in CASES}) == sorted(CONNECT_FAILURE_REASONS)
