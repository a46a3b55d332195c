"""The README's signal clients against the processes of ``make run`` (issue 16).

The test starts the Procfile's own processes the way ``make run`` does (``alphapulse
run-procs`` with the environment ``alphapulse run-env`` plans: simulator, ingest, a detector,
signals, signals-ws and sink, on this test's namespace, ports and database schema), runs the
Python and the JavaScript WebSocket clients of ``docs/examples/`` and the Redis
consumer-group client with a limit, and checks that each printed exactly that many real
signals: ids that are on the namespace's ``signals`` stream, with the stream's score and
supporting patterns. ``make tail`` (its Makefile recipe, with this namespace) must print the
first signals of the stream, ``make status`` the ``signals`` stream, and the SQL of the
README's block must return rows from the test's schema. That the README shows these files
verbatim is checked in ``tests/unit/test_docs_links.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from common.names import Keys
from common.procfile import read_procfile
from ingest.offline.runenv import plan
from tests.conftest import REDIS_URL
from tests.docs_support import readme_block
from tests.integration.runtime_support import ROOT, _need, free_port
from tests.integration.test_e2e_pipeline import DATA
from tests.integration.test_make_run_console import _free_metrics_base
from tests.sink_support import Db, make_db

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

PROCFILE = (ROOT / "Procfile").read_text()
PROCESSES = ("simulator", "ingest", "detectors1", "signals", "signals-ws", "sink")
TICKS = DATA / "binance-spot-btcusdt-20240808.rec.gz"
LIMIT = 5
SPEED = 30  # `make run SPEED=30`: the first signals sooner than at the default 10
CLIENT_WAIT_S = 90.0


@pytest.fixture
async def db() -> AsyncIterator[Db]:
    async for d in make_db("postgres"):
        yield d


def run_env(namespace: str, db: Db, ws_port: int) -> dict[str, str]:
    """The environment ``make run`` gives ``alphapulse run-procs`` (see the Makefile's ``run``
    recipe), with this test's namespace, ports and schema."""
    sim_port = free_port()
    run = plan("sim", procfile=PROCFILE, ticks=str(TICKS), sim_port=sim_port, speed=SPEED)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_URL_", "TEST_"))}
    env.pop("METRICS_PORT", None)
    env.update(dict(run.exports))
    env.update(
        REDIS_URL=REDIS_URL,
        DATABASE_URL=db.url,
        NAMESPACE=namespace,
        TIMEFRAMES="1s,5s",
        TICKS=str(TICKS),
        EXCHANGE="binance",
        SPEED=str(SPEED),
        SIM_PORT=str(sim_port),
        SIGNALS_WS_PORT=str(ws_port),
        LOG_FORMAT="console",
    )
    return env


