"""Service lifecycle and the runner's shutdown order, with in-memory services (no Redis)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import pytest

from common.errors import ConfigError
from common.lifecycle import Service, serve
from common.settings import CommonSettings

SETTINGS = CommonSettings(metrics_port=0, grace_seconds=5)


class Recorder(Service):
    name = "recorder"

    def __init__(self, *, burst: bool = False, work_s: float = 0.0) -> None:
        super().__init__(burst=burst)
        self.events: list[str] = []
        self.work_s = work_s
        self.in_batch = asyncio.Event()

    async def start(self) -> None:
        await super().start()
        self.events.append("start")

    async def run(self) -> None:
        while not self.stopping:
            self.events.append("batch")
            self.in_batch.set()
            await asyncio.sleep(self.work_s)  # an in-flight batch is finished, never cut
            self.events.append("acked")
            if self.burst:
                return

    async def flush(self) -> None:
        self.events.append("flush")

    async def close(self) -> None:
        self.events.append("close")


async def test_burst_service_runs_to_completion_and_exits_0() -> None:
    svc = Recorder(burst=True)
    assert await serve(svc, SETTINGS, install_signals=False) == 0
    assert svc.events == ["start", "batch", "acked", "flush", "close"]


async def test_stop_is_idempotent_and_context_manager_closes_once() -> None:
    svc = Recorder(burst=True)
    async with svc:
        await svc.run()
    await svc.stop()
    await svc.stop()
    assert svc.events.count("close") == 1 and svc.stopping


async def test_sigterm_finishes_the_inflight_batch_then_flushes_and_closes() -> None:
    svc = Recorder(work_s=0.2)
    task = asyncio.create_task(serve(svc, SETTINGS))
    await svc.in_batch.wait()
    os.kill(os.getpid(), signal.SIGTERM)  # handled on the loop by serve()
    assert await task == 0
    assert svc.events[-3:] == ["acked", "flush", "close"]
    assert svc.events.count("batch") == svc.events.count("acked")


async def test_a_second_signal_stops_at_once_and_exits_1() -> None:
    svc = Recorder(work_s=3600)
    settings = CommonSettings(metrics_port=0, grace_seconds=3600)
    task = asyncio.create_task(serve(svc, settings))
    await svc.in_batch.wait()
    os.kill(os.getpid(), signal.SIGINT)
    await svc.wait_stopping()  # the first signal is handled before the second one is sent
    os.kill(os.getpid(), signal.SIGINT)
    assert await task == 1
    assert "acked" not in svc.events and svc.events[-2:] == ["flush", "close"]


async def test_grace_expiry_cancels_the_run_and_exits_1() -> None:
    svc = Recorder(work_s=3600)
    settings = CommonSettings(metrics_port=0, grace_seconds=0.05)
    task = asyncio.create_task(serve(svc, settings, install_signals=False))
    await svc.in_batch.wait()
    svc.request_stop()
    assert await task == 1
    assert "acked" not in svc.events and svc.events[-2:] == ["flush", "close"]


class Failing(Recorder):
    async def run(self) -> None:
        raise RuntimeError("bug")


async def test_a_failing_run_exits_1_and_still_closes() -> None:
    svc = Failing()
    assert await serve(svc, SETTINGS, install_signals=False) == 1
    assert svc.events[-1] == "close"


async def test_factory_is_built_inside_the_loop() -> None:
    built: list[Recorder] = []

    def factory() -> Recorder:
        asyncio.get_running_loop()  # raises if called outside a loop
        built.append(Recorder(burst=True))
        return built[0]

    assert await serve(factory, SETTINGS, install_signals=False) == 0
    assert built[0].events[0] == "start"


async def test_metrics_port_in_use_is_a_config_error_naming_the_variable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = CommonSettings(metrics_host="127.0.0.1", metrics_port=port)
        with pytest.raises(ConfigError) as info:
            await serve(Recorder(burst=True), settings, install_signals=False)
    assert info.value.variable == "METRICS_PORT" and str(port) in info.value.problem
