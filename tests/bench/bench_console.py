"""Web console benchmark (issue 13), each figure next to a baseline from the same run.

The console runs as its own process (``python -m signals.console``) on a fresh TimescaleDB
schema (``TIMESCALE_URL``) and a private Redis namespace; a headless Chromium (Debian's, via
Playwright; deploy/browser.sh) is the viewer.

1. Live signal delay: signals XADDed to ``signals`` one at a time; the delay from the XADD to
   the row on the Signals page (the page records ``Date.now()`` when it inserts the row);
   baseline: a bare ``XREAD BLOCK`` client in the same run. Aim: p99 <= 100 ms.
2. Chart: 10,000 bars and 2,000 pattern markers; the time from navigation to the chart
   having drawn them (``chartState.ready``, set on the first animation frame after the data is
   set) in headless Chromium. Aim: <= 1 s. And ``/api/bars`` serving 10,000 bars (HTTP, JSON,
   through the console); baseline: the same SQL by asyncpg straight from TimescaleDB.
   Aim: <= 100 ms.
3. 200 concurrent viewers of the Signals page (200 WebSocket clients speaking the page's
   protocol; 200 Chromium tabs do not fit this machine): the console's CPU (% of one core)
   and RSS while signals arrive at 20/s, and the delay at the clients; baseline: 1 viewer.

``BENCH_QUICK=1`` runs fewer signals and rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis
from playwright.async_api import async_playwright

from common.names import Keys
from signals.console.auth import hash_password
from tests.console_support import MINUTE, T0, load_seed, make_seed
from tests.ports import free_port
from tests.sink_support import make_db

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUICK = os.environ.get("BENCH_QUICK") == "1"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TOKEN = "bench-console-token"
PASSWORD = "bench-password"
ROOT = Path(__file__).resolve().parents[2]


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: Sequence[float]) -> str:
    return f"p50 {pct(values, 0.5):7.2f} ms  p99 {pct(values, 0.99):7.2f} ms  (n={len(values)})"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def signal_entry(i: int) -> tuple[str, dict[str, bytes]]:
    t = T0 + (100_000 + i) * MINUTE
    sid = f"binance:BTCUSDT:1m:{t}:long"
    doc = {
        "v": 1, "id": sid, "exchange": "binance", "symbol": "BTCUSDT", "timeframe": "1m",
        "open_time": "2024-08-09T00:00:00.000Z", "open_time_ms": t, "direction": "long",
        "score": 0.9, "patterns": {"CDLHAMMER": 100}, "supporting": ["CDLHAMMER"],
        "features": {"rsi": 30.0}, "model": "bench", "emitted_at": "2024-08-09T00:00:00.000Z",
    }  # fmt: skip
    return sid, {"v": b"1", "id": sid.encode(), "d": orjson.dumps(doc)}


class Console:
    """The console process on a seeded schema."""

    def __init__(self, db_url: str, keys: Keys) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            REDIS_URL=REDIS_URL, DATABASE_URL=db_url, NAMESPACE=keys.namespace,
            PARTITIONS=str(keys.partitions), CONSOLE_PORT=str(self.port),
            CONSOLE_HOST="127.0.0.1", METRICS_PORT="0", LOG_LEVEL="WARNING",
            CONSOLE_USERS=f"bench:viewer:{hash_password(PASSWORD)}",
            CONSOLE_API_TOKENS=f"bench:viewer:{TOKEN}", BLOCK_MS="1000",
        )  # fmt: skip
        self.proc = subprocess.Popen([sys.executable, "-m", "signals.console"], env=env, cwd=ROOT)

    async def wait_up(self) -> None:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError("the console did not come up")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def login(page: Any, console: Console) -> None:
    await page.goto(f"{console.url}/login")
    await page.fill("#username", "bench")
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await page.wait_for_selector("#who")


async def bench_live_signal(browser: Any, console: Console, redis: Any, keys: Keys) -> None:
    n = 50 if QUICK else 300
    page = await browser.new_page()
    await login(page, console)
    await page.goto(f"{console.url}/signals")
    await page.wait_for_function("window.signalsState && window.signalsState.subscribed")
    base_seen: dict[str, float] = {}
    stop = asyncio.Event()

    async def bare_reader() -> None:
        reader = aioredis.Redis.from_url(REDIS_URL)
        last = "$"
        try:
            while not stop.is_set():
                reply: Any = await reader.xread({keys.signals: last}, block=200)
                now = time.time() * 1000
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        base_seen[fields[b"id"].decode()] = now
        finally:
            await reader.aclose()

    reader = asyncio.create_task(bare_reader())
    await asyncio.sleep(0.5)
    sent: dict[str, float] = {}
    for i in range(n):
        sid, fields = signal_entry(i)
        sent[sid] = time.time() * 1000
        await redis.xadd(keys.signals, fields)
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    stop.set()
    await reader
    received = await page.evaluate("window.signalsState.liveReceived")
    page_ms = [received[s] - t for s, t in sent.items() if s in received]
    base_ms = [base_seen[s] - t for s, t in sent.items() if s in base_seen]
    print(f"signal on the Signals page   {ms(page_ms)}  (missing {n - len(page_ms)})")
    print(f"  baseline bare XREAD client {ms(base_ms)}")
    await page.close()


async def bench_chart(browser: Any, console: Console, db_url: str) -> None:
    rounds = 2 if QUICK else 5
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await login(page, console)
    times = []
    url = f"{console.url}/chart?exchange=binance&symbol=BTCUSDT&timeframe=1m&limit=10000"
    for _ in range(rounds):
        started = time.perf_counter()
        await page.goto(url)
        await page.wait_for_function("window.chartState && window.chartState.ready", timeout=60_000)
        times.append((time.perf_counter() - started) * 1000)
    state = await page.evaluate("window.chartState")
    print(
        f"chart {state['candles']} candles, {state['markers']} markers, navigation to drawn: "
        f"{ms(times)}"
    )
    await page.close()
    api_ms, sql_ms = [], []
    params = {"exchange": "binance", "symbol": "BTCUSDT", "timeframe": "1m", "limit": "10000"}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    conn = await asyncpg.connect(db_url)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(5 if QUICK else 30):
                started = time.perf_counter()
                async with http.get(f"{console.url}/api/bars", params=params, headers=headers) as r:
                    body = await r.read()  # to the last byte; decoding is the client's cost
                api_ms.append((time.perf_counter() - started) * 1000)
                assert len(orjson.loads(body)["bars"]) == 10_000
                started = time.perf_counter()
                rows = await conn.fetch(
                    "SELECT open_time, open, high, low, close, volume FROM bars "
                    "WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 "
                    "ORDER BY open_time DESC LIMIT 10000",
                    "binance", "BTCUSDT", "1m",
                )  # fmt: skip
                sql_ms.append((time.perf_counter() - started) * 1000)
                assert len(rows) == 10_000
    finally:
        await conn.close()
    print(f"/api/bars 10,000 bars (HTTP+JSON) {ms(api_ms)}")
    print(f"  baseline asyncpg, same SQL       {ms(sql_ms)}")


async def bench_viewers(console: Console, redis: Any, keys: Keys, viewers: int) -> None:
    seconds = 5 if QUICK else 15
    rate = 20
    seen: dict[str, list[float]] = {}

    async def viewer(
        http: aiohttp.ClientSession, ready: asyncio.Event, done: asyncio.Event
    ) -> None:
        async with http.ws_connect(
            f"{console.url}/api/live/signals", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as ws:
            await ws.send_str('{"type": "subscribe"}')
            await ws.receive()
            ready.set()
            while not done.is_set():
                try:
                    msg = await asyncio.wait_for(ws.receive(), 0.5)
                except TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                sid = orjson.loads(msg.data)["signal"]["id"]
                seen.setdefault(sid, []).append(time.time() * 1000)

    done = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        readies = [asyncio.Event() for _ in range(viewers)]
        tasks = [asyncio.create_task(viewer(http, r, done)) for r in readies]
        await asyncio.gather(*(r.wait() for r in readies))
        pid = console.proc.pid
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        sent: dict[str, float] = {}
        peak = 0.0
        for i in range(seconds * rate):
            sid, fields = signal_entry(10_000 * viewers + i)
            sent[sid] = time.time() * 1000
            await redis.xadd(keys.signals, fields)
            peak = max(peak, rss_mib(pid))
            await asyncio.sleep(1 / rate)
        await asyncio.sleep(1.0)
        cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100
        done.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    delays = [t - sent[s] for s, ts in seen.items() if s in sent for t in ts]
    expected = len(sent) * viewers
    print(
        f"{viewers:4d} viewer(s) at {rate} signals/s: console CPU {cpu:5.1f} % of a core, "
        f"RSS {peak:6.1f} MiB, delay {ms(delays)} (delivered {len(delays)}/{expected})"
    )


async def run() -> None:
    keys = Keys(partitions=4, namespace=f"bench-console-{uuid.uuid4().hex[:8]}:")
    redis = aioredis.Redis.from_url(REDIS_URL)
    async for db in make_db("timescale"):
        await load_seed(db.url, make_seed(10_000, pattern_every=5, signal_every=50))
        console = Console(db.url, keys)
        try:
            await console.wait_up()
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    await bench_live_signal(browser, console, redis, keys)
                    await bench_chart(browser, console, db.url)
                finally:
                    await browser.close()
            await bench_viewers(console, redis, keys, 1)
            await bench_viewers(console, redis, keys, 200)
        finally:
            console.stop()
            async for key in redis.scan_iter(match=f"{keys.namespace}*"):
                await redis.delete(key)
            await redis.aclose()


def main() -> None:
    if not os.environ.get("TIMESCALE_URL"):
        raise SystemExit("bench console: TIMESCALE_URL is required (make bench provides it)")
    asyncio.run(run())


if __name__ == "__main__":
    main()
