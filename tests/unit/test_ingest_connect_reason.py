"""The ``reason`` label of ``alphapulse_ingest_connect_failures_total``, from the exception a
failed connect raised (the exception types are the ones ``ingest.wsclient`` (picows) and the
event loop raise;
``tests/integration/test_make_run_live.py`` sees dns and closed from a real process)."""

from __future__ import annotations

import errno
import socket
import ssl

import pytest
from picows import (
    WSHandshakeError,
    WSInvalidHeaderError,
    WSInvalidMessageError,
    WSInvalidStatusError,
    WSInvalidURL,
)

from ingest.disconnects import CONNECT_FAILURE_REASONS, connect_failure_reason

CASES = [
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused"),
    (TimeoutError(), "timeout"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls"),
    (ssl.SSLError(1, "wrong version number"), "tls"),
    (WSInvalidStatusError("429 Too Many Requests"), "handshake"),
    (WSInvalidHeaderError("missing Upgrade", "Upgrade"), "handshake"),
    (WSInvalidMessageError("did not receive a valid HTTP response"), "handshake"),
    (WSHandshakeError("redirect without Location"), "handshake"),
    # what ingest.wsclient.connect raises when the peer closes before the HTTP response
    (ConnectionResetError("the server closed the connection before the upgrade"), "closed"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "closed"),
    (ConnectionAbortedError(), "closed"),
    (BrokenPipeError(), "closed"),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "closed"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), "other"),
    (WSInvalidURL("ws:/x", "no host"), "other"),
]


@pytest.mark.parametrize(("error", "reason"), CASES)
def test_connect_failure_reason(error: BaseException, reason: str) -> None:
    assert connect_failure_reason(error) == reason


def test_every_reason_is_reachable_and_none_is_outside_the_set() -> None:
    assert sorted({reason for _, reason in CASES}) == sorted(CONNECT_FAILURE_REASONS)
