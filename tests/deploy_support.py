"""What the deploy tests read: the files under deploy/, the metric names the workers export,
and the environment variables the settings code really looks up.

The metric names come from the metric definitions themselves (each stage's metrics class built
on a fresh registry, plus the module-level families of ``signals`` and the default process
collectors), so a renamed metric breaks the alert rules' and the dashboard's tests at once.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prometheus_client
import yaml
from prometheus_client import CollectorRegistry

from common.metrics import RuntimeMetrics
from common.settings import CommonSettings
from detectors.metrics import DetectorMetrics
from detectors.settings import DetectorSettings
from ingest.metrics import IngestMetrics
from ingest.settings import IngestSettings
from signals.console.auth import hash_password
from signals.console.settings import ConsoleSettings
from signals.metrics import SignalsMetrics
from signals.settings import SignalsSettings, WsSettings
from sink.metrics import SinkMetrics
from sink.settings import SinkSettings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
WORKERS = {  # worker name -> module run by `python -m`
    "ingest": "ingest",
    "detectors": "detectors",
    "signals": "signals",
    "signals-ws": "signals.ws",
    "sink": "sink",
    "web": "signals.console",
}
# Paths on a deployment host that the console's settings open at start, and what stands for
# them here: the same `npm ci` output, and a users file with one valid line (made on demand).
HOST_NODE_MODULES = "/opt/alphapulse/node_modules"
HOST_USERS_FILES = frozenset({"/etc/alphapulse/console-users", "/etc/alphapulse/console/users"})
# Labels Prometheus adds to every scraped series (target labels of deploy/prometheus/*.yml).
TARGET_LABELS = frozenset({"job", "instance", "worker", "namespace", "pod"})
# Series Prometheus itself makes for each target (not exported by the code).
PROMETHEUS_SERIES = frozenset({"up"})
METRIC_PREFIXES = ("alphapulse_", "process_", "python_")
_SUFFIXED = frozenset({"counter", "histogram", "summary"})


@dataclass(frozen=True)
class Exported:
    """One exported sample name and the label names its samples carry."""

    family: str
    labels: frozenset[str]


def exported_metrics() -> dict[str, Exported]:
    """Every sample name the workers' /metrics can show (``_total``, ``_bucket``... included)."""
    registries = [CollectorRegistry() for _ in range(5)]
    RuntimeMetrics(registries[0])
    IngestMetrics(registries[1])
    DetectorMetrics(registries[2])
    SinkMetrics(registries[3])
    SignalsMetrics(registries[4])
    out: dict[str, Exported] = {}
    for registry in [*registries, prometheus_client.REGISTRY]:
        # The registry indexes each collector under every sample name it exposes.
        for name, collector in registry._names_to_collectors.items():
            family = getattr(collector, "_name", name)
            kind = getattr(collector, "_type", None)
            if kind is None and name not in _sample_names(collector):
                continue  # a custom collector (process, gc): only what it really samples
            if name == family and kind in _SUFFIXED:
                continue  # a counter or histogram has no sample under its bare family name
            labels = frozenset(getattr(collector, "_labelnames", ()))
            if name.endswith("_bucket"):
                labels |= {"le"}
            out[name] = Exported(family, labels)
    return out


def _sample_names(collector: Any) -> set[str]:
    return {sample.name for family in collector.collect() for sample in family.samples}


# --- PromQL ------------------------------------------------------------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)")
_TOKEN = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b")


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (label values and strings left out)."""
    bare = _STRING.sub('""', expr)
    names = {t for t in _TOKEN.findall(bare) if t.startswith(METRIC_PREFIXES)}
    names |= {m.group(1) for m in _SELECTOR.finditer(bare) if m.group(1) in PROMETHEUS_SERIES}
    return names


def selector_labels(expr: str) -> list[tuple[str, str]]:
    """``(metric, label)`` for every label matcher inside a ``metric{...}`` selector."""
    bare = _STRING.sub('""', expr)
    return [
        (m.group(1), label)
        for m in _SELECTOR.finditer(bare)
        for label, _ in _MATCHER.findall(m.group(2))
    ]


def balanced(expr: str) -> bool:
    """Brackets of every kind open and close in order (outside strings)."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for ch in _STRING.sub('""', expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack


# --- files --------------------------------------------------------------------------------------
def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object under deploy/k8s (kustomization.yaml is kustomize's own file)."""
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path, doc


def env_file(path: Path, *, commented: bool) -> dict[str, str]:
    """``KEY=value`` lines of an EnvironmentFile; with ``commented``, also ``#KEY=value``."""
    pattern = re.compile(r"^(#)?([A-Z][A-Z0-9_]*)=(.*)$")
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = pattern.match(line.strip())
        if m and (commented or not m.group(1)):
            out[m.group(2)] = m.group(3)
    return out


def systemd_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as section -> [(key, value)] (keys may repeat, as systemd allows)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not key=value"
        current.append((key.strip(), value.strip()))
    return sections


def runnable(module: str) -> bool:
    """``python -m module`` would run something: a module, or a package with ``__main__``."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    return True


# --- settings the code reads ------------------------------------------------------------------
class RecordingEnv(Mapping[str, str]):
    """An environment that remembers which variables were looked up."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def local_paths(values: Mapping[str, str], scratch: Path) -> dict[str, str]:
    """``values`` with the deployment hosts' console paths (``HOST_NODE_MODULES``,
    ``HOST_USERS_FILES``) replaced by local ones, so the console's settings can open them.
    Any other path is kept, and must exist here to be valid."""
    out = dict(values)
    if out.get("CONSOLE_NODE_MODULES") == HOST_NODE_MODULES:
        out["CONSOLE_NODE_MODULES"] = str(ROOT / "node_modules")
    if out.get("CONSOLE_USERS_FILE") in HOST_USERS_FILES:
        users = scratch / "console-users"
        users.write_text(f"admin admin {_hashed()}\n")
        out["CONSOLE_USERS_FILE"] = str(users)
    return out


@functools.cache
def _hashed() -> str:
    return hash_password("deploy-test-password")  # argon2id: made once per session


def variables_read(values: Mapping[str, str], scratch: Path) -> set[str]:
    """Build every worker's settings from ``values`` (raising ConfigError on a bad value) and
    return the names of the variables the code looked up. ``scratch``: a directory for the
    stand-in users file (``local_paths``)."""
    env = RecordingEnv(local_paths(values, scratch))
    CommonSettings.from_env(env)
    IngestSettings.from_env(env)
    DetectorSettings.from_env(env)
    SignalsSettings.from_env(env)
    WsSettings.from_env(env)
    SinkSettings.from_env(env)
    ConsoleSettings.from_env(env)
    return env.read
