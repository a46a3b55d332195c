"""Every ``python -m <stage>`` (``common.lifecycle.worker_main``) with an invalid setting: one
line on stderr naming the variable, exit code 2 (systemd's ``RestartPreventExitStatus=2``),
before anything connects. The graceful SIGTERM exit of each is in ``test_deploy_probes.py``."""

from __future__ import annotations

import pytest

from tests.deploy_support import WORKERS
from tests.integration.runtime_support import finish, spawn_worker, worker_env

CASES = [
    *((worker, "PARTITIONS", "x", "expected an integer 1..4096, got 'x'") for worker in WORKERS),
    ("ingest", "EXCHANGES", "nasdaq:AAPL", "got 'nasdaq:AAPL'"),
    ("ingest", "INGEST_URL_BINANCE", "http://h/x", "expected a ws:// or wss:// URL"),
]


@pytest.mark.parametrize(("worker", "variable", "value", "says"), CASES)
def test_bad_setting_is_one_line_and_exit_code_2(
    namespace: str, worker: str, variable: str, value: str, says: str
) -> None:
    needed = {"EXCHANGES": "binance:BTCUSDT", "SIGNALS_WS_TOKENS": "t0ken"}  # ingest, ws
    env = worker_env(namespace, **{**needed, variable: value})
    code, err = finish(spawn_worker(env, WORKERS[worker]), timeout=30)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"alphapulse: invalid setting {variable}: "), err
    assert says in lines[0]
