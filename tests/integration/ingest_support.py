"""Test doubles shared by the ingest integration tests."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError


class FaultyRedis:
    """Wraps a client. While ``down`` is set its pipelines fail without running (an outage);
    the next ``lost_replies`` pipelines run but their replies are lost (the connection died
    after Redis applied the commands, so the writer cannot know they landed)."""

    def __init__(self, inner: aioredis.Redis, *, down: bool = False, lost_replies: int = 0) -> None:
        self.inner = inner
        self.down = down
        self.lost_replies = lost_replies
        self.failures = 0

    def pipeline(self, transaction: bool = True) -> Any:
        pipe = self.inner.pipeline(transaction=transaction)
        run = pipe.execute
        applied = not self.down
        if self.down or self.lost_replies > 0:
            self.failures += 1
            self.lost_replies -= applied

            async def fail(raise_on_error: bool = True) -> list[Any]:
                if applied:
                    await run(raise_on_error)
                raise RedisConnectionError("simulated outage" if not applied else "reply lost")

            pipe.execute = fail  # type: ignore[method-assign]
        return pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
