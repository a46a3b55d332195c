"""Benchmarks (``make bench``): one ``bench_<stage>.py`` module per stage.

Each module has ``main() -> None`` that prints its figures, each next to the baseline it
measured in the same run (a ratio reads the same on a busy or idle machine). A module may
take ``BENCH_QUICK=1`` from the environment to run a shorter version.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from common.redis import redis_from_settings
from common.settings import CommonSettings


def service_redis(url: str) -> aioredis.Redis:
    """A client for ``url`` from the factory the services use (``common.redis``: commands
    packed by hiredis, sent without a task per write), so a stage measured in process talks
    to Redis as it does when it runs."""
    client = redis_from_settings(CommonSettings(redis_url=url, metrics_port=0))
    assert isinstance(client, aioredis.Redis)
    return client
