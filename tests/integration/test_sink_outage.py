"""PostgreSQL stopped mid-stream and restarted: every row arrives, none twice.

The shared servers are never stopped: each run starts a throwaway server of its own —
the host's PostgreSQL (``initdb`` into a temporary directory, run as the ``postgres``
user) or a second TimescaleDB instance in the chroot of ``deploy/timescale-chroot.sh`` — on a
free port, stops it for a while in the middle of the stream, starts it again, and deletes it.

Both outages last the 30 s the issue names, well past the sink's backoff cap
(``SINK_RETRY_MAX_S``, 2 s here), so the sink goes through many capped retries while down.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from common.names import GROUP_SINK, Keys
from tests.polling import until
from tests.ports import free_port
from tests.sink_support import Db, log_tail, make_bar, make_ticks, sink_env

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# The host's PostgreSQL binaries (Debian layout; deploy/local-services.sh installs them).
PG_BIN = max(
    (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")),
    key=lambda d: int(d.parent.name),
    default=Path("/usr/lib/postgresql/15/bin"),
)
OUTAGE_S = {"postgres": 30.0, "timescale": 30.0}


def run(*cmd: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    if out.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return out.stdout


class ThrowawayServer:
    """A database server this test alone uses, on a free port, that it may stop and start."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.instance = f"outage_{uuid.uuid4().hex[:8]}"
        self.datadir = Path(tempfile.mkdtemp(prefix="alphapulse-pg-"))

    def _script(self, command: str) -> str:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TIMESCALE_INSTANCE": self.instance,
               "TIMESCALE_PORT": str(self.port)}  # fmt: skip
        return run("bash", str(ROOT / "deploy" / "timescale-chroot.sh"), command, env=env)

    def _pg(self, *args: str) -> str:
        return run("runuser", "-u", "postgres", "--", *args)

    def up(self) -> str:
        if self.kind == "timescale":
            return self._script("up").strip()
        shutil.chown(self.datadir, "postgres", "postgres")
        self._pg(str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                 "--auth=trust", "-E", "UTF8")  # fmt: skip
        self.start()
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        if self.kind == "timescale":
            self._script("start")
            return
        opts = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1"
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-o", opts,
                 "-l", str(self.datadir / "log"), "-w", "start")  # fmt: skip

    def stop(self) -> None:
        if self.kind == "timescale":
            self._script("stop")
            return
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        if self.kind == "timescale":
            self._script("drop")
        elif (self.datadir / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("timescale", marks=pytest.mark.timescale)])  # fmt: skip
async def server(request: pytest.FixtureRequest) -> AsyncIterator[ThrowawayServer]:
    srv = ThrowawayServer(str(request.param))
    try:
        yield srv
    finally:
        await asyncio.to_thread(srv.destroy)


async def readyz(port: int) -> tuple[int, str]:
    """(status, body) of the sink's /readyz; (0, error) while it does not answer."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        return 0, repr(e)
    writer.write(b"GET /readyz HTTP/1.0\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def publish(redis: aioredis.Redis, keys: Keys, part: int) -> None:
    """Part ``part`` of the stream: 5 tick batches of 100 ticks and 10 bars."""
    for b in range(5):
        start = (part * 5 + b) * 100
        await redis.xadd(keys.ticks(0), make_ticks(start, 100).encode())  # type: ignore[arg-type]
    for i in range(10):
        await redis.xadd(keys.bars, make_bar(part * 10 + i).encode())  # type: ignore[arg-type]


async def test_database_outage_mid_stream_loses_nothing_and_duplicates_nothing(
    server: ThrowawayServer, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    url = await asyncio.to_thread(server.up)
    db = Db(server.kind, url, "public", url)
    metrics_port = free_port()
    env = sink_env(url, keys, METRICS_PORT=str(metrics_port), SINK_BATCH_ROWS="200",
                   SINK_RETRY_MAX_S="2", GRACE_SECONDS="20")  # fmt: skip
    log = tmp_path / "sink.log"
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sink", env=env, stdout=out, stderr=out
        )
    try:

        async def stored(ticks: int, bars: int) -> bool:
            """Polled only while the server is up (after ``start -w`` it accepts connections)."""
            try:
                counts = (await db.count("ticks"), await db.count("bars"))
            except asyncpg.UndefinedTableError:  # the sink has not migrated yet
                return False
            return counts == ((ticks, ticks), (bars, bars))

        await publish(redis_client, keys, 0)
        await until(
            lambda: stored(500, 10), "the first part to be stored", timeout_s=90, interval_s=0.2
        )
        await until(
            lambda: _status_is(metrics_port, 200), "readiness", timeout_s=90, interval_s=0.2
        )

        await asyncio.to_thread(server.stop)
        await publish(redis_client, keys, 1)  # written while the database is down
        await until(
            lambda: _status_is(metrics_port, 503),
            "/readyz to report the database",
            timeout_s=90,
            interval_s=0.2,
        )
        _, body = await readyz(metrics_port)
        assert "database" in body
        await asyncio.sleep(OUTAGE_S[server.kind])
        await publish(redis_client, keys, 2)
        # Nothing of it was acked, and the sink read no further than its one pending batch.
        assert int((await redis_client.xpending(keys.bars, GROUP_SINK))["pending"]) <= 10
        groups = await redis_client.xinfo_groups(keys.bars)
        newest: list[tuple[bytes, object]] = await redis_client.xrevrange(keys.bars, count=1)  # type: ignore[assignment]
        last = newest[0][0]
        assert groups[0]["last-delivered-id"] != last

        await asyncio.to_thread(server.start)
        await until(
            lambda: stored(1500, 30), "every row after the restart", timeout_s=90, interval_s=0.2
        )
        await until(
            lambda: _status_is(metrics_port, 200), "readiness again", timeout_s=90, interval_s=0.2
        )
        for stream in (keys.ticks(0), keys.bars):
            assert int((await redis_client.xpending(stream, GROUP_SINK))["pending"]) == 0
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code == 0, log_tail(log)
    logged = log_tail(log, 10**7)
    assert "database_write_failed" in logged or "database_connect_failed" in logged


async def _status_is(port: int, status: int) -> bool:
    return (await readyz(port))[0] == status
