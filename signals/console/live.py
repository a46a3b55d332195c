"""Live updates for the pages over WebSocket: signals (``/api/live/signals``) and the
Overview snapshot (``/api/live/overview``).

Signals reuse the signals WebSocket server's fan-out (``signals.ws_hub.SignalsHub``): one
``XREAD BLOCK`` reader per console process, each signal rendered once and offered to every
browser whose filters match through a bounded queue (a slow browser is cut with 4408, never
slows the others). The browser speaks the same protocol as the public feed (send a
``subscribe`` message, receive ``signal`` frames; ``signals/ws_protocol.py``). The Overview
snapshot is computed once a second by one task while anybody watches, and sent to all.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import orjson
from aiohttp import WSMsgType, web
from websockets.asyncio.server import ServerConnection

from common.logging import get_logger
from common.redis import AnyRedis
from signals.console.state import HTTP, OVERVIEW
from signals.ws_hub import Client, SignalsHub
from signals.ws_protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_GOING_AWAY,
    ProtocolError,
    parse_subscribe,
    subscribed_message,
)

QUEUE_SIZE = 10_000
OVERVIEW_PERIOD_S = 1.0
SUBSCRIBE_TIMEOUT_S = 10.0


class _BrowserSocket:
    """What the hub needs of a connection (``close(code, reason)`` and the peer's
    ``remote_address`` for its connection log) for an aiohttp socket."""

    def __init__(self, ws: web.WebSocketResponse, remote_address: Any = None) -> None:
        self.ws = ws
        self.remote_address = remote_address

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode())


class LiveFeed:
    """The hub's reader task plus the Overview broadcaster."""

    def __init__(self, redis: AnyRedis, stream: str, block_ms: int) -> None:
        self.hub = SignalsHub(redis, stream, block_ms=block_ms)
        self.overview_clients: set[web.WebSocketResponse] = set()
        self._stopping = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.ticker: asyncio.Task[None] | None = None  # the Overview broadcaster, if running

    async def start(self) -> None:
        await self.hub.start()
        self._reader = asyncio.create_task(self.hub.run(self._stopping), name="console.reader")

    async def run_until(self, stop: asyncio.Event) -> None:
        assert self._reader is not None
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({self._reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._reader.done():
            self._reader.result()  # a reader that died of a bug: the process exits 1

    async def close(self) -> None:
        self._stopping.set()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self.ticker is not None:
            self.ticker.cancel()
        await self.hub.close_all(CLOSE_GOING_AWAY, "server shutting down")
        for ws in list(self.overview_clients):
            await ws.close(code=CLOSE_GOING_AWAY, message=b"server shutting down")


FEED = web.AppKey("feed", LiveFeed)


async def live_signals(request: web.Request) -> web.StreamResponse:
    feed = request.app[FEED]
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=65_536)
    await ws.prepare(request)
    try:
        msg = await asyncio.wait_for(ws.receive(), SUBSCRIBE_TIMEOUT_S)
        if msg.type != WSMsgType.TEXT:
            raise ProtocolError("expected a subscribe message")
        sub = parse_subscribe(msg.data)
    except (ProtocolError, TimeoutError) as e:
        await ws.close(code=CLOSE_BAD_REQUEST, message=(str(e) or "no subscribe").encode())
        return ws
    peer = request.transport.get_extra_info("peername") if request.transport else None
    client = Client(cast(ServerConnection, _BrowserSocket(ws, peer)), sub.filters, QUEUE_SIZE)
    hub = feed.hub
    hub.clients.add(client)
    try:
        await ws.send_str(subscribed_message(hub.last_id))
        client.live = True
        await _drain(ws, client)
    finally:
        hub.clients.discard(client)
    return ws


async def _drain(ws: web.WebSocketResponse, client: Client) -> None:
    """Send the client's queued frames until either side closes."""
    incoming = asyncio.create_task(_until_closed(ws))
    try:
        while not client.kicked and not ws.closed:
            get = asyncio.create_task(client.queue.get())
            done, _ = await asyncio.wait({get, incoming}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                return
            await ws.send_str(get.result())
    except ConnectionResetError:
        return
    finally:
        incoming.cancel()


async def _until_closed(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass


async def live_overview(request: web.Request) -> web.StreamResponse:
    feed = request.app[FEED]
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    feed.overview_clients.add(ws)
    if feed.ticker is None or feed.ticker.done():
        feed.ticker = asyncio.create_task(_broadcast_overview(request.app))
    try:
        await _until_closed(ws)
    finally:
        feed.overview_clients.discard(ws)
    return ws


async def _broadcast_overview(app: web.Application) -> None:
    """One snapshot a second for every watcher; stops when nobody watches."""
    feed = app[FEED]
    while feed.overview_clients:
        try:
            doc: dict[str, Any] = await app[OVERVIEW].snapshot(app[HTTP])
            frame = orjson.dumps({"type": "overview", "overview": doc}).decode()
        except Exception as e:  # a Redis outage: say so on the page, keep trying
            get_logger("console").warning("overview_failed", error=repr(e))
            frame = orjson.dumps({"type": "error", "error": type(e).__name__}).decode()
        for ws in list(feed.overview_clients):
            with contextlib.suppress(ConnectionResetError):
                await ws.send_str(frame)
        await asyncio.sleep(OVERVIEW_PERIOD_S)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/api/live/signals", live_signals)
    r.add_get("/api/live/overview", live_overview)
