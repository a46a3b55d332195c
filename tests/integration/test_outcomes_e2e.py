"""Live equals replay for outcomes, with detectors SIGKILLed mid-run (issue 12 §1).

The pipeline as processes (ingest from the simulator, two detectors, signals, sink on
TimescaleDB) runs over the first 150 s of the recorded BTC+ETH sessions at 5x while the test
SIGKILLs a detector three times (alternately; the killed one is started again, as a process
manager would). A killed owner's partitions move to the other detector (or come back), which
restores the checkpoint — pending outcomes included — and re-applies what was not covered;
outputs written after the checkpoint come again with the same ids and are stored once. Once
the bars, patterns and signals equal replay's, ``outcome_rows`` must equal replay's
``outcomes.jsonl`` row for row. The allowed lateness is 20 s (replay too), far above the lease
time a kill costs, so the live idle close of the last bars equals replay's end-of-file close.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import REDIS_URL
from tests.integration.e2e_support import (
    Supervised,
    drain_and_compare,
    replay_rows,
    stage_env,
    start_stages,
)
from tests.integration.test_e2e_pipeline import PARTITIONS, write_subset
from tests.outcomes_support import SELECT_ROWS, db_rows, long_rows
from tests.sink_support import Db, make_db

pytestmark = [pytest.mark.redis, pytest.mark.timescale, pytest.mark.slow]

KILLS = ((4.0, "detectors-1"), (9.0, "detectors-2"), (14.0, "detectors-1"))
LATENESS_MS = 20_000


@pytest.fixture
async def db() -> AsyncIterator[Db]:
    async for d in make_db("timescale"):
        yield d


async def test_outcomes_live_equal_replay_with_detectors_killed(
    db: Db, namespace: str, tmp_path: Path
) -> None:
    csv_path = tmp_path / "ticks.csv"
    assert write_subset(csv_path) > 1000
    env = stage_env(REDIS_URL, namespace, PARTITIONS, LATENESS_MS)
    want = await replay_rows(csv_path, tmp_path / "replay", env, PARTITIONS)
    lines = [orjson.loads(x) for x in (tmp_path / "replay/outcomes.jsonl").read_bytes().split()]
    want_outcomes = long_rows(lines)
    assert {r[0] for r in want_outcomes} == {"pattern", "signal"}
    assert len(want_outcomes) > 1000
    # DEBUG: the per-partition restore lines this test counts (INFO only sums moves up).
    pipe = Supervised(tmp_path, {**env, "LOG_LEVEL": "DEBUG"})
    try:
        start_stages(pipe, db.url, csv_path, "--speed", "5")
        t0 = time.monotonic()
        for at, name in KILLS:
            await asyncio.sleep(max(0.0, at - (time.monotonic() - t0)))
            assert pipe.proc("simulator").poll() is None, "the feed ended before the kills"
            pipe.kill(name)
            await asyncio.sleep(0.5)
            assert pipe.revive() == [name]
        await drain_and_compare(pipe, db, want, env, 150)
        got = db_rows(await db.fetch(SELECT_ROWS))
        assert len(got) == len(want_outcomes), pipe.log_tail()
        assert got == want_outcomes
        stored = await db.fetch(
            "SELECT count(*) AS n, count(DISTINCT (id, horizon)) AS k FROM outcomes"
        )
        assert stored[0]["n"] == stored[0]["k"]
        restored = sum(
            (tmp_path / f"detectors-{i}.log").read_text().count("partition_restored")
            for i in (1, 2)
        )
        assert restored > PARTITIONS, "partitions must have moved between owners"
    finally:
        pipe.close()
