"""Shared test fixtures: real servers, never silently skipped.

A test that needs Redis or PostgreSQL *fails* when the server is not reachable (in CI and
locally alike): a missing server is a broken environment, not a reason to pass.
Every Redis test gets its own key namespace, so concurrent runs on one server never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from common.names import Keys

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def keys(namespace: str) -> Keys:
    return Keys(partitions=4, namespace=namespace)


@pytest.fixture
async def redis_client(namespace: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as e:  # a broken environment: fail loudly, never skip
        pytest.fail(f"Redis is required at REDIS_URL={REDIS_URL}: {e!r}")
    yield client
    # Remove this test's keys only (its namespace), leaving any other run untouched.
    async for key in client.scan_iter(match=f"*{namespace}*", count=1000):
        await client.delete(key)
    await client.aclose()
