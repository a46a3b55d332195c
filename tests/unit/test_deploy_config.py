"""deploy/k8s, deploy/systemd and the example env file: they parse, run real modules, probe
the real health endpoints on the metrics port (the console's liveness on its own port), stop
within the worker's grace, set only variables the code reads (with values it accepts), and keep
secrets in Secrets."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

import ingest.simulator.cli
from common.errors import ConfigError
from common.secrets import url_password
from signals.console.auth import parse_users
from tests.deploy_support import (
    DEPLOY,
    WORKERS,
    env_file,
    k8s_documents,
    load_yaml,
    runnable,
    systemd_unit,
    variables_read,
)

PYTHON = "/opt/alphapulse/.venv/bin/python"
ENV_EXAMPLE = DEPLOY / "alphapulse.env.example"
DOCS = list(k8s_documents())
UNITS = sorted((DEPLOY / "systemd").glob("alphapulse-*@.service"))


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in DOCS if d["kind"] == kind}


DEPLOYMENTS = of_kind("Deployment")
(CONFIG,) = of_kind("ConfigMap").values()
SECRETS = of_kind("Secret")
SECRET = SECRETS["alphapulse-secrets"]  # every worker's envFrom
USERS_SECRET = SECRETS["alphapulse-console-users"]  # the console's users file, mounted
GRACE_SECONDS = float(CONFIG["data"]["GRACE_SECONDS"])
# Variables that carry credentials: only ever in a Secret (or the 0640 env file), never in a
# ConfigMap or a manifest's plain env.
SECRET_VARIABLES = frozenset(
    {"REDIS_PASSWORD", "DATABASE_URL", "SIGNALS_WS_TOKENS", "CONSOLE_USERS", "CONSOLE_API_TOKENS"}
)
# The port a worker's liveness and startup probes use: the console's own /healthz answers only
# once its HTTP server listens; the others' is the metrics server's.
LIVENESS_PORT = {"web": "http"}
# Services in front of workers, and the setting that is the port they reach.
SERVED_PORTS = {"signals-ws": "SIGNALS_WS_PORT", "web": "CONSOLE_PORT"}


def placeholder(name: str, value: str) -> bool:
    """An example credential that is none: empty, ``change-me``, or a URL without a password
    or with ``change-me`` as its password."""
    if name.endswith("_URL"):
        return url_password(value) in (None, "change-me")
    return value in ("", "change-me")


def unit_values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def unit_environment(unit: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    """``Environment=`` assignments of a unit (instance ``%i`` taken as 0)."""
    out = {}
    for line in unit_values(unit, "Service", "Environment"):
        for item in line.split():
            name, _, value = item.partition("=")
            out[name] = value.replace("%i", "0")
    return out


# --- Kubernetes ---------------------------------------------------------------------------
def test_every_manifest_is_listed_and_namespaced() -> None:
    kustomization = load_yaml(DEPLOY / "k8s" / "kustomization.yaml")
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    for path, doc in DOCS:
        assert doc["apiVersion"] and doc["metadata"]["name"], path
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "alphapulse", (path, doc["kind"])
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "alphapulse", path


def test_a_deployment_per_worker() -> None:
    assert set(DEPLOYMENTS) == {f"alphapulse-{w}" for w in WORKERS}
    assert DEPLOYMENTS["alphapulse-detectors"]["spec"]["replicas"] == 2


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_deployment_runs_the_worker_with_probes_on_the_metrics_port(worker: str) -> None:
    dep = DEPLOYMENTS[f"alphapulse-{worker}"]
    spec = dep["spec"]
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == worker
    (container,) = pod["spec"]["containers"]
    assert container["command"] == [PYTHON, "-m", WORKERS[worker]]
    assert runnable(WORKERS[worker])

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert int(env["METRICS_PORT"]) == ports["metrics"]
    probes = {name: container[name] for name in ("livenessProbe", "readinessProbe", "startupProbe")}
    live = LIVENESS_PORT.get(worker, "metrics")
    assert live in ports
    assert probes["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": live}
    assert probes["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert probes["startupProbe"]["httpGet"] == {"path": "/healthz", "port": live}

    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert int(notes["prometheus.io/port"]) == ports["metrics"]
    assert notes["prometheus.io/path"] == "/metrics"

    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}, kind
    # The worker drains for GRACE_SECONDS, then closes for up to GRACE_SECONDS more.
    assert pod["spec"]["terminationGracePeriodSeconds"] > 2 * GRACE_SECONDS
    refs = [next(iter(ref.values()))["name"] for ref in container["envFrom"]]
    assert refs == [CONFIG["metadata"]["name"], SECRET["metadata"]["name"]]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_services_reach_the_port_the_worker_listens_on() -> None:
    services = of_kind("Service")
    assert set(services) == {f"alphapulse-{w}" for w in SERVED_PORTS}
    for worker, setting in SERVED_PORTS.items():
        service = services[f"alphapulse-{worker}"]
        dep = DEPLOYMENTS[f"alphapulse-{worker}"]
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] in ports
        env = {**CONFIG["data"], **{e["name"]: e["value"] for e in container.get("env", [])}}
        assert ports[port["targetPort"]] == int(env[setting]), worker


def test_the_console_reads_its_users_from_a_mounted_secret() -> None:
    pod = DEPLOYMENTS["alphapulse-web"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    users_file = Path(env["CONSOLE_USERS_FILE"])
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == str(users_file.parent) and mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    source = volume["secret"]
    assert source["secretName"] == USERS_SECRET["metadata"]["name"]
    (item,) = source["items"]
    assert item["path"] == users_file.name and item["key"] in USERS_SECRET["stringData"]
    # The pod's group may read the file (the secret's files belong to root otherwise).
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # The placeholder is no credential: the console refuses it, naming the variable.
    with pytest.raises(ConfigError, match="argon2 hash"):
        parse_users(USERS_SECRET["stringData"][item["key"]].splitlines(), "CONSOLE_USERS_FILE")


def test_credentials_are_only_in_secrets() -> None:
    for name, config_map in of_kind("ConfigMap").items():
        assert not SECRET_VARIABLES & set(config_map["data"]), name
        assert "$argon2" not in yaml.safe_dump(config_map), name
    for name, dep in DEPLOYMENTS.items():
        for container in dep["spec"]["template"]["spec"]["containers"]:
            assert not SECRET_VARIABLES & {e["name"] for e in container.get("env", [])}, name
    assert SECRET_VARIABLES & set(SECRET["stringData"])
    for name, value in SECRET["stringData"].items():
        assert placeholder(name, value), name


def test_k8s_settings_are_read_by_the_code_and_valid(tmp_path: Path) -> None:
    values = {**CONFIG["data"], **SECRET["stringData"]}
    for dep in DEPLOYMENTS.values():
        for container in dep["spec"]["template"]["spec"]["containers"]:
            values.update({e["name"]: e["value"] for e in container.get("env", [])})
    assert set(values) - variables_read(values, tmp_path) == set()


# --- systemd -----------------------------------------------------------------------------------
def test_a_unit_template_per_worker() -> None:
    assert {p.name for p in UNITS} == {f"alphapulse-{w}@.service" for w in WORKERS}
    assert (DEPLOY / "systemd" / "alphapulse.target").exists()


@pytest.mark.parametrize("path", UNITS, ids=[p.name for p in UNITS])
def test_unit_runs_the_worker_and_stops_within_its_grace(path: Path) -> None:
    unit = systemd_unit(path)
    worker = path.name.removeprefix("alphapulse-").removesuffix("@.service")
    (exec_start,) = unit_values(unit, "Service", "ExecStart")
    assert exec_start == f"{PYTHON} -m {WORKERS[worker]}"
    assert runnable(WORKERS[worker])
    single = {
        key: values[0]
        for key in ("Restart", "RestartPreventExitStatus", "KillSignal", "TimeoutStopSec")
        if (values := unit_values(unit, "Service", key))
    }
    assert single["Restart"] == "always"
    assert single["RestartPreventExitStatus"] == "2"  # invalid setting: do not loop
    assert single["KillSignal"] == "SIGTERM"
    grace = float(env_file(ENV_EXAMPLE, commented=False)["GRACE_SECONDS"])
    assert float(single["TimeoutStopSec"]) > 2 * grace
    files = unit_values(unit, "Service", "EnvironmentFile")
    assert files[0] == "/etc/alphapulse/alphapulse.env"
    assert files[1:] == [f"-/etc/alphapulse/{worker}@%i.env"]
    assert "METRICS_PORT" in unit_environment(unit)
    assert unit_values(unit, "Install", "WantedBy") == ["alphapulse.target"]
    assert unit_values(unit, "Unit", "PartOf") == ["alphapulse.target"]
    hardening = {k: v for k, v in unit["Service"]}
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "User": "alphapulse",
    }.items():
        assert hardening[key] == value, key


def test_units_on_one_host_use_distinct_ports() -> None:
    ports = [
        value
        for p in UNITS
        for name, value in unit_environment(systemd_unit(p)).items()
        if name.endswith("_PORT")
    ]
    # Each worker's metrics port, the WebSocket port and the console's port.
    assert len(ports) == len(UNITS) + len(SERVED_PORTS)
    assert len(set(ports)) == len(ports), ports


def test_unit_environment_is_read_by_the_code_and_not_overridden(tmp_path: Path) -> None:
    shared = env_file(ENV_EXAMPLE, commented=False)
    for path in UNITS:
        own = unit_environment(systemd_unit(path))
        python_vars = {k for k in own if k.startswith("PYTHON")}
        values = {**shared, **own}
        assert set(own) - python_vars - variables_read(values, tmp_path) == set(), path.name
        # An EnvironmentFile overrides Environment=: the shared file must not set these.
        assert not (set(own) - python_vars) & set(shared), path.name


# --- the example env file ------------------------------------------------------------------------
def test_every_example_variable_is_read_and_its_value_valid(tmp_path: Path) -> None:
    # Commented lines hold the defaults: set them all, so their values are checked too.
    values = env_file(ENV_EXAMPLE, commented=True)
    assert len(values) > 60
    assert set(values) - variables_read(values, tmp_path) == set()


def test_the_example_holds_only_placeholder_credentials() -> None:
    values = env_file(ENV_EXAMPLE, commented=True)
    assert set(values) >= SECRET_VARIABLES
    for name in SECRET_VARIABLES:
        assert placeholder(name, values[name]), name


def test_the_example_covers_the_settings_of_every_stage(tmp_path: Path) -> None:
    values = env_file(ENV_EXAMPLE, commented=True)
    read = variables_read(values, tmp_path)
    # Whatever the settings look up with these values is documented in the file, apart from
    # what the units set per instance and honcho's PORT.
    not_for_operators = {"METRICS_PORT", "PORT"}
    missing = read - set(values) - not_for_operators
    assert missing == set()


# --- the demo overlay (base + simulator) ---------------------------------------------------------
def test_demo_runs_a_valid_simulator_that_ingest_reaches(tmp_path: Path) -> None:
    demo = DEPLOY / "k8s" / "demo"
    kustomization = load_yaml(demo / "kustomization.yaml")
    assert kustomization["resources"] == ["..", "simulator.yaml"]
    docs = {d["kind"]: d for d in yaml.safe_load_all((demo / "simulator.yaml").read_text())}
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    binary, *args = container["command"]
    assert binary == "/opt/alphapulse/.venv/bin/alphapulse"
    parser = argparse.ArgumentParser()
    ingest.simulator.cli.register(parser.add_subparsers(dest="command"))
    parsed = parser.parse_args(args)
    assert parsed.command == "simulate" and parsed.host == "0.0.0.0"
    service = docs["Service"]
    (port,) = service["spec"]["ports"]
    assert port["port"] == parsed.port
    (patch,) = kustomization["patches"]
    urls = {op["path"].removeprefix("/data/"): op["value"] for op in yaml.safe_load(patch["patch"])}
    assert set(urls) == {"INGEST_URL_BINANCE", "INGEST_URL_KRAKEN"}
    for url in urls.values():
        assert url.startswith(f"ws://{service['metadata']['name']}:{port['port']}/")
    values = {**CONFIG["data"], **SECRET["stringData"], **urls}
    assert set(values) - variables_read(values, tmp_path) == set()
