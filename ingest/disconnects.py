"""Why a connect attempt failed or an open WebSocket session ended: the ``reason`` labels of
``alphapulse_ingest_connect_failures_total`` and ``alphapulse_ingest_reconnects_total``,
read from the exceptions the WebSocket client (``ingest.wsclient``: picows) and the event loop
raise (pure: no socket here). Why an open session ended is ``ingest.wsclient.SocketClosed.reason``
(raised by recv_batch and send of an open socket, never by a connect attempt)."""

from __future__ import annotations

import socket
import ssl

from picows import WSHandshakeError

#: The ``reason`` label of ``alphapulse_ingest_connect_failures_total``.
CONNECT_FAILURE_REASONS = ("dns", "refused", "timeout", "tls", "handshake", "closed", "other")
_PEER_CLOSED = (
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ssl.SSLEOFError,  # the TCP connection ended within the TLS handshake
    ssl.SSLZeroReturnError,
)


def connect_failure_reason(error: BaseException) -> str:
    """Why a connect attempt failed, from the exception's type (one of
    ``CONNECT_FAILURE_REASONS``): the name did not resolve (``dns``), nothing listens
    (``refused``), no answer within ``open_timeout_s`` (``timeout``), the TLS handshake
    was rejected (``tls``), the HTTP upgrade was refused, e.g. a 403 or 429 (``handshake``),
    the peer dropped the connection before the WebSocket was open (``closed``)."""
    if isinstance(error, socket.gaierror):
        return "dns"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, _PEER_CLOSED):
        # a reset or EOF during the TLS handshake, or EOF before the HTTP response
        # (``ingest.wsclient.connect`` raises ConnectionResetError for that)
        return "closed"
    if isinstance(error, ssl.SSLError):
        return "tls"
    if isinstance(error, WSHandshakeError):
        return "handshake"
    return "other"