def start_processes(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``alphapulse run-procs`` on the Procfile's ``PROCESSES``, as the ``run`` recipe calls it."""
    base = _free_metrics_base(len(read_procfile(PROCFILE)))
    runner = [sys.executable, "-m", "common.cli", "run-procs", "-f", "Procfile"]
    runner += ["--port-base", str(base), "--summary", "readme test", *PROCESSES]
    with log.open("wb") as out:
        return subprocess.Popen(runner, cwd=ROOT, env=env, stdout=out, stderr=out)


def tail_of(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, tail_of(log)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, tail_of(log)
            time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the runner, which forwards it to every process; a second one cancels their
    in-flight work."""
    for sig, wait_s in ((signal.SIGTERM, 60), (signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue


async def run_client(cmd: list[str], env: dict[str, str]) -> tuple[list[str], str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLIENT_WAIT_S)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"{cmd[1]} printed no {LIMIT} signals in {CLIENT_WAIT_S} s: {out!r} {err!r}")
    assert proc.returncode == 0, err.decode()
    return out.decode().splitlines(), err.decode()


async def stream_signals(r: aioredis.Redis, keys: Keys) -> dict[str, tuple[str, dict[str, object]]]:
    """Signal id -> (entry id, signal document) of everything on the namespace's stream."""
    entries = await r.xrange(keys.signals)
    docs = [(i.decode(), orjson.loads(f[b"d"])) for i, f in entries]
    return {doc["id"]: (i, doc) for i, doc in docs}


def check_lines(lines: list[str], on_stream: dict[str, tuple[str, dict[str, object]]]) -> None:
    """``LIMIT`` lines ``<id> <score> <supporting,...>`` of distinct signals on the stream."""
    assert len(lines) == LIMIT, lines
    ids = []
    for line in lines:
        signal_id, score, supporting = line.split(" ")
        assert signal_id in on_stream, line
        doc = on_stream[signal_id][1]
        assert float(score) == doc["score"], line
        assert supporting.split(",") == doc["supporting"], line
        ids.append(signal_id)
    assert len(set(ids)) == LIMIT, lines


async def test_the_readme_clients_print_real_signals_from_the_make_run_processes(
    tmp_path: Path, namespace: str, keys: Keys, redis_client: aioredis.Redis, db: Db
) -> None:
    node = _need("node")
    ws_port = free_port()
    env = run_env(namespace, db, ws_port)
    log = tmp_path / "run.log"
    proc = start_processes(env, log)
    try:
        wait_for_port(ws_port, proc, log)
        client_env = {**env, "SIGNALS_URL": f"ws://127.0.0.1:{ws_port}/?token=dev-token"}
        python, tail = sys.executable, make_recipe("tail", namespace) + f" --count {LIMIT}"
        (py, _), (js, _), (group, _), tailed = await asyncio.gather(
            run_client([python, "docs/examples/signals_client.py", str(LIMIT)], client_env),
            run_client([node, "docs/examples/signals_client.mjs", str(LIMIT)], client_env),
            run_client([python, "docs/examples/signals_redis.py", str(LIMIT)], env),
            run_shell(tail, env),  # `make tail`: from the beginning, here LIMIT signals
        )
        on_stream = await stream_signals(redis_client, keys)
        check_lines(py, on_stream)
        check_lines(js, on_stream)
        check_lines(group, on_stream)
        first = [doc for _, doc in sorted(on_stream.values(), key=lambda v: stream_order(v[0]))]
        assert [line.split(" ")[0] for line in group] == [d["id"] for d in first[:LIMIT]]
        rows = tailed.splitlines()[1:]  # the header first
        assert len(rows) == LIMIT, tailed
        for row, doc in zip(rows, first, strict=False):
            assert str(doc["symbol"]) in row and str(doc["direction"]) in row, (row, doc)

        status, _ = await asyncio.gather(
            run_shell(make_recipe("status", namespace), env),  # `make status`
            check_readme_sql(db, proc, log),
        )
        assert re.search(r"^signals\tlength=[1-9]", status, re.MULTILINE), status
    finally:
        stop(proc)
    assert proc.returncode == 0, tail_of(log)


def make_recipe(target: str, namespace: str) -> str:
    """The Makefile recipe of ``target`` as a shell command (one line, ``@`` dropped)."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{target}: install\n\t@(.*)$", makefile, flags=re.MULTILINE)
    assert match, f"no `{target}:` recipe in the Makefile"
    command = match[1].replace("$(RUN_NAMESPACE)", shlex.quote(namespace))
    return command.replace("$(BIN)", ".venv/bin")  # the Makefile's BIN


def stream_order(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


async def run_shell(command: str, env: dict[str, str]) -> str:
    done = await asyncio.to_thread(
        subprocess.run, ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.decode()


async def check_readme_sql(db: Db, proc: subprocess.Popen[bytes], log: Path) -> None:
    """The queries of the README's ``psql`` line return rows once the sink stored some."""
    sql_line = next(ln for ln in readme_block("alphapulse run: ") if ln.strip().startswith("SQL"))
    words = shlex.split(sql_line.split("SQL", 1)[1])
    assert words[:2] == ["psql", "postgresql://postgres@127.0.0.1:5432/test"]
    queries = [words[i + 1] for i, w in enumerate(words) if w == "-c"]
    assert len(queries) == 2 and "FROM bars" in queries[0] and "FROM signals" in queries[1]
    deadline = time.monotonic() + 60
    while True:
        results = [await db.fetch(q) for q in queries] if await tables_exist(db) else [[], []]
        if all(results):
            break
        assert proc.poll() is None and time.monotonic() < deadline, tail_of(log)
        await asyncio.sleep(0.5)
    assert {r["timeframe"] for r in results[0]} <= {"1s", "5s"}
    assert all(r["direction"] in ("long", "short") for r in results[1])


async def tables_exist(db: Db) -> bool:
    rows = await db.fetch(
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = $1 AND tablename = "
        "ANY('{bars,signals}'::text[])",
        db.schema,
    )
    return bool(rows[0]["n"] == 2)
