"""``make run`` from a fresh clone, as a person sees it in a terminal (issue 16).

The clone (``git clone`` of this checkout's committed HEAD) runs ``make run`` on a
pseudo-terminal whose foreground process group is make's, and Ctrl-C is the byte ``\\x03``
typed into it — so the terminal driver sends SIGINT to whatever group is in the foreground,
exactly as at a keyboard (a signal sent to one process would not test that make itself
stays out of it). The test reads the output until the first signal line and checks: the
where-to-look block (WebSocket URL and token, every process's metrics port, the CLI with the
namespace, SQL), at most 20 lines before that first signal, then after Ctrl-C one summary
line and exit code 0 from make.

Not a fresh install: the clone's ``.venv`` (and ``node_modules``) are symlinks to this
checkout's (a real ``make install`` takes minutes), its ``pyproject.toml``,
``constraints.txt`` and npm's ``package*.json`` are dated before the venv's install stamp
so that make does not reinstall into the shared venv, and PYTHONPATH
puts the clone's packages first. ``../shared`` is a symlink beside the clone. Namespace,
simulator, WebSocket and metrics ports are this test's own (other runs go on in parallel).
"""

from __future__ import annotations

import fcntl
import os
import pty
import random
import re
import select
import signal
import socket
import subprocess
import termios
import time
import uuid
from pathlib import Path

import pytest
import redis

from common.procfile import procfile_names
from tests.conftest import REDIS_URL
from tests.integration.runtime_support import ROOT, free_port

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

SIGNAL_LINE = re.compile(r"^tail\s+\|\s+\d{4}-\d\d-\d\dT\S+\s+\S+\s+\S+\s+\S+\s+(long|short)\s")
MAX_LINES_BEFORE_FIRST_SIGNAL = 20
FIRST_SIGNAL_WITHIN_S = 180.0


def _clone(tmp_path: Path) -> Path:
    """A fresh clone of HEAD beside a ``shared`` link, reusing this checkout's venv."""
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    (tmp_path / "shared").symlink_to((ROOT / ".." / "shared").resolve())
    (clone / ".venv").symlink_to(ROOT / ".venv")
    (clone / "node_modules").symlink_to(ROOT / "node_modules")  # the console's, from npm ci
    stamp = (ROOT / ".venv" / ".installed").stat().st_mtime
    for name in ("pyproject.toml", "constraints.txt", "package.json", "package-lock.json"):
        os.utime(clone / name, (stamp - 3600, stamp - 3600))
    return clone


def _delete_namespace(namespace: str) -> None:
    """What the run left in Redis (the database rows are kept: other runs share them)."""
    r = redis.Redis.from_url(REDIS_URL)
    try:
        for pattern in (f"{namespace}*", f"{{{namespace}*"):
            keys = list(r.scan_iter(match=pattern, count=1000))
            if keys:
                r.delete(*keys)
    finally:
        r.close()


def _free_metrics_base(processes: int = 12) -> int:
    """A METRICS_BASE whose ports base, base+100, ... are all free now (below the ephemeral
    range, so no outgoing connection takes one meanwhile)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - 100 * processes, 100)
        try:
            for i in range(processes):
                with socket.socket() as s:
                    s.bind(("0.0.0.0", base + 100 * i))
        except OSError:
            continue
        return base
    raise AssertionError("no free metrics port range")


def _make_controlling_terminal() -> None:
    """In the child, after setsid: stdin (the pty) becomes the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The master side of the pty: lines as the person sees them."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.buffer = b""
        self.lines: list[str] = []
        self.closed = False

    def read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every slave side is closed
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self.buffer += chunk
        *done, self.buffer = self.buffer.split(b"\n")
        self.lines += [line.decode(errors="replace").rstrip("\r") for line in done]

    def type(self, data: bytes) -> None:
        os.write(self.master, data)


def test_make_run_prints_where_to_look_then_signals_and_ctrl_c_ends_cleanly(
    tmp_path: Path,
) -> None:
    clone = _clone(tmp_path)
    namespace = f"makerun{uuid.uuid4().hex[:8]}:"
    ws_port, sim_port, metrics_base = free_port(), free_port(), _free_metrics_base()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_URL_", "TEST_"))}
    env.update(PYTHONPATH=str(clone), SIGNALS_WS_PORT=str(ws_port), TERM="dumb")
    env.pop("LOG_LEVEL", None)
    env.pop("MAKEFLAGS", None)
    command = [
        "make",
        "--no-print-directory",
        "run",
        f"RUN_NAMESPACE={namespace}",
        f"SIM_PORT={sim_port}",
        f"METRICS_BASE={metrics_base}",
    ]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        command,
        cwd=clone,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=_make_controlling_terminal,  # noqa: PLW1509 - no threads in this test
    )
    os.close(slave)
    term = Terminal(master)
    try:
        deadline = time.monotonic() + FIRST_SIGNAL_WITHIN_S
        first = None
        while first is None and not term.closed and time.monotonic() < deadline:
            term.read(0.5)
            first = next((i for i, ln in enumerate(term.lines) if SIGNAL_LINE.match(ln)), None)
        shown = "\n".join(term.lines)
        assert first is not None, f"no signal line within {FIRST_SIGNAL_WITHIN_S} s:\n{shown}"
        before = term.lines[:first]

        block = "\n".join(before)
        assert "Ctrl-C stops everything" in block
        assert f"ws://127.0.0.1:{ws_port}/?token=dev-token" in block
        for i, name in enumerate(["simulator", "ingest", "detectors1", "detectors2", "signals"]):
            assert f"{name}:{metrics_base + 100 * i}" in block, block
        assert f"NAMESPACE={namespace}" in block and "make status" in block
        assert "FROM bars" in block and "FROM signals" in block
        assert "settings=" not in block  # no settings dumps at INFO
        assert not [ln for ln in before if ln.lstrip().startswith("{")]  # no raw JSON lines
        assert before[0].startswith("alphapulse run: ")  # the block first (migrate: silent)
        assert len(before) <= MAX_LINES_BEFORE_FIRST_SIGNAL, shown

        term.type(b"\x03")  # Ctrl-C
        deadline = time.monotonic() + 90
        while not term.closed and time.monotonic() < deadline:
            term.read(0.5)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:  # a failed check: Ctrl-C stops the workers (own groups)
            term.type(b"\x03")
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        os.close(master)
        _delete_namespace(namespace)
    after = [ln for ln in term.lines[first:] if ln.strip() and ln.strip() != "^C"]
    shown = "\n".join(after[-15:])
    assert after[-1].startswith("alphapulse run: stopped after"), shown
    started = len(procfile_names((ROOT / "Procfile").read_text()))  # FEED=sim: every process
    assert f"{started} processes stopped cleanly" in after[-1], shown
    assert not [ln for ln in after if "make: ***" in ln or "Interrupt" in ln], shown
    assert code == 0, shown
