"""deploy/prometheus and deploy/grafana against a real Prometheus scraping the real workers.

The pipeline runs as processes (the e2e helpers: sink, signals, two detectors, ingest and the
simulator replaying the recorded BTC+ETH sessions at 10x, looped), plus ``signals.ws`` with
one subscribed client and one refused, and the web console (``signals.console``, job
``alphapulse-web``). The simulator injects faults (malformed frames,
duplicated trades, skipped trade ids, cut connections) and the test appends one undecodable
entry to ``patterns`` and one to ``ticks:0``, so the dead-letter and trade-gap series exist.

Debian's ``prometheus`` server (provided by ``deploy/prometheus-local.sh``, apt-installed when
missing) scrapes every worker once a second with the jobs and labels of
``deploy/prometheus/prometheus.yml`` (only the targets are replaced by the test's ports) and
loads ``deploy/prometheus/alerts.yml``. Then, through its HTTP API:

* every rule group is loaded and every rule evaluates with health ``ok``;
* every alert expression and every Grafana panel query parses and evaluates;
* every panel query returns at least one series, except the few in ``QUIET`` (what a healthy
  run never produces; those must return nothing or only zeros);
* the alerts for the faults injected here match, and the alerts for outages that did not
  happen do not.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from common.names import Keys
from tests.conftest import REDIS_URL
from tests.integration.e2e_support import Supervised, stage_env, start_stages
from tests.integration.runtime_support import ROOT, free_port
from tests.integration.test_e2e_pipeline import PARTITIONS, write_subset
from tests.integration.test_signals_ws import subscribe
from tests.polling import until
from tests.sink_support import Db, make_db

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

DEPLOY = ROOT / "deploy"
SCRAPE_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "alphapulse.json"
PROMETHEUS_LOCAL = DEPLOY / "prometheus-local.sh"
SCRAPE_INTERVAL = "1s"
WS_TOKEN = "prom-test-token"
# The simulator's faults: each shows in its own series (bad frames, duplicates, gaps,
# reconnects) without stopping the flow.
SIM_FAULTS = (
    "--speed", "10", "--loop", "--malformed-every", "400", "--duplicate-every", "300",
    "--skip-every", "500", "--drop-every", "6", "--overlap", "20",
)  # fmt: skip

# Grafana's built-in variables, as Grafana would expand them for a 1 s scrape interval
# ($__rate_interval = max(4 x scrape interval, $__interval + scrape interval)).
GRAFANA_VARIABLES = {"$__rate_interval": "4s", "$__interval": "1s", "$__range": "1h"}

# Panel queries that return nothing (or only zeros) in a healthy run, with why. Everything
# else in the dashboard must return at least one series here.
QUIET = {
    "alphapulse_runtime_hard_cap_trims_total": "HARD_MAXLEN is never reached: streams trim",
    "alphapulse_runtime_redeliveries_total": "no worker dies or stalls for CLAIM_IDLE_MS",
    "alphapulse_runtime_errors_total": "Redis answers and no handler raises",
    "alphapulse_sink_dead_lettered_rows_total": "every row fits the tables' constraints",
    "alphapulse_sink_retries_total": "the database never fails a flush",
    "alphapulse_ingest_writer_errors_total": "Redis never fails an append",
    "alphapulse_ingest_rotations_total": "connections are rotated after hours, not seconds",
    "alphapulse_detectors_leases_lost_total": "no detector misses its lease renewal",
}

# Panel queries whose value this run fixes exactly: the junk entry appended to `patterns` is
# dead-lettered once by signals and once by the sink. (A labelled counter is born at 1 on its
# first increment: a bare increase() would show 0 here.)
EXACT = {"Dead letters (1h) / A": 2.0}

# Alerts that must match what this run does (the injected faults) and must not match what it
# does not do (outages), evaluated as plain queries (their `for:` does not apply).
MUST_MATCH = (
    "AlphapulseDeadLetters",
    "AlphapulseIngestTradeGaps",
    "AlphapulseDetectorBadEntries",
    "AlphapulseIngestConnectFailuresStorm",  # ingest-2's exchange refuses every dial
)
MUST_NOT_MATCH = (
    "AlphapulseTargetDown",
    "AlphapulseGroupNotConsuming",
    "AlphapulseNoPartitionOwner",
    "AlphapulseSinkDatabaseDown",
    "AlphapulseSinkRowsRejected",
    "AlphapulseHardCapTrim",
    "AlphapulseIngestWriterErrors",
    "AlphapulseDeadLetterBurst",
)


# --- pure: configuration and queries --------------------------------------------------------
def worker_of(process: str) -> str:
    """The ``worker`` label of a test process: ``detectors-2`` -> ``detectors``."""
    return re.sub(r"-\d+$", "", process)


def scrape_config(
    deployed: Mapping[str, Any], ports: Mapping[str, int], rule_file: Path
) -> dict[str, Any]:
    """``deployed`` (prometheus.yml) with the test's scrape interval, rule file and targets:
    each static config's targets become the ports of the processes whose worker is its
    ``worker`` label. Jobs, labels and relabelings are kept as they are."""
    config = copy.deepcopy(dict(deployed))
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": SCRAPE_INTERVAL,
        "evaluation_interval": SCRAPE_INTERVAL,
    }
    config["rule_files"] = [str(rule_file)]
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            worker = static["labels"]["worker"]
            static["targets"] = [
                f"127.0.0.1:{port}" for name, port in sorted(ports.items())
                if worker_of(name) == worker
            ]  # fmt: skip
            assert static["targets"], f"{job['job_name']}: no test process is a {worker}"
    return config


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop(0)
        yield panel
        stack.extend(panel.get("panels", []))


def grafana_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(panel title / refId, expr)`` of every query, variables expanded as Grafana would."""
    variables = {f"${v['name']}": "" for v in dashboard.get("templating", {}).get("list", [])}
    out = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            assert not any(v in expr for v in variables), f"unexpanded variable in {expr}"
            assert "$" not in expr, f"unknown variable in {expr}"
            out.append((f"{panel['title']} / {target.get('refId', '?')}", expr))
    return out


