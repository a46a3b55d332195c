"""``python -m signals.ws``: the WebSocket fan-out server for external clients.

The hub (``signals.ws_hub``) reads the ``signals`` stream once and offers each signal to every
live client whose filters match; this module serves the connections. Each client has a bounded
send queue drained by its own writer task, so a slow client cannot slow the others — when its
queue is full it is disconnected with close code 4408 and may reconnect with ``resume_from``.
A resuming client is served from the stream (XRANGE after its cursor) by its own task and
switches to live only once it has caught up with the reader (see ``_backfill``), so nothing is
lost or sent twice at the switch. Protocol and close codes: ``ws_protocol``.

The limits ``max_connections``, ``queue_size`` and ``resume_max`` follow the live
configuration (section ``ws`` of the newest version, ``signals.liveconfig``): a change applies
to connections that arrive after it; connections already open keep what they got. Without a
configuration document the environment's values apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from common.configstore import ConfigFollower, ConfigVersion
from common.lifecycle import Service, worker_main
from common.logging import get_logger
from common.redis import AnyRedis, redis_from_settings
from common.settings import bind_error
from common.trimming import parse_id
from signals.metrics import SIGNALS_METRICS
from signals.settings import WsSettings
from signals.ws_hub import Client, SignalsHub, render
from signals.ws_log import REFUSALS, ConnectionLog, peer_of
from signals.ws_protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_GOING_AWAY,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
    ProtocolError,
    cursor_ahead_message,
    gap_message,
    parse_subscribe,
    subscribed_message,
    token_from_request,
    token_ok,
)

SUBSCRIBE_TIMEOUT_S = 10.0
RESUME_PAGE = 500


class WsServer(Service):
    """The server process: the hub's reader plus the websockets server."""

    name = "signals-ws"

    def __init__(self, settings: WsSettings, *, redis: AnyRedis | None = None) -> None:
        super().__init__()
        self.settings = settings
        self._owns_redis = redis is None
        self.redis = redis if redis is not None else redis_from_settings(settings.common)
        self.events = ConnectionLog(
            get_logger("signals.ws"), lines=settings.log_lines, interval_s=settings.log_interval_s
        )
        self.hub = SignalsHub(
            self.redis,
            settings.common.keys().signals,
            block_ms=settings.common.block_ms,
            readiness=self.readiness,
            events=self.events,
        )
        self.connections = 0
        self.server: Server | None = None
        self.limits: dict[str, int] = {
            "max_connections": settings.max_connections,
            "queue_size": settings.queue_size,
            "resume_max": settings.resume_max,
        }
        self.config = ConfigFollower(
            self.redis, settings.common.keys(), worker="signals-ws", on_change=self._apply
        )

    def _apply(self, versions: Sequence[ConfigVersion]) -> None:
        """A new configuration version: its ``ws`` limits apply to new connections."""
        section = versions[-1].doc.get("ws", {})
        self.limits = {k: int(section.get(k, v)) for k, v in self.limits.items()}

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        await super().start()
        await self.hub.start()
        await self.config.refresh()
        s = self.settings
        # No per-message deflate: each connection would compress every frame again with its
        # own context (CPU and ~300 KiB per client); uncompressed frames are rendered once.
        try:
            self.server = await serve(
                self.handle,
                s.host,
                s.port,
                max_size=s.max_message,
                close_timeout=5,
                compression=None,
            )
        except OSError as e:  # an unresolvable host or a busy port: a setting, exit code 2
            raise bind_error("SIGNALS_WS_HOST", "SIGNALS_WS_PORT", s.host, s.port, e) from e
        self.readiness.set("connected")
        self.readiness.set("consuming")
        get_logger("signals.ws").debug("ws_listening", host=s.host, port=self.port)

    async def run(self) -> None:
        stopping = asyncio.Event()
        reader = asyncio.create_task(self.hub.run(stopping), name="signals-ws.reader")
        stop = asyncio.create_task(self.wait_stopping(), name="signals-ws.stop")
        summaries = asyncio.create_task(self._log_summaries(), name="signals-ws.log")
        async with self.config.running(lambda: self.stopping):
            await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
        stopping.set()
        for task in (reader, stop, summaries):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # a reader that died of a bug re-raises here: the process exits 1

    async def _log_summaries(self) -> None:
        """Write the connection events' summary line when an interval ends, even when no
        further event comes to close it."""
        while not await self.wait_stopping(self.settings.log_interval_s / 4):
            self.events.flush()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close(close_connections=False)
            await self.hub.close_all(CLOSE_GOING_AWAY, "server shutting down")
            self.server.close()
            await self.server.wait_closed()
        self.events.flush(force=True)
        if self._owns_redis:
            await self.redis.aclose()

    async def handle(self, ws: ServerConnection) -> None:
        """One connection: authenticate, limit, subscribe, (resume,) then stream."""
        self.connections += 1
        SIGNALS_METRICS.ws_clients.inc()
        started = time.monotonic()
        peer = peer_of(ws.remote_address)
        subscribed = False
        try:
            subscribed = await self._serve(ws, peer)
        except ConnectionClosed:
            pass
        finally:
            self.connections -= 1
            SIGNALS_METRICS.ws_clients.dec()
            if subscribed:
                self.events.event(
                    "ws_disconnected",
                    peer=peer,
                    seconds=round(time.monotonic() - started, 3),
                    code=ws.close_code,
                )

    async def _refuse(
        self, ws: ServerConnection, peer: str, code: int, why: str, **fields: Any
    ) -> None:
        """Close a connection the server will not serve: counted, logged (rate-limited)."""
        label, text = REFUSALS[why]
        SIGNALS_METRICS.ws_closed.labels(label).inc()
        self.events.event("ws_refused", why, peer=peer, code=code, **fields)
        await ws.close(code, fields.get("detail") or text)

    async def _serve(self, ws: ServerConnection, peer: str) -> bool:
        """Serve one connection; True once it got as far as subscribing."""
        request = ws.request
        assert request is not None
        token = token_from_request(request.path, request.headers)
        if not token_ok(token, self.settings.tokens):
            # Whether a token came, never the token (nor the path or headers that carry it).
            await self._refuse(ws, peer, CLOSE_UNAUTHORIZED, "auth", token_given=bool(token))
            return False
        limits = self.limits  # this connection keeps the limits it arrived under
        if self.connections > limits["max_connections"]:
            await self._refuse(ws, peer, CLOSE_TRY_AGAIN, "limit")
            return False
        try:
            sub = parse_subscribe(await asyncio.wait_for(ws.recv(), SUBSCRIBE_TIMEOUT_S))
        except (ProtocolError, TimeoutError) as e:
            detail = str(e) or "no subscribe message"
            await self._refuse(ws, peer, CLOSE_BAD_REQUEST, "bad_request", detail=detail)
            return False
        client = Client(ws, sub.filters, limits["queue_size"])
        client.resume_max = limits["resume_max"]
        self.hub.clients.add(client)
        self.events.event("ws_connected", peer=peer, resume_from=sub.resume_from)
        try:
            await ws.send(subscribed_message(self.hub.last_id))
            if sub.resume_from is None:
                client.live = True
            else:
                await self._backfill(client, sub.resume_from)
            await self._write(client)
        except RedisError as e:
            # Redis went away under a resume: the client may come back and resume later;
            # one log line (rate-limited), not a traceback and a 1011 per client.
            self.hub.clients.discard(client)
            await self._refuse(ws, peer, CLOSE_TRY_AGAIN, "unavailable", error=type(e).__name__)
        finally:
            self.hub.clients.discard(client)
        return True

    async def _backfill(self, client: Client, cursor: str) -> None:
        """Replay the stream after ``cursor``, then go live without a gap or a repeat.

        A cursor newer than the newest entry (the stream was reset, or the cursor is not
        ours) is answered with ``cursor_ahead`` and served from the newest entry on: never a
        silent wait for the stream to reach it.

        The switch is decided with no ``await`` between the check and ``client.live = True``:
        once this task has sent everything up to the id the reader last dispatched, every later
        entry reaches the client through its queue. Entries the reader has already fetched but
        not yet dispatched may also have come through XRANGE; ``client.after`` (the last id
        sent here) makes the reader skip those, so none is sent twice.
        """
        newest_reply: Any = await self.redis.xrevrange(self.hub.stream, count=1)
        newest = newest_reply[0][0].decode() if newest_reply else "0-0"
        if parse_id(cursor) > parse_id(newest):
            self.events.event("ws_cursor_ahead", peer=client.peer, after=cursor, newest=newest)
            await client.ws.send(cursor_ahead_message(cursor, newest))
            cursor = newest
        oldest: Any = await self.redis.xrange(self.hub.stream, count=1)
        if oldest and parse_id(oldest[0][0].decode()) > parse_id(cursor):
            # The cursor entry itself was trimmed, so whatever followed it before the oldest
            # entry left is gone too (XTRIM does not record what it deleted on Redis 7.0).
            await client.ws.send(gap_message(cursor, oldest[0][0].decode()))
        sent = 0
        while True:
            page: Any = await self.redis.xrange(
                self.hub.stream, min=f"({cursor}", count=RESUME_PAGE
            )
            page_sent = 0
            try:
                for entry_id, fields in page:
                    cursor = entry_id.decode()
                    rendered = render(cursor, fields)
                    if rendered is not None and client.filters.matches(rendered[0]):
                        await client.ws.send(rendered[1])
                        page_sent += 1
            finally:  # counted per page, also when the connection closes in the middle
                SIGNALS_METRICS.ws_sent.inc(page_sent)
            sent += page_sent
            if sent > client.resume_max:
                self.hub.clients.discard(client)
                await self._refuse(client.ws, client.peer, CLOSE_BAD_REQUEST, "resume_too_long")
                return
            client.after = parse_id(cursor)
            if len(page) < RESUME_PAGE and client.after >= parse_id(self.hub.last_id):
                client.live = True
                return

    async def _write(self, client: Client) -> None:
        """Drain the client's queue until the connection closes."""
        ws = client.ws
        closed = asyncio.create_task(_discard_incoming(ws))
        try:
            while not client.kicked:
                get = asyncio.create_task(client.queue.get())
                done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    return
                await ws.send(get.result())
                SIGNALS_METRICS.ws_sent.inc()
            await closed
        finally:
            closed.cancel()


async def _discard_incoming(ws: ServerConnection) -> None:
    """Read and drop client messages after the subscribe (so pings and pongs keep flowing);
    returns when the connection is closed."""
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


def main() -> int:
    return worker_main(WsSettings.from_env, WsServer)


if __name__ == "__main__":
    sys.exit(main())
