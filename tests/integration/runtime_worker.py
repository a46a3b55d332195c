"""A tiny stage for the runtime's process tests: ``python -m tests.integration.runtime_worker``.

It consumes ``keys.bars`` in group ``TEST_GROUP`` (default ``g``) and, per entry, applies one
idempotent effect atomically (Lua): ``SET done:<id> NX``; only when that succeeds it XADDs the
entry id to ``keys.signals`` (the output) — so an entry handled twice (a redelivery after a
crash) has its effect once. Every attempt is counted in ``attempts:<id>`` so tests can see the
redelivery happen. Fields ``poison=1`` raise a RuntimeError; ``bad=1`` raise ``BadInput``.

Fault injection (environment):
``TEST_PAUSE_AFTER`` — in the first batch, after that many entries: set ``paused`` (to the
consumer name) and sleep ``TEST_PAUSE_S`` seconds (so a signal lands mid-batch), then go on.
"""

from __future__ import annotations

import asyncio
import os
import sys

from common.errors import BadInput
from common.lifecycle import run_service
from common.settings import CommonSettings, env_float, env_int, env_str, exit_on_config_error
from common.stream_worker import BatchResult, Entry, StreamWorker

EFFECT = """
redis.call('INCR', KEYS[3])
if redis.call('SET', KEYS[1], ARGV[2], 'NX') then
  redis.call('XADD', KEYS[2], '*', 'src', ARGV[1], 'by', ARGV[2])
  return 1
end
return 0
"""


def ns_key(settings: CommonSettings, name: str) -> str:
    """A key of this test run (inside the test's namespace)."""
    return f"{settings.namespace}{name}"


class EffectWorker(StreamWorker):
    name = "test-worker"

    def __init__(
        self, settings: CommonSettings, pause_after: int, pause_s: float, group: str, burst: bool
    ) -> None:
        keys = settings.keys()
        super().__init__(settings, group=group, streams=[keys.bars], burst=burst)
        self.output = keys.signals
        self.pause_after = pause_after
        self.pause_s = pause_s
        self.effect = self.redis.register_script(EFFECT)

    async def handle(self, batch: list[Entry]) -> BatchResult | None:
        result = BatchResult()
        for i, e in enumerate(batch):
            if self.batches == 1 and i == self.pause_after:
                await self.redis.set(ns_key(self.settings, "paused"), self.consumer_name)
                await asyncio.sleep(self.pause_s)
            if e.fields.get(b"poison") == b"1":
                result.fail(e, RuntimeError(f"poison entry {e.id}"))
                continue
            if e.fields.get(b"bad") == b"1":
                result.fail(e, BadInput("test_bad", f"entry {e.id}"))
                continue
            keys = [
                ns_key(self.settings, f"done:{e.id}"),
                self.output,
                ns_key(self.settings, f"attempts:{e.id}"),
            ]
            await self.effect(keys=keys, args=[e.id, self.consumer_name])
        return result


def main() -> int:
    with exit_on_config_error():
        settings = CommonSettings.from_env(os.environ)
        pause_after = env_int(os.environ, "TEST_PAUSE_AFTER", -1, lo=-1)
        pause_s = env_float(os.environ, "TEST_PAUSE_S", 0.0, lo=0)
        group = env_str(os.environ, "TEST_GROUP", "g")
    burst = os.environ.get("TEST_BURST") == "1"

    def build() -> EffectWorker:
        return EffectWorker(settings, pause_after, pause_s, group, burst)

    return run_service(build, settings)


if __name__ == "__main__":
    sys.exit(main())
