"""The sink stores bar outcomes once and ``outcome_rows`` equals replay's ``outcomes.jsonl``,
on plain PostgreSQL and on TimescaleDB."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from common.contracts import encode_outcomes
from common.names import Keys
from detectors.outcomes import OutcomeConfig
from detectors.partition import EngineConfig
from detectors.replay import replay_ticks, sorted_events
from detectors.timeframes import parse_timeframes
from ingest.offline.ticks import synthetic_ticks
from signals.contract import encode_entry
from signals.model import Model
from signals.offline import score_events
from signals.outcomes import outcome_lines
from sink.migrate import migrate
from sink.worker import SinkWorker
from tests.outcomes_support import SELECT_ROWS, db_rows, long_rows
from tests.sink_support import DB_PARAMS, Db, make_db, sink_settings

pytestmark = pytest.mark.redis

CONFIG = EngineConfig(
    timeframes=parse_timeframes("1s,5s"),
    allowed_lateness_ms=1000,
    outcomes=OutcomeConfig((1, 3, 10), cost_bps=0.3),
)


@pytest.fixture(params=DB_PARAMS)
async def db(request: pytest.FixtureRequest) -> AsyncIterator[Db]:
    async for d in make_db(request.param):
        yield d


async def test_outcome_rows_equal_replay_lines_and_are_stored_once(
    db: Db, redis_client: aioredis.Redis, keys: Keys
) -> None:
    out = replay_ticks(synthetic_ticks("binance", 2, 4.0, seed=4, count=3_000), CONFIG, 1)
    events = sorted_events(out.events, CONFIG)
    signals = score_events(events, Model())
    assert signals and out.outcomes
    tf_ms = {t.name: t.ms for t in CONFIG.timeframes}
    expected = long_rows(outcome_lines(events, signals, out.outcomes, tf_ms))
    assert {r[7] for r in expected} == {"long", "short"}
    for _ in range(2):  # the second time is a redelivery: nothing is stored twice
        for event in events:
            await redis_client.xadd(keys.patterns, event.encode())  # type: ignore[arg-type]
        for s in signals:
            await redis_client.xadd(keys.signals, encode_entry(s))  # type: ignore[arg-type]
        for a in range(0, len(out.outcomes), 100):
            entry = encode_outcomes(out.outcomes[a : a + 100])
            await redis_client.xadd(keys.outcomes, entry)  # type: ignore[arg-type]
        worker = SinkWorker(sink_settings(db.url, keys), redis=redis_client, burst=True)
        async with worker:
            await worker.run()
        stored = await db.fetch("SELECT count(*) AS n FROM outcomes")
        assert stored[0]["n"] == len(out.outcomes)
        assert db_rows(await db.fetch(SELECT_ROWS)) == expected


CONTRACT_COLUMNS = [
    ("kind", "text"),
    ("id", "text"),
    ("exchange", "text"),
    ("symbol", "text"),
    ("timeframe", "text"),
    ("open_time", "timestamp with time zone"),
    ("pattern", "text"),
    ("direction", "text"),
    ("horizon", "integer"),
    ("ret", "double precision"),
    ("mfe", "double precision"),
    ("mae", "double precision"),
    ("hit", "boolean"),
    ("score", "double precision"),
    ("trend", "double precision"),
    ("atr_ratio", "double precision"),
    ("volume_ratio", "double precision"),
]


async def test_outcome_rows_has_exactly_the_contract_columns(db: Db) -> None:
    """``stats`` and ``console`` query ``outcome_rows`` by these names and types."""
    conn = await db.connect()
    try:
        await migrate(conn)
        rows = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = 'outcome_rows' ORDER BY ordinal_position",
            db.schema,
        )
    finally:
        await conn.close()
    assert [(r["column_name"], r["data_type"]) for r in rows] == CONTRACT_COLUMNS
