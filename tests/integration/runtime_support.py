"""Helpers of the runtime's integration tests: worker subprocesses, free ports, a raw HTTP
GET, and private ``redis-server`` processes (TLS + ACL, single-node Cluster) with test-made
certificates. Everything started here is stopped by the caller's ``finally``/context exit."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import REDIS_URL
from tests.polling import until
from tests.ports import free_port

WORKER_MODULE = "tests.integration.runtime_worker"
ROOT = Path(__file__).resolve().parents[2]


def worker_env(namespace: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "REDIS_TLS"))}
    env.update(
        REDIS_URL=REDIS_URL,
        NAMESPACE=namespace,
        METRICS_PORT="0",
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


def run_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``alphapulse <args>`` (``python -m common.cli``) to its end: code, stdout, stderr."""
    return subprocess.run(
        [sys.executable, "-m", "common.cli", *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def spawn_worker(env: Mapping[str, str], module: str = WORKER_MODULE) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module],
        env=dict(env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str]:
    """Wait for ``proc`` (killing it past ``timeout``); its exit code and stderr."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"worker did not exit within {timeout}s; stderr:\n{err.decode()[-3000:]}")
    return proc.returncode, err.decode()


async def wait_for(predicate_key: str, client: object, within_s: float = 30) -> bytes:
    """Poll until key ``predicate_key`` exists; its value (fails after ``within_s``)."""
    value: Any = None

    async def present() -> bool:
        nonlocal value
        value = await client.get(predicate_key)  # type: ignore[attr-defined]
        return value is not None

    await until(present, f"{predicate_key} to appear", timeout_s=within_s, interval_s=0.02)
    return bytes(value)


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """A plain HTTP/1.1 GET over a socket: (status, body). ``Connection: close``: the body
    ends where the stream does, also on servers that keep connections alive (aiohttp)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


# --- private redis-server processes ------------------------------------------------------------
def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is required for this test (apt-get install {tool.split('-', maxsplit=1)[0]})"
        )
    return path


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [_need("openssl"), *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed: {done.stderr}")


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certs(directory: Path) -> Certs:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=directory)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-days", "2", "-subj", "/CN=alphapulse-test-ca",
        "-out", "ca.crt", cwd=directory,
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=directory)
        _openssl(
            "req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr",
            cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.crt",
            cwd=directory,
        )  # fmt: skip
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    d = directory
    return Certs(
        d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key"
    )


@contextmanager
def redis_server(args: list[str], directory: Path, ping: dict[str, object]) -> Iterator[None]:
    """Run ``redis-server`` with ``args`` until the block ends; waits until it answers ``ping``."""
    log = directory / "redis.log"
    proc = subprocess.Popen(
        [_need("redis-server"), "--save", "", "--appendonly", "no", "--dir", str(directory),
         "--logfile", str(log), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                tail = log.read_text()[-2000:] if log.exists() else ""
                pytest.fail(f"redis-server exited ({proc.returncode}): {tail}")
            try:
                with redis.Redis(**ping) as c:  # type: ignore[arg-type]
                    c.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not answer: {log.read_text()[-2000:]}")
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stage_and_limited(password: str, limited_password: str) -> dict[str, tuple[str, list[str]]]:
    """ACL users for ``acl_redis``: ``stage`` may do anything; ``limited`` may only log in and
    PING (so any other command, ``SELECT`` of a database included, is refused)."""
    return {
        "stage": (password, ["~*", "&*", "+@all"]),
        "limited": (
            limited_password,
            ["resetkeys", "-@all", "+ping", "+auth", "+hello", "+client"],
        ),
    }


@contextmanager
def acl_redis(directory: Path, users: Mapping[str, tuple[str, list[str]]]) -> Iterator[int]:
    """A private plain ``redis-server`` whose only users are ``users`` (name -> (password, ACL
    rules)), the first with full rights; yields its port."""
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--user", "default", "off"]
    for name, (password, rules) in users.items():
        args += ["--user", name, "on", f">{password}", *rules]
    first, (password, _) = next(iter(users.items()))
    ping = {"host": "127.0.0.1", "port": port, "username": first, "password": password}
    with redis_server(args, directory, ping):
        yield port
