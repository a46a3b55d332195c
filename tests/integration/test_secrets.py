"""No secret reaches any output, on any failure path (issue 11, item 6).

A private ``redis-server`` with ACL users holds the passwords. Every worker (``python -m
ingest|detectors|signals|sink|signals.ws``) and the commands that talk to Redis or PostgreSQL
(``alphapulse status``, ``streams``, ``dlq``, ``tail``, ``migrate``) are driven into failure
with distinct planted secrets: a wrong Redis password (in ``REDIS_URL`` and in
``REDIS_PASSWORD``), a correct password followed by an ACL refusal during the connection
handshake (``SELECT`` not allowed: the frames of that failure hold the password), a
``DATABASE_URL`` with a password and a port that is no number, refused, or with a role the
server does not know, and the WebSocket tokens. Then every byte of every stdout and stderr is
searched for the secrets (the Redis-password, ACL and DSN-port scenarios leaked before).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from common.names import Keys
from tests.deploy_support import WORKERS
from tests.integration.runtime_support import (
    ROOT,
    acl_redis,
    free_port,
    run_cli,
    stage_and_limited,
    worker_env,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

RIGHT = "Right-Redis-pw-7f3a"  # the ``stage`` user's password (full rights)
WRONG = "Wrong-Redis-pw-91c2"  # a password no user has
LIMITED = "Limited-Redis-pw-5d08"  # the ``limited`` user's password (PING only)
ENV_WRONG = "Env-Redis-pw-c4e1"  # a wrong password given as REDIS_PASSWORD
DB_SECRET = "Db-secret-pw-2b77"
TOKEN = "Ws-token-e5a9-secret"
SECRETS = (RIGHT, WRONG, LIMITED, ENV_WRONG, DB_SECRET, TOKEN)
RUN_S = 8.0  # a worker that retries for ever is stopped (SIGTERM) after this long


@pytest.fixture(scope="module")
def acl_redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    users = stage_and_limited(RIGHT, LIMITED)
    with acl_redis(tmp_path_factory.mktemp("redis-acl"), users) as port:
        yield port


def _scenarios(port: int) -> dict[str, dict[str, str]]:
    """Name -> environment overrides; each one fails some way with a secret in play (the
    ``DATABASE_URL`` ones are run by the programs that use PostgreSQL, the others by all)."""
    base = f"127.0.0.1:{port}"
    return {
        "wrong-password-url": {"REDIS_URL": f"redis://stage:{WRONG}@{base}/0"},
        "wrong-password-env": {
            "REDIS_URL": f"redis://{base}/0",
            "REDIS_USERNAME": "stage",
            "REDIS_PASSWORD": ENV_WRONG,
        },
        # AUTH succeeds, then SELECT 1 is refused while the connection is being set up.
        "acl-refused": {"REDIS_URL": f"redis://limited:{LIMITED}@{base}/1"},
        # The same in the console form for people (plain tracebacks).
        "acl-refused-console": {
            "REDIS_URL": f"redis://limited:{LIMITED}@{base}/1",
            "LOG_FORMAT": "console",
        },
        "database-bad-port": {
            "REDIS_URL": f"redis://stage:{RIGHT}@{base}/0",
            "DATABASE_URL": f"postgresql://alpha:{DB_SECRET}@127.0.0.1:54x2/x",
        },
        "database-refused": {
            "REDIS_URL": f"redis://stage:{RIGHT}@{base}/0",
            "DATABASE_URL": f"postgresql://alpha:{DB_SECRET}@127.0.0.1:{free_port()}/x",
        },
        "database-bad-role": {
            "REDIS_URL": f"redis://stage:{RIGHT}@{base}/0",
            "DATABASE_URL": f"postgresql://no_such_role_x:{DB_SECRET}@127.0.0.1:5432/test",
        },
    }


REDIS_COMMANDS = (("status",), ("streams",), ("dlq", "show", "bars"), ("tail", "signals"))


def _programs(scenario: str) -> dict[str, list[str]]:
    """Name -> argv of every program that meets the scenario's failure."""
    py = sys.executable
    if scenario.startswith("database"):
        return {"sink": [py, "-m", "sink"], "migrate": [py, "-m", "common.cli", "migrate"]}
    programs = {worker: [py, "-m", module] for worker, module in WORKERS.items()}
    for command in REDIS_COMMANDS:
        programs[" ".join(command)] = [py, "-m", "common.cli", *command]
    return programs


