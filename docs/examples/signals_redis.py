"""Consume the `signals` stream of `make run` as a Redis consumer group (at least once).

Usage: .venv/bin/python docs/examples/signals_redis.py [LIMIT]  (stop after LIMIT signals)
"""

import asyncio
import os
import sys

from signals.client import SignalSubscription

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ.get("NAMESPACE", "run:")  # the key prefix `make run` uses


async def main(limit: int) -> None:
    async with SignalSubscription(
        REDIS_URL, group="example", start="beginning", ack="manual", namespace=NAMESPACE
    ) as sub:
        seen = 0
        async for signal in sub:  # a typed signals.contract.Signal
            print(signal.id, signal.score, ",".join(signal.supporting), flush=True)
            await sub.ack(signal)  # only once handled; an unacked one comes back
            seen += 1
            if seen == limit:
                return


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
