"""A WebSocket client away for a while resumes without a gap, whoever consumes ``signals``.

The real pipeline tail: a running signals worker (patterns -> signals, the stream's producer
and the owner of its trimming), a running sink on PostgreSQL (a consumer group of ``signals``
that acks within ~50 ms and trims its streams every ``TRIM_INTERVAL_S``), and the real
WebSocket server. A client subscribes, receives, disconnects, stays away while the pipeline
goes on emitting, and resumes from its last cursor while more signals arrive.

Before the one-policy-per-stream fix the sink trimmed ``signals`` down to what it had acked on
every trim, so the resuming client got ``{"type": "gap"}`` and lost what it missed. The
property only needs the client to stay away for several trim intervals after the sink has
acked past its cursor: the fast case shortens ``TRIM_INTERVAL_S`` to 0.2 s and stays away
2 s (ten intervals); the ``slow`` case is the issue's literal 60 s away with the same
intervals.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from common.contracts import PatternEvent
from common.names import GROUP_SINK, Keys
from common.settings import CommonSettings
from common.trimming import parse_id
from signals.model import Model
from signals.scoring import score_event
from signals.service import SignalsService
from signals.settings import SignalsSettings
from sink.service import SinkService
from tests.conftest import REDIS_URL
from tests.integration.test_signals_service import write_events
from tests.integration.test_signals_ws import (
    Frame,
    auth,
    receive,
    start_server,
    stop,
    stream_frames,
    subscribe,
    url,
)
from tests.polling import until
from tests.signals_factory import event_mix
from tests.sink_support import Db, make_db, sink_settings

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
TRIM_INTERVAL_S = 0.2
CHUNKS = 20
PER_CHUNK = 60


@pytest.fixture
async def db() -> AsyncIterator[Db]:
    async for d in make_db("postgres"):
        yield d


def signal_ids(events: Sequence[PatternEvent]) -> list[str]:
    """The ids of the signals of ``events``, in the order one signals worker emits them."""
    model = Model()
    return [s.id for e in events for s in score_event(e, model)]


async def frames_until(ws: Any, last_id: str) -> list[Frame]:
    """Frames up to the signal ``last_id`` (the last one the pipeline emits)."""
    out: list[Frame] = []
    async with asyncio.timeout(60):
        while not out or out[-1].get("signal", {}).get("id") != last_id:
            out.append(orjson.loads(await ws.recv()))
    return out


async def sink_has_acked_past(r: aioredis.Redis, keys: Keys, cursor: str) -> bool:
    """The sink group has read and acked every signal up to the newest, beyond ``cursor``."""
    newest = await r.xrevrange(keys.signals, count=1)
    (group,) = [g for g in await r.xinfo_groups(keys.signals) if g["name"].decode() == GROUP_SINK]
    last = group["last-delivered-id"].decode()
    return (
        bool(newest)
        and group["pending"] == 0
        and last == newest[0][0].decode()
        and parse_id(last) > parse_id(cursor)
    )


@pytest.mark.parametrize(
    "away_s",
    [
        pytest.param(2.0, id="away-2s-trim-every-0.2s"),
        pytest.param(60.0, id="away-60s", marks=pytest.mark.slow),
    ],
)
async def test_a_client_away_for_many_trim_intervals_resumes_without_a_gap(
    redis_client: aioredis.Redis, keys: Keys, namespace: str, db: Db, away_s: float
) -> None:
    common = CommonSettings(
        redis_url=REDIS_URL,
        namespace=namespace,
        partitions=keys.partitions,
        metrics_port=0,
        block_ms=50,
        claim_idle_ms=500,
        trim_interval_s=TRIM_INTERVAL_S,
    )
    signals = SignalsService(SignalsSettings(common=common, model=Model()), redis=redis_client)
    base = sink_settings(db.url, keys)
    sink = SinkService(replace(base, common=replace(base.common, trim_interval_s=TRIM_INTERVAL_S)))
    events = event_mix(CHUNKS * PER_CHUNK, symbols=PER_CHUNK)
    chunks = [events[i : i + PER_CHUNK] for i in range(0, len(events), PER_CHUNK)]
    server = await start_server(redis_client, namespace)
    workers = [signals, sink]
    tasks: list[asyncio.Task[None]] = []
    try:
        for w in workers:
            await w.start()
            tasks.append(asyncio.create_task(w.run()))
        async with connect(url(server), additional_headers=auth()) as ws:
            await subscribe(ws)
            await write_events(redis_client, keys, [e for c in chunks[:2] for e in c])
            before = await receive(ws, len(signal_ids(events[: 2 * PER_CHUNK])))
        cursor = before[-1]["cursor"]
        # Away: the pipeline goes on, the sink stores and acks, the trimmers run.
        for chunk in chunks[2:12]:
            await write_events(redis_client, keys, chunk)
            await asyncio.sleep(away_s / 10)
        await until(
            lambda: sink_has_acked_past(redis_client, keys, cursor),
            "the sink acking past the client",
            timeout_s=90,
            interval_s=0.2,
        )
        await asyncio.sleep(5 * TRIM_INTERVAL_S)  # several more trims after that ack
        async with connect(url(server), additional_headers=auth()) as ws:
            await subscribe(ws, resume_from=cursor)
            more = asyncio.create_task(
                write_events(redis_client, keys, [e for c in chunks[12:] for e in c])
            )
            after = await frames_until(ws, signal_ids(events)[-1])
            await more
    finally:
        for w in workers:
            w.request_stop()
        await asyncio.gather(*tasks)
        for w in workers:
            await w.stop()
        await stop(server)
    assert {f["type"] for f in after} == {"signal"}  # no gap, nothing but signals
    # Every signal, once, in emission order (the old sink had trimmed the stream under the
    # client's cursor, and the resume replayed nothing of what it had missed).
    assert [f["signal"]["id"] for f in before + after] == signal_ids(events)
    assert before + after == await stream_frames(redis_client, keys)