def alert_rules(rules: Mapping[str, Any]) -> dict[str, str]:
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}


def quiet_reason(expr: str) -> str | None:
    """Why ``expr`` may return nothing in a healthy run (None: it must return data)."""
    reasons = [why for metric, why in QUIET.items() if re.search(rf"\b{metric}\b", expr)]
    return reasons[0] if reasons else None


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(s["value"][1]) for s in result]


# --- thin I/O shells ------------------------------------------------------------------------
class Prometheus:
    """A private ``prometheus`` server on a free port, its data under ``root``."""

    def __init__(self, binary: str, config: Path, root: Path) -> None:
        self.port = free_port()
        self.log = root / "prometheus.log"
        cmd = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)

    def get(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``'s ``data`` (fails the test on an API error)."""
        query = urllib.parse.urlencode(params)
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}"
        try:
            with urllib.request.urlopen(url, timeout=30) as reply:
                body = json.loads(reply.read())
        except urllib.error.HTTPError as e:  # 400/422: the expression does not parse/evaluate
            raw = e.read()
            try:
                body = json.loads(raw)
            except ValueError:  # not the API answering (503 while it starts)
                raise ConnectionError(f"{url}: HTTP {e.code} {raw[:200]!r}") from e
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await asyncio.to_thread(self.get, "query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        result: list[dict[str, Any]] = data["result"]
        return result

    async def answers(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited ({self.proc.returncode}):\n{self.log_tail()}")
        try:
            await asyncio.to_thread(self.get, "status/buildinfo")
        except OSError:
            return False
        return True

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class PrometheusError(Exception):
    pass


class Scraped(Supervised):
    """The e2e pipeline with a metrics port per worker process (the simulator has none)."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        super().__init__(logs, env)
        self.ports: dict[str, int] = {}

    def start(self, name: str, *args: str, **env: str) -> None:
        if name != "simulator":
            self.ports.setdefault(name, free_port())
            env = {**env, "METRICS_PORT": str(self.ports[name])}
        super().start(name, *args, **env)


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    """The server from ``deploy/prometheus-local.sh`` (installed when missing): never skipped."""
    try:
        done = subprocess.run(
            ["bash", str(PROMETHEUS_LOCAL)],
            check=False,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{PROMETHEUS_LOCAL} did not finish: {e}")
    if done.returncode != 0 or not done.stdout.strip():
        pytest.fail(
            f"Prometheus is required: {PROMETHEUS_LOCAL} failed ({done.returncode}):\n"
            f"{done.stderr[-3000:]}"
        )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
async def db() -> AsyncIterator[Db]:
    async for d in make_db("postgres"):
        yield d


async def inject_bad_entries(redis_client: aioredis.Redis, keys: Keys) -> None:
    """One undecodable entry where signals and the sink read (runtime dead letters) and one
    in a ticks partition (the detectors' bad entries)."""
    await redis_client.xadd(keys.patterns, {"junk": "not a pattern"})
    await redis_client.xadd(keys.ticks(0), {"junk": "not a tick batch"})


async def ws_clients(port: int) -> ClientConnection:
    """A refused client (bad token: a close by reason) and a subscribed one, left open."""
    async with connect(f"ws://127.0.0.1:{port}/?token=wrong") as refused:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(refused.recv(), 10)
    client = await connect(f"ws://127.0.0.1:{port}/?token={WS_TOKEN}")
    await subscribe(client)
    return client


async def drain(client: ClientConnection) -> None:
    """Read the subscribed client's frames, so the server never cuts it as slow."""
    try:
        async for _ in client:
            pass
    except ConnectionClosed:
        pass


async def targets_up(prom: Prometheus, pipe: Scraped) -> bool:
    pipe.check_alive()
    active = (await asyncio.to_thread(prom.get, "targets"))["activeTargets"]
    return len(active) == len(pipe.ports) and all(t["health"] == "up" for t in active)


async def not_yet_seen(
    prom: Prometheus, queries: list[tuple[str, str]], alerts: Mapping[str, str]
) -> list[str]:
    """What the pipeline produces but Prometheus does not show (yet): panel queries without
    a series (``QUIET`` aside), ``EXACT`` values not reached, ``MUST_MATCH`` alerts silent."""
    missing = []
    by_name = dict(queries)
    for name, expr in queries:
        if quiet_reason(expr) is None and not await prom.query(expr):
            missing.append(f"{name}: {expr}")
    for name, want in EXACT.items():
        got = values(await prom.query(by_name[name]))
        if got != [want]:
            missing.append(f"{name}: {by_name[name]} returned {got}, not {want}")
    for alert in MUST_MATCH:
        if not await prom.query(alerts[alert]):
            missing.append(f"alert {alert}: {alerts[alert]}")
    return missing


async def check_rules(prom: Prometheus, rules: Mapping[str, Any]) -> None:
    """Every group and rule of ``rules`` is loaded, evaluated and healthy."""

    async def loaded() -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = (await asyncio.to_thread(prom.get, "rules"))["groups"]
        return groups

    async def evaluated() -> bool:
        return all(r["health"] != "unknown" for g in await loaded() for r in g["rules"])

    await until(evaluated, "every rule evaluated", timeout_s=60, interval_s=0.2)
    groups = await loaded()
    names = {g["name"]: [r["name"] for r in g["rules"]] for g in groups}
    assert names == {g["name"]: [r["alert"] for r in g["rules"]] for g in rules["groups"]}
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


async def test_prometheus_scrapes_the_workers_and_every_query_and_rule_works(
    prometheus_binary: str, redis_client: aioredis.Redis, namespace: str, db: Db, tmp_path: Path
) -> None:
    csv_path = tmp_path / "ticks.csv"
    assert write_subset(csv_path) > 1000
    env = stage_env(REDIS_URL, namespace, PARTITIONS)
    env["CLAIM_IDLE_MS"] = "60000"  # a slow batch on a busy machine is not a redelivery here
    pipe = Scraped(tmp_path, env)
    prom: Prometheus | None = None
    client: ClientConnection | None = None
    try:
        start_stages(pipe, db.url, csv_path, *SIM_FAULTS)
        # A second ingest whose exchange refuses every dial (nothing listens on the port):
        # failed connects, as a firewall or an outage gives, for their panel and alert.
        pipe.start(
            "ingest-2", "-m", "ingest",
            EXCHANGES="okx:BTC-USDT", INGEST_URL_OKX=f"ws://127.0.0.1:{free_port()}/ws",
        )  # fmt: skip
        ws_port = free_port()
        pipe.start(
            "signals-ws", "-m", "signals.ws",
            SIGNALS_WS_TOKENS=WS_TOKEN, SIGNALS_WS_PORT=str(ws_port),
        )  # fmt: skip
        pipe.start(
            "web", "-m", "signals.console",
            DATABASE_URL=db.url, SIGNALS_WS_TOKENS=WS_TOKEN,
            CONSOLE_HOST="127.0.0.1", CONSOLE_PORT=str(free_port()),
        )  # fmt: skip
        deployed = yaml.safe_load(SCRAPE_CONFIG.read_text())
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(deployed, pipe.ports, ALERTS)))
        prom = Prometheus(prometheus_binary, config, tmp_path)
        await until(prom.answers, "prometheus answers", timeout_s=60, interval_s=0.2)
        await until(
            lambda: targets_up(prom, pipe), "every worker scraped", timeout_s=90, interval_s=0.2
        )
        active = (await asyncio.to_thread(prom.get, "targets"))["activeTargets"]
        assert {t["labels"]["job"] for t in active} == {
            j["job_name"] for j in deployed["scrape_configs"]
        }

        client = await ws_clients(ws_port)
        reader = asyncio.create_task(drain(client))
        await inject_bad_entries(redis_client, Keys(PARTITIONS, namespace))

        queries = grafana_queries(json.loads(DASHBOARD.read_text()))
        rules = yaml.safe_load(ALERTS.read_text())
        alerts = alert_rules(rules)
        assert len(queries) > 50 and len(alerts) > 20
        for name, expr in [*queries, *alerts.items()]:  # each parses and evaluates
            try:
                await prom.query(expr)
            except PrometheusError as e:
                pytest.fail(f"{name}: {e}")

        missing: list[str] = []

        async def everything_seen() -> bool:
            pipe.check_alive()
            assert prom is not None
            missing[:] = await not_yet_seen(prom, queries, alerts)
            return not missing

        try:
            await until(
                everything_seen, "every panel query to return data", timeout_s=120, interval_s=0.2
            )
        except AssertionError:
            pytest.fail("not as expected:\n" + "\n".join(missing) + "\n" + pipe.log_tail())

        for name, expr in queries:
            if (why := quiet_reason(expr)) is not None:
                got = values(await prom.query(expr))
                assert all(v == 0 for v in got), f"{name} ({why}): {expr} returned {got}"
        for alert in MUST_NOT_MATCH:
            assert await prom.query(alerts[alert]) == [], f"{alert} matches: {alerts[alert]}"
        await check_rules(prom, rules)
        print(f"{len(queries)} panel queries, {len(alerts)} alerts; quiet: {sorted(QUIET)}")
        reader.cancel()
    finally:
        if client is not None:
            await client.close()
        if prom is not None:
            prom.stop()
        pipe.close()
