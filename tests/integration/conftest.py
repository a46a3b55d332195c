"""Integration-tier fixtures: ``db``, a fresh schema on plain PostgreSQL and on TimescaleDB
(each test using it runs on both; a test file may define its own ``db`` for one server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.sink_support import DB_PARAMS, Db, make_db


@pytest.fixture(params=DB_PARAMS)
async def db(request: pytest.FixtureRequest) -> AsyncIterator[Db]:
    async for d in make_db(request.param):
        yield d
