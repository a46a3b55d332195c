"""deploy/prometheus and deploy/grafana: the alert rules, the scrape configs and the dashboard
only use metrics (and labels) the workers really export, and cover what operations needs.

``bash deploy/check.sh`` additionally runs ``promtool`` over the same files when it is there.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.deploy_support import (
    DEPLOY,
    PROMETHEUS_SERIES,
    TARGET_LABELS,
    WORKERS,
    balanced,
    exported_metrics,
    load_yaml,
    metric_names,
    selector_labels,
    systemd_unit,
)

EXPORTED = exported_metrics()
ALERTS = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
RULES: list[dict[str, Any]] = [r for g in ALERTS["groups"] for r in g["rules"]]
DASHBOARD = json.loads((DEPLOY / "grafana" / "alphapulse.json").read_text())
DASH_EXPRS = [
    t["expr"] for p in DASHBOARD["panels"] if p["type"] != "row" for t in p.get("targets", [])
]
_DURATION = re.compile(r"^\d+[smhd]$")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


def check_expr(expr: str) -> list[str]:
    """What is wrong with one PromQL expression (unknown metric, unknown label, brackets)."""
    problems = []
    if not balanced(expr):
        problems.append(f"unbalanced brackets: {expr}")
    names = metric_names(expr)
    if not names:
        problems.append(f"uses no metric: {expr}")
    for name in names - PROMETHEUS_SERIES:
        if name not in EXPORTED:
            problems.append(f"{name} is not exported by any worker")
    for metric, label in selector_labels(expr):
        known = EXPORTED[metric].labels if metric in EXPORTED else frozenset()
        if label not in known | TARGET_LABELS:
            problems.append(f"{metric} has no label {label!r}")
    # Grouping and matching labels must exist on some metric of the expression.
    present = set(TARGET_LABELS).union(*(EXPORTED[n].labels for n in names if n in EXPORTED))
    for group in _GROUPING.findall(expr):
        for label in filter(None, (x.strip() for x in group.split(","))):
            if label not in present:
                problems.append(f"groups by {label!r}, which none of {sorted(names)} has")
    return problems


def test_the_metric_collection_sees_every_stage() -> None:
    for family in (
        "alphapulse_runtime_lag_entries",
        "alphapulse_ingest_ticks_total",
        "alphapulse_detectors_detection_latency_seconds_bucket",
        "alphapulse_signals_emitted_total",
        "alphapulse_signals_ws_clients",
        "alphapulse_sink_flush_seconds_count",
        "process_resident_memory_bytes",
    ):
        assert family in EXPORTED
    # Counters and histograms are only exported under their suffixed names.
    assert "alphapulse_runtime_dead_letters" not in EXPORTED
    assert "alphapulse_sink_flush_seconds" not in EXPORTED
    assert EXPORTED["alphapulse_runtime_entries_total"].labels == {"stream", "group", "outcome"}


def test_the_checker_rejects_what_it_should() -> None:
    assert check_expr("rate(alphapulse_runtime_dead_letters[5m])")  # missing _total
    assert check_expr("alphapulse_sink_flush_seconds > 1")  # histogram without suffix
    assert check_expr('alphapulse_runtime_lag_entries{shard="1"}')  # no such label
    assert check_expr("sum(rate(alphapulse_ingest_ticks_total[5m])")  # unbalanced
    assert check_expr("sum by (exchange) (alphapulse_sink_rows_total)")  # no such label
    assert not check_expr('max by (stream) (alphapulse_runtime_lag_entries{group="sink"}) > 5')


@pytest.mark.parametrize("rule", RULES, ids=[r["alert"] for r in RULES])
def test_alert_rules_use_exported_metrics(rule: dict[str, Any]) -> None:
    assert check_expr(rule["expr"]) == []


@pytest.mark.parametrize("rule", RULES, ids=[r["alert"] for r in RULES])
def test_alert_rules_are_complete(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"Alphapulse[A-Za-z]+", rule["alert"])
    assert _DURATION.match(rule["for"])
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    notes = rule["annotations"]
    assert notes["summary"] and notes["description"]
    # Every runbook link points at an anchor that exists in deploy/README.md.
    path, _, anchor = notes["runbook_url"].partition("#")
    assert path == "deploy/README.md"
    readme = (DEPLOY / "README.md").read_text()
    assert f'<a id="{anchor}"></a>' in readme, anchor


_INCREASE = re.compile(r"\bincrease\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\[(\w+)\]\s*\)")


def birth_misses(expr: str) -> list[str]:
    """``increase()`` of a labelled counter without the series born within the window.

    prometheus_client exports a labelled counter's series only from its first increment, at
    its value then (1, not 0): increase() over the window never sees that first step, so the
    first dead letter or trade gap would show as 0 (as a real Prometheus scraping the workers
    showed: tests/integration/test_deploy_prometheus.py). ``(x unless x offset W) or
    increase(x[W])`` counts a series born within the window at its whole value."""
    out = []
    for name, window in _INCREASE.findall(expr):
        if name in EXPORTED and EXPORTED[name].labels:
            born = rf"\b{name}\s+unless\s+{name}\s+offset\s+{window}\b"
            if not re.search(born, expr):
                out.append(f"increase({name}[{window}]) misses series born in the window")
    return out


def test_the_birth_check_rejects_a_bare_increase_of_a_labelled_counter() -> None:
    x = "alphapulse_runtime_dead_letters_total"
    assert birth_misses(f"sum by (stream) (increase({x}[10m])) > 0")
    assert not birth_misses(f"sum by (stream) (({x} unless {x} offset 10m) or increase({x}[10m]))")
    assert birth_misses(f"sum(({x} unless {x} offset 5m) or increase({x}[10m]))")  # windows differ
    assert not birth_misses("sum(increase(alphapulse_sink_retries_total[5m]))")  # no labels: at 0


@pytest.mark.parametrize("expr", [r["expr"] for r in RULES], ids=[r["alert"] for r in RULES])
def test_alerts_count_the_first_event_of_a_labelled_counter(expr: str) -> None:
    assert birth_misses(expr) == []


def test_alert_names_are_unique_and_cover_operations() -> None:
    names = [r["alert"] for r in RULES]
    assert len(names) == len(set(names))
    used = set().union(*(metric_names(r["expr"]) for r in RULES))
    for needed in (
        "alphapulse_runtime_lag_entries",  # consumer lag
        "alphapulse_runtime_pending_entries",  # pending growth
        "alphapulse_runtime_dead_letters_total",  # dead letters
        "alphapulse_ingest_reconnects_total",  # reconnect storms
        "alphapulse_ingest_missing_trades_total",  # trade gaps
        "alphapulse_sink_retries_total",  # sink retries
        "alphapulse_sink_database_up",  # database down
        "alphapulse_detectors_leases_lost_total",  # lease churn
        "up",  # a worker that does not answer
    ):
        assert needed in used, needed


def test_scrape_configs_match_the_deployments() -> None:
    local = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    assert local["rule_files"] == ["alerts.yml"]
    ports: dict[str, list[int]] = {}
    for job in local["scrape_configs"]:
        worker = job["job_name"].removeprefix("alphapulse-")
        assert worker in WORKERS
        for static in job["static_configs"]:
            assert static["labels"]["worker"] == worker
            ports.setdefault(worker, []).extend(int(t.rsplit(":", 1)[1]) for t in static["targets"])
    assert set(ports) == set(WORKERS)
    # The ports are the systemd instances' METRICS_PORT (prefix + instance number).
    for worker, listed in ports.items():
        unit = systemd_unit(DEPLOY / "systemd" / f"alphapulse-{worker}@.service")
        env = [v for k, v in unit["Service"] if k == "Environment" and "METRICS_PORT" in v]
        (setting,) = env
        prefix = setting.split("=", 1)[1].removesuffix("%i")
        assert all(str(p)[:-1] == prefix for p in listed), (worker, listed, prefix)

    k8s = load_yaml(DEPLOY / "prometheus" / "prometheus-k8s.yml")
    (job,) = k8s["scrape_configs"]
    relabels = job["relabel_configs"]
    sources = {tuple(r["source_labels"]) for r in relabels}
    assert ("__meta_kubernetes_pod_annotation_prometheus_io_scrape",) in sources
    assert ("__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port") in sources
    assert {r.get("target_label") for r in relabels} >= {"worker", "__metrics_path__"}


@pytest.mark.parametrize("expr", DASH_EXPRS)
def test_dashboard_queries_use_exported_metrics(expr: str) -> None:
    assert check_expr(expr) == []
    assert birth_misses(expr) == []


def test_dashboard_structure_and_coverage() -> None:
    assert DASHBOARD["uid"] == "alphapulse"
    (variable,) = DASHBOARD["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    panels = DASHBOARD["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        grid = p["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
    # No two panels share a grid cell.
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, p["title"]
        cells |= mine
    used = set().union(*(metric_names(e) for e in DASH_EXPRS))
    for needed in (
        "alphapulse_ingest_ticks_total",  # throughput per stage
        "alphapulse_detectors_ticks_total",
        "alphapulse_signals_emitted_total",
        "alphapulse_sink_rows_total",  # sink rows/s
        "alphapulse_runtime_lag_entries",
        "alphapulse_runtime_pending_entries",
        "alphapulse_runtime_dead_letters_total",
        "alphapulse_detectors_detection_latency_seconds_bucket",
        "alphapulse_sink_flush_seconds_bucket",  # flush latency
        "alphapulse_detectors_partitions_owned",
        "alphapulse_detectors_checkpoint_age_seconds",
        "alphapulse_ingest_gaps_total",
        "alphapulse_ingest_reconnects_total",
    ):
        assert needed in used, needed
    # Latency histograms are shown as quantiles.
    assert any("histogram_quantile(0.99" in e for e in DASH_EXPRS)