def _env(namespace: str, overrides: dict[str, str]) -> dict[str, str]:
    env = worker_env(
        namespace,
        EXCHANGES="binance:BTCUSDT",
        INGEST_URL_BINANCE=f"ws://127.0.0.1:{free_port()}/ws",  # nothing listens: no network
        SIGNALS_WS_TOKENS=f"{TOKEN},other-{TOKEN}",
        SIGNALS_WS_HOST="127.0.0.1",
        SIGNALS_WS_PORT="0",
        REDIS_CONNECT_TIMEOUT="2",
    )
    env.update(overrides)
    return env


def _collect(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, tuple[int, str]]:
    """Each process's exit code and its stdout + stderr (stopping the ones still running)."""
    out: dict[str, tuple[int, str]] = {}
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=RUN_S)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: the graceful path logs too
            try:
                stdout, stderr = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
        out[name] = (proc.returncode, (stdout + stderr).decode(errors="replace"))
    return out


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )  # fmt: skip


def _leaks(outputs: dict[str, tuple[int, str]]) -> list[str]:
    return [
        f"{name}: {secret!r} in ...{text[max(0, text.find(secret) - 300) : text.find(secret) + 60]}"
        for name, (_, text) in outputs.items()
        for secret in SECRETS
        if secret in text
    ]


@pytest.mark.parametrize("scenario", list(_scenarios(0)))
def test_no_secret_in_any_output_of_any_failing_worker_or_command(
    acl_redis_port: int, namespace: str, scenario: str
) -> None:
    overrides = _scenarios(acl_redis_port)[scenario]
    env = _env(namespace, overrides)
    procs = {name: _spawn(argv, env) for name, argv in _programs(scenario).items()}
    outputs = _collect(procs)
    assert not _leaks(outputs), "\n".join(_leaks(outputs))
    # Not vacuous: every scenario made something fail (exit code 1 or 2) and say so.
    failed = {name: text for name, (code, text) in outputs.items() if code in (1, 2)}
    assert failed, outputs
    for name, text in failed.items():
        assert text.strip(), f"{name} failed silently"


def test_the_secret_is_masked_not_dropped_where_it_would_have_shown(
    acl_redis_port: int, namespace: str
) -> None:
    """The wrong password once printed as ``auth_args``: now the failure is still explained
    (error type and message, file/line/function of each frame) with no local variables."""
    env = _env(namespace, _scenarios(acl_redis_port)["acl-refused"])
    outputs = _collect({"signals": _spawn([sys.executable, "-m", "signals"], env)})
    code, text = outputs["signals"]
    assert code == 1, text
    assert "NoPermissionError" in text and "'select' command" in text
    assert '"lineno"' in text and '"locals"' not in text
    assert LIMITED not in text


async def test_dlq_show_masks_a_password_quoted_in_a_dead_letters_error(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    keys = Keys(partitions=4, namespace=namespace)
    error = f"OSError('cannot reach postgresql://alpha:{DB_SECRET}@db:5432/x')"
    await redis_client.xadd(keys.dlq(keys.bars), {"id": "b1", "reason": "x", "error": error})
    done = await asyncio.to_thread(run_cli, worker_env(namespace), "dlq", "show", "bars")
    assert done.returncode == 0, done.stderr
    assert "postgresql://alpha:***@db:5432/x" in done.stdout and DB_SECRET not in done.stdout
