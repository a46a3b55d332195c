"""The sink stores bar outcomes once and ``outcome_rows`` equals replay's ``outcomes.jsonl``,
on plain PostgreSQL and on TimescaleDB."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from common.names import Keys
from detectors.outcomes import OutcomeConfig
from detectors.partition import EngineConfig
from detectors.timeframes import parse_timeframes
from sink.migrate import migrate
from sink.service import SinkService
from tests.outcomes_support import SELECT_ROWS, db_rows, long_rows, replay_outcomes, write_streams
from tests.sink_support import Db, sink_settings

pytestmark = pytest.mark.redis

CONFIG = EngineConfig(
    timeframes=parse_timeframes("1s,5s"),
    allowed_lateness_ms=1000,
    outcomes=OutcomeConfig((1, 3, 10), cost_bps=0.3),
)


async def test_outcome_rows_equal_replay_lines_and_are_stored_once(
    db: Db, redis_client: aioredis.Redis, keys: Keys
) -> None:
    replayed = replay_outcomes(CONFIG, rate=4.0, seed=4, count=3_000)
    assert replayed.signals and replayed.out.outcomes
    expected = long_rows(replayed.lines)
    assert {r[7] for r in expected} == {"long", "short"}
    for _ in range(2):  # the second time is a redelivery: nothing is stored twice
        await write_streams(redis_client, keys, replayed, bars=False)
        worker = SinkService(sink_settings(db.url, keys), redis=redis_client, burst=True)
        async with worker:
            await worker.run()
        stored = await db.fetch("SELECT count(*) AS n FROM outcomes")
        assert stored[0]["n"] == len(replayed.out.outcomes)
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
