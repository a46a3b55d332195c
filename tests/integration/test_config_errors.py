"""Invalid settings that used to crash with a traceback (or were accepted) are one line naming
the variable and exit code 2, before any work starts (issue 11, item 8); and a command that
meets an authentication, permission or TLS failure says so in one line, at once.

Workers run as ``python -m <stage>`` against the real Redis (and a private ACL
``redis-server`` for the commands); nothing here is mocked."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy_support import WORKERS
from tests.integration.runtime_support import (
    acl_redis,
    finish,
    free_port,
    run_cli,
    spawn_worker,
    stage_and_limited,
    worker_env,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

NEEDED = {"EXCHANGES": "binance:BTCUSDT", "SIGNALS_WS_TOKENS": "t0ken-for-tests"}


def _one_line_exit_2(env: dict[str, str], module: str, variable: str, says: str) -> None:
    code, err = finish(spawn_worker(env, module), timeout=60)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"alphapulse: invalid setting {variable}: "), err
    assert says in lines[0], err


WORKER_CASES = [
    *(
        (worker, "REDIS_TLS_CA", "/nonexistent/ca.pem", "expected a readable file")
        for worker in WORKERS
    ),
    *(
        (worker, "REDIS_URL", "redis://127.0.0.1:70000/0", "expected a URL with a port 1..65535")
        for worker in WORKERS
    ),
    ("detectors", "REDIS_TLS_CA", __file__, "expected a PEM CA certificate"),
    (
        "sink",
        "DATABASE_URL",
        "postgresql://u:pw-x@127.0.0.1:99999/x",
        "got 'postgresql://u:***@127.0.0.1:99999/x'",
    ),
    ("signals-ws", "SIGNALS_WS_HOST", "no-such-host.invalid", "expected a local address"),
]


@pytest.mark.parametrize(("worker", "variable", "value", "says"), WORKER_CASES)
def test_bad_file_url_port_or_host_is_one_line_and_exit_code_2(
    namespace: str, worker: str, variable: str, value: str, says: str
) -> None:
    env = worker_env(namespace, **{**NEEDED, "SIGNALS_WS_HOST": "127.0.0.1", variable: value})
    _one_line_exit_2(env, WORKERS[worker], variable, says)


@pytest.mark.parametrize("metrics", [False, True], ids=["no-metrics", "metrics-on"])
def test_a_busy_websocket_port_is_one_line_and_exit_code_2(namespace: str, metrics: bool) -> None:
    """Found at bind time, after the metrics server started: still the only line printed."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = worker_env(
            namespace,
            **NEEDED,
            SIGNALS_WS_HOST="127.0.0.1",
            SIGNALS_WS_PORT=str(port),
            METRICS_PORT=str(free_port()) if metrics else "0",
        )
        _one_line_exit_2(env, "signals.ws", "SIGNALS_WS_PORT", f"got '{port}'")


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("threshold = 2.0\n", "threshold must be a number 0..1, got 2.0"),
        ("max_contribution = 1.5\n", "max_contribution must be a number 0..1"),
        ("rsi_oversold = 80.0\n", "rsi_oversold must be below rsi_overbought"),
        ("cooldown_bars = 1.5\n", "cooldown_bars must be a whole number"),
    ],
)
def test_a_model_that_can_never_score_as_documented_is_refused(
    namespace: str, tmp_path: Path, model: str, says: str
) -> None:
    path = tmp_path / "model.toml"
    path.write_text(model)
    env = worker_env(namespace, SIGNALS_MODEL_FILE=str(path))
    _one_line_exit_2(env, "signals", "SIGNALS_MODEL_FILE", says)


# --- commands ------------------------------------------------------------------------------------
PASSWORD, LIMITED = "Cmd-right-pw-0a1b", "Cmd-limited-pw-2c3d"


@pytest.fixture(scope="module")
def acl_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    users = stage_and_limited(PASSWORD, LIMITED)
    with acl_redis(tmp_path_factory.mktemp("redis-acl-cmd"), users) as port:
        yield port


def _command(namespace: str, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(worker_env(namespace, **env), *argv)


COMMANDS = [("status",), ("dlq", "show", "bars"), ("tail", "signals"), ("streams",)]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
@pytest.mark.parametrize(
    ("user", "password", "says"),
    [
        ("stage", "not-the-password", "AuthenticationError: invalid username-password pair"),
        ("limited", LIMITED, "NoPermissionError: this user has no permissions"),
    ],
    ids=["wrong-password", "acl-refused"],
)
def test_a_command_refused_by_redis_says_so_in_one_line(  # noqa: PLR0917 - parametrized
    acl_port: int, namespace: str, argv: tuple[str, ...], user: str, password: str, says: str
) -> None:
    url = f"redis://{user}:{password}@127.0.0.1:{acl_port}/0"
    done = _command(namespace, *argv, REDIS_URL=url)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"alphapulse {argv[0]}: {says}"), done.stderr
    assert password not in done.stderr + done.stdout


class _SilentServer:
    """A TCP port that accepts connections and never answers (a plain server that waits for
    a newline in the TLS ClientHello behaves the same); counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed: the test is over
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_rediss_on_a_plain_port_fails_after_one_attempt_in_one_line(namespace: str) -> None:
    server = _SilentServer()
    try:
        url = f"rediss://127.0.0.1:{server.port}/0"
        done = _command(namespace, "status", REDIS_URL=url, REDIS_CONNECT_TIMEOUT="1")
    finally:
        server.close()
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["alphapulse status: TimeoutError: Timeout connecting to server"], done.stderr
    # One connection, no retries: the wait is one REDIS_CONNECT_TIMEOUT, not four of them.
    assert len(server.accepted) == 1


def test_rediss_on_the_real_plain_redis_fails_in_one_line(namespace: str) -> None:
    """The shared plain Redis itself, reached with rediss://: the same single attempt."""
    url = "rediss://127.0.0.1:6379/0"
    done = _command(namespace, "status", REDIS_URL=url, REDIS_CONNECT_TIMEOUT="1")
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("alphapulse status: "), done.stderr
