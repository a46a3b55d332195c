"""``GC_GEN0``: every worker started by ``worker_main`` tunes its garbage collector once its
service has started (``common.lifecycle.tune_gc``), and only then.

Each case runs a tiny worker in a fresh interpreter (the collector is process state): its
service makes an object in ``start()`` and one in ``run()`` and reports the collector's
thresholds and which of the two objects were frozen out of collection.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from common.lifecycle import Service, serve
from common.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import gc, json, os, sys
from dataclasses import dataclass
from common.lifecycle import Service, worker_main
from common.settings import CommonSettings

PYTHON_DEFAULT = gc.get_threshold()


@dataclass(frozen=True)
class Settings:
    common: CommonSettings


class Report(Service):
    name = "gc-report"

    async def start(self):
        await super().start()
        self.from_start = {"made": ["in start"]}

    async def run(self):
        from_run = {"made": ["in run"]}
        collected = {id(o) for o in gc.get_objects()}  # frozen objects are not among them
        print(json.dumps({
            "python_default": PYTHON_DEFAULT,
            "threshold": gc.get_threshold(),
            "start_frozen": id(self.from_start) not in collected,
            "run_frozen": id(from_run) not in collected,
        }), flush=True)


settings = lambda: Settings(CommonSettings.from_env(os.environ))
sys.exit(worker_main(settings, lambda s: Report(burst=True)))
"""


def run_worker(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("GC_GEN0", "INGEST_GC_GEN0")}
    base |= {
        "METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-c", WORKER],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def report(**env: str) -> dict[str, Any]:
    done = run_worker(**env)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


@pytest.mark.parametrize(("env", "gen0"), [({}, 50_000), ({"GC_GEN0": "12345"}, 12_345)])
def test_worker_main_tunes_the_collector_once_the_service_has_started(
    env: dict[str, str], gen0: int
) -> None:
    got = report(**env)
    assert tuple(got["threshold"]) == (gen0, 20, 100)
    assert tuple(got["python_default"]) != (gen0, 20, 100)
    assert got["start_frozen"]  # what start() built is out of every later collection
    assert not got["run_frozen"]  # what the running service makes is collected as usual


def test_gc_gen0_0_leaves_pythons_defaults() -> None:
    got = report(GC_GEN0="0")
    assert got["threshold"] == got["python_default"]
    assert not got["start_frozen"] and not got["run_frozen"]


def test_a_bad_gc_gen0_is_one_line_and_exit_code_2() -> None:
    done = run_worker(GC_GEN0="-1")
    assert done.returncode == 2
    assert done.stdout == ""  # the service was never built
    line = "alphapulse: invalid setting GC_GEN0: expected an integer >= 0, got '-1'"
    assert done.stderr == line + "\n"


class Burst(Service):
    async def run(self) -> None:
        return


async def test_serve_leaves_the_collector_alone_unless_asked() -> None:
    """Services run inside a process that is not theirs (tests) do not retune it."""
    before = (gc.get_threshold(), gc.get_freeze_count())
    settings = CommonSettings(metrics_port=0, gc_gen0=123)
    assert await serve(Burst(burst=True), settings, install_signals=False) == 0
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
