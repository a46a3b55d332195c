"""What ``make run`` prints and how it stops (issue 16): the Procfile's fixed metrics ports,
the where-to-look block, the stop summary, and ``alphapulse run-procs`` as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.procfile import BASE_PORT, console_workers, main, read_procfile, where_to_look
from common.procrun import summary_line
from ingest.offline.runenv import SIMULATOR, plan

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = (ROOT / "Procfile").read_text()


def test_metrics_ports_do_not_move_with_feed() -> None:
    """honcho numbered the processes it started: FEED=live (no simulator) moved ingest from
    5100 to 5000. The port is the position in the whole Procfile now."""
    ports = {p.name: p.metrics_port for p in read_procfile(PROCFILE)}
    live = plan("live", procfile=PROCFILE)
    assert SIMULATOR not in live.processes
    assert ports["simulator"] == BASE_PORT and ports["ingest"] == BASE_PORT + 100
    assert len(set(ports.values())) == len(ports)  # one port per process
    shown = where_to_look(
        [p for p in read_procfile(PROCFILE) if p.name in live.processes],
        summary=live.summary,
        namespace="run:",
        env={},
    )
    assert f"ingest:{BASE_PORT + 100}" in "\n".join(shown)


def test_an_explicit_metrics_port_wins_and_a_new_process_gets_the_next_port() -> None:
    text = "a: x\nb: METRICS_PORT=7001 y\nc: z\n# d: not a process\nweb: serve\n"
    got = [(p.name, p.metrics_port) for p in read_procfile(text, base_port=6000)]
    assert got == [("a", 6000), ("b", 7001), ("c", 6200), ("web", 6300)]


def test_console_workers_lists_every_process_that_serves_metrics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``make run``'s CONSOLE_WORKERS: each process with its fixed port, in Procfile order;
    the simulator and tail serve no /metrics."""
    text = "simulator: a\ningest: b\nweb: c\ntail: d\n"
    assert console_workers(read_procfile(text, base_port=6000)) == (
        "ingest=http://127.0.0.1:6100,web=http://127.0.0.1:6200"
    )
    assert main(["console-workers", "-f", str(ROOT / "Procfile"), "--port-base", "6000"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == console_workers(read_procfile(PROCFILE, base_port=6000))
    assert "simulator=" not in printed and "sink=http://127.0.0.1:6600" in printed


def test_the_block_says_where_to_look() -> None:
    processes = read_procfile(PROCFILE)
    env = {"SIGNALS_WS_PORT": "8781", "DATABASE_URL": "postgresql://u@h:5432/db"}
    lines = where_to_look(processes, summary="the feed", namespace="run:", env=env)
    text = "\n".join(lines)
    assert lines[0] == "alphapulse run: the feed; Ctrl-C stops everything"
    assert "ws://127.0.0.1:8781/?token=dev-token" in text
    for p in processes:
        assert f"{p.name}:{p.metrics_port}" in text
    assert "make status | make tail" in text and "NAMESPACE=run: .venv/bin/alphapulse" in text
    assert text.count("psql postgresql://u@h:5432/db -c 'SELECT") == 1
    assert text.count("-c 'SELECT") == 2  # two queries, one psql line
    # the Procfile's web process: the console's address (its login only when a password is set)
    assert "console  http://127.0.0.1:8790/" in text and "login" not in text
    assert len(lines) <= 6


def test_the_block_never_echoes_a_token_the_user_set_and_shows_the_console_login() -> None:
    processes = read_procfile("web: x\nsignals-ws: y\n")
    env = {"SIGNALS_WS_TOKENS": "s3cret,other", "CONSOLE_PORT": "8791", "CONSOLE_PASSWORD": "pw"}
    text = "\n".join(where_to_look(processes, summary="s", namespace="n:", env=env))
    assert "s3cret" not in text and "token=one of SIGNALS_WS_TOKENS" in text
    assert "console  http://127.0.0.1:8791/  login dev / pw" in text


def test_summary_line() -> None:
    clean = summary_line(
        elapsed_s=75.2,
        codes={"a": 0, "b": 0},
        requested=True,
        counts={"signals": 3, "bars": 40},
        namespace="run:",
    )
    assert clean == (
        "alphapulse run: stopped after 1m15s; 2 processes stopped cleanly;"
        " 3 signals, 40 bars in namespace 'run:'"
    )
    crashed = summary_line(
        elapsed_s=5, codes={"a": 0, "b": 1, "c": -9}, requested=False, counts=None, namespace=""
    )
    assert crashed == (
        "alphapulse run: ended (a process exited on its own) after 0m05s;"
        " not clean: b exit 1, c exit -9"
    )


# A process that stops cleanly on its first SIGINT and fails on a second one, like a worker.
WORKER = (
    "import signal, sys, time\n"
    "seen = []\n"
    "def on(sig, frame):\n"
    "    seen.append(sig)\n"
    "signal.signal(signal.SIGINT, on)\n"
    "print('up', flush=True)\n"
    "while not seen:\n"
    "    time.sleep(0.05)\n"
    "time.sleep(0.5)\n"
    "sys.exit(0 if len(seen) == 1 else 3)\n"
)


def _run_procs(tmp_path: Path, procfile: str) -> subprocess.Popen[str]:
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "Procfile").write_text(procfile)
    env = {**os.environ, "NAMESPACE": f"procs{os.getpid()}:", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "common.cli", "run-procs", "--port-base", "0", "--summary", "t"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # SIGINT to the whole group, as a terminal's Ctrl-C
    )


def _wait_for_lines(proc: subprocess.Popen[str], count: int) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while sum(ln.endswith("| up") for ln in lines) < count and time.monotonic() < deadline:
        lines.append(proc.stdout.readline().rstrip("\n"))
    return lines


def test_ctrl_c_reaches_each_process_once_and_ends_with_one_summary_line(tmp_path: Path) -> None:
    py = sys.executable
    proc = _run_procs(tmp_path, f"one: {py} worker.py\ntwo: {py} worker.py\n")
    try:
        lines = _wait_for_lines(proc, 2)
        assert lines[0] == "alphapulse run: t; Ctrl-C stops everything"
        os.killpg(proc.pid, signal.SIGINT)  # the runner's group: the workers have their own
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    tail = out.strip().splitlines()
    assert tail[-1].startswith("alphapulse run: stopped after"), out
    assert "2 processes stopped cleanly" in tail[-1], out  # each saw exactly one SIGINT
    assert proc.returncode == 0


def test_a_process_that_exits_on_its_own_stops_the_others_and_fails(tmp_path: Path) -> None:
    py = sys.executable
    proc = _run_procs(tmp_path, f"one: {py} worker.py\nbad: sleep 1; exit 4\n")
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    last = out.strip().splitlines()[-1]
    assert last.startswith("alphapulse run: ended (a process exited on its own)"), out
    assert "bad exit 4" in last and "one exit -15" in last
    assert proc.returncode == 1
