"""``ingest.wsclient`` against a real ``websockets`` server on loopback: batches in order,
fragmented messages reassembled, bytes never decoded, why a socket ended, the read buffer's
bound (reading pauses, nothing is lost), TLS verified."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from ingest import wsclient
from ingest.disconnects import connect_failure_reason
from ingest.wsclient import SocketClosed, WebSocket
from tests.integration.runtime_support import make_certs
from tests.polling import until

Handler = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def _server(handler: Handler, **kw: int) -> AsyncIterator[str]:
    async with serve(
        handler, "127.0.0.1", 0, compression=None, ping_interval=None, close_timeout=0.5, **kw
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


async def _connect(url: str, **kw: float | None) -> WebSocket:
    options: dict[str, float | None] = {"ping_interval_s": None, "ping_timeout_s": None} | kw
    return await wsclient.connect(url, open_timeout_s=5.0, max_message_bytes=1 << 16, **options)


async def _drain(ws: WebSocket, limit: int) -> tuple[list[bytes], list[int], str]:
    """Every frame until the socket ends: the frames, the batch sizes, the reason."""
    frames: list[bytes] = []
    sizes: list[int] = []
    with pytest.raises(SocketClosed) as ended:
        while True:
            batch = await ws.recv_batch(limit)
            sizes.append(len(batch))
            frames += batch
    return frames, sizes, ended.value.reason


async def test_frames_come_in_order_in_batches_no_larger_than_asked() -> None:
    sent = [f"frame {i}".encode() for i in range(5000)]

    async def handler(ws: ServerConnection) -> None:
        for payload in sent:
            await ws.send(payload.decode())
        await ws.close()

    async with _server(handler) as url:
        ws = await _connect(url)
        await asyncio.sleep(0.2)  # let them queue up
        frames, sizes, reason = await _drain(ws, 7)
    assert frames == sent
    assert max(sizes) == 7 and min(sizes) >= 1
    assert reason == "closed"  # the server's close frame


async def test_fragmented_and_binary_messages_and_bad_utf8_arrive_as_sent() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(["part one, ", "part two, ", "part three"])  # one message, 3 frames
        await ws.send(b"\xff\xfe not utf-8")  # binary: bytes as sent
        await ws.send("after")
        await ws.close()

    async with _server(handler) as url:
        frames, _, _ = await _drain(await _connect(url), 100)
    assert frames == [b"part one, part two, part three", b"\xff\xfe not utf-8", b"after"]


async def test_a_message_above_the_limit_ends_the_socket_as_dropped() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("small")
        await ws.send("x" * (1 << 17))
        await ws.wait_closed()

    async with _server(handler) as url:
        frames, _, reason = await _drain(await _connect(url), 100)
    assert frames == [b"small"] and reason == "dropped"


async def test_a_peer_that_stops_answering_pings_ends_as_ping_timeout() -> None:
    stalled = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await ws.send("hello")
        ws.transport.pause_reading()  # hung: our pings are never read, never answered
        stalled.set()
        await ws.wait_closed()  # when we give up and drop the connection

    async with _server(handler) as url:
        ws = await _connect(url, ping_interval_s=0.05, ping_timeout_s=0.2)
        frames, _, reason = await asyncio.wait_for(_drain(ws, 10), 5)
    assert stalled.is_set() and frames == [b"hello"] and reason == "ping_timeout"


async def test_pings_answered_keep_the_socket_open() -> None:
    async def handler(ws: ServerConnection) -> None:
        await asyncio.sleep(0.5)  # websockets answers our pings meanwhile
        await ws.send("still here")
        await ws.close()

    async with _server(handler) as url:
        ws = await _connect(url, ping_interval_s=0.05, ping_timeout_s=0.2)
        frames, _, reason = await _drain(ws, 10)
    assert frames == [b"still here"] and reason == "closed"


async def test_reading_pauses_above_the_high_water_mark_and_loses_nothing() -> None:
    n = wsclient._HIGH_WATER * 3

    async def handler(ws: ServerConnection) -> None:
        for i in range(n):
            await ws.send(str(i))
        await ws.close()

    async with _server(handler) as url:
        ws = await _connect(url)
        await asyncio.sleep(0.5)  # the reader takes nothing meanwhile
        assert wsclient._HIGH_WATER <= ws.pending < n  # paused: bounded, not everything
        frames, _, _ = await _drain(ws, 1000)
    assert frames == [str(i).encode() for i in range(n)]


async def test_close_sends_a_close_frame_and_frames_before_it_are_still_returned() -> None:
    got_close = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await ws.send("one")
        await ws.wait_closed()
        got_close.set()

    async with _server(handler) as url:
        ws = await _connect(url)
        await asyncio.sleep(0.1)
        await ws.close()
        frames, _, _ = await _drain(ws, 10)
        await asyncio.wait_for(got_close.wait(), 5)
    assert frames == [b"one"]
    with pytest.raises(SocketClosed):
        ws.send("too late")


async def test_close_keeps_every_frame_queued_behind_a_backlog_above_the_high_water_mark() -> None:
    # A rotation retires a socket whose reader is behind (the writer holds it back): reading
    # is paused at the high-water mark, and the server's answer to our close frame is queued
    # behind frames it sent before (trade-sized, so they arrive in many chunks). Every one of
    # them must still come out of recv_batch: reading must not pause again during the close
    # and leave the close frame unread until a timer drops the connection with them.
    sent = [f"{i:0100d}".encode() for i in range(wsclient._HIGH_WATER * 4)]
    all_sent = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        for payload in sent:  # into its write buffer at once (no flow control: write_limit)
            await ws.send(payload.decode())
        all_sent.set()
        await ws.wait_closed()

    async with _server(handler, write_limit=1 << 30) as url:
        ws = await _connect(url)
        await asyncio.wait_for(all_sent.wait(), 10)
        await until(lambda: ws.pending >= wsclient._HIGH_WATER, "reading paused")
        first = await ws.recv_batch(1)  # the reader took one batch, then fell behind again
        await ws.close()  # nobody reads during the close handshake
        frames, _, _ = await _drain(ws, 1000)
    assert len(first + frames) == len(sent)
    assert first + frames == sent


async def test_connect_failures_raise_what_the_reasons_are_read_from() -> None:
    async def refuse(ws: ServerConnection) -> None:
        await ws.close()

    async with _server(refuse) as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
    with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
        await _connect(f"ws://127.0.0.1:{port}/")


async def test_wss_verifies_the_server_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS with the default verified context: a certificate from an unknown CA is a ``tls``
    connect failure; trusted (``SSL_CERT_FILE``: the test CA), frames flow."""
    certs = make_certs(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(certs.server_cert, certs.server_key)

    async def handler(ws: ServerConnection) -> None:
        await ws.send("over tls")
        await ws.close()

    async with serve(handler, "127.0.0.1", 0, ssl=server_tls, close_timeout=0.5) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        url = f"wss://localhost:{port}/"
        with pytest.raises(ssl.SSLCertVerificationError) as refused:
            await _connect(url)
        assert connect_failure_reason(refused.value) == "tls"
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
        frames, _, reason = await _drain(await _connect(url), 10)
    assert frames == [b"over tls"] and reason == "closed"
