"""The Grafana dashboard and the Prometheus alert rules in deploy/k8s/monitoring,
checked offline: their structure, that every PromQL expression parses
(tests/promql_check.py) and names only metrics the code exports, that they
cover what operators watch (latency by phase, partial and shed rates, recall
estimate, canary recall, registry staleness, lease losses, indexing lag, disk,
memory), and that the kustomization renders valid ConfigMaps."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.promql_check import metric_names, series_of, tokens

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "deploy" / "k8s" / "monitoring"
DASHBOARD = MONITORING / "vecshard-dashboard.json"
ALERTS = MONITORING / "vecshard-alerts.yaml"
# Metrics from elsewhere: prometheus_client's process collector, cAdvisor, kube-state-metrics.
EXTERNAL = re.compile(r"^(process_|container_|kube_)")
COVERED = {
    "latency by phase": "vecshard_search_phase_seconds_bucket",
    "partial rate": "vecshard_search_partial_total",
    "shed rate": "vecshard_shed_total",
    "recall estimate": "vecshard_recall_estimate",
    "canary recall": "vecshard_canary_recall",
    "registry staleness": "vecshard_registry_staleness_seconds",
    "lease losses": "vecshard_shard_lease_losses_total",
    "indexing lag": "vecshard_indexing_lag_seconds_bucket",
    "disk": "vecshard_shard_disk_free_bytes",
    "memory": "process_resident_memory_bytes",
    "feature cache": "vecshard_feature_cache_groups",
}

# Where an alert reads another series than the dashboard's: the indexing lag
# histogram is observed when a seal completes, so it stops moving when
# sealing stops — the unsealed row's age, read at each scrape, keeps growing.
ALERTED_ON = {"indexing lag": "vecshard_indexing_unsealed_age_seconds"}


def exported() -> set[str]:
    """Metric names defined in the servers' code (a string literal that a
    Counter/Gauge/Histogram or a collector's family is created with)."""
    pattern = re.compile(r'"(vecshard_[a-z0-9_]+)"')
    names = set()
    for package in ("core", "coordinator", "shard_server"):
        for path in (REPO / package).rglob("*.py"):
            names |= set(pattern.findall(path.read_text()))
    return series_of(names)


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_dashboard_structure() -> None:
    d = dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    variables = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "job", "route"} <= variables
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & occupied, f"panel {p['title']!r} overlaps another"
        occupied |= cells
        if p["type"] == "row":
            continue
        assert p["type"] == "timeseries" and p["description"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]


def test_every_expression_parses_and_names_exported_metrics() -> None:
    known = exported()
    exprs = [e.replace("$job", ".*").replace("$route", ".*") for e in dashboard_exprs()]
    exprs += [r["expr"] for r in rules()]
    for expr in exprs:
        for name in metric_names(expr):
            assert name in known or EXTERNAL.match(name), (
                f"{name} in {expr!r} is exported by nothing"
            )


def test_the_checker_finds_typos() -> None:
    for bad in (
        "sum by (route (rate(x[5m]))",
        'rate(x{route="a"[5m])',
        "rat(x[5m])",
        'x{route~"a"}',
        "rate(x[5 m])",
        "sum by rate(x[5m])",
    ):
        with pytest.raises(ValueError):
            metric_names(bad)
            tokens(bad)


def test_the_dashboard_and_the_alerts_cover_what_operators_watch() -> None:
    dash = " ".join(dashboard_exprs())
    alerts = " ".join(r["expr"] for r in rules())
    for topic, metric in COVERED.items():
        assert metric in dash, f"the dashboard shows no {topic} ({metric})"
    for topic in (
        "recall estimate",
        "canary recall",
        "registry staleness",
        "lease losses",
        "indexing lag",
        "disk",
        "partial rate",
        "shed rate",
        "feature cache",
    ):
        metric = ALERTED_ON.get(topic, COVERED[topic].removesuffix("_bucket"))
        assert metric in alerts, f"no alert on {topic} ({metric})"
        assert metric in dash, f"the dashboard shows no {topic} ({metric})"
    # Not charted (it is zero until it pages), alerted on.
    assert "vecshard_shard_storage_write_failures_total" in alerts
    assert "vecshard_audit_chain_bytes" in alerts


def test_alert_rules_are_well_formed() -> None:
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names))
    for r in rules():
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert re.fullmatch(r"([0-9]+[smhdwy])+", r.get("for", "0s")), r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
        for text in r["annotations"].values():
            for label in re.findall(r"\$labels\.([a-z_]+)", text):
                assert re.search(rf"\b{label}\b", r["expr"]) or label in ("instance", "job"), (
                    f"{r['alert']}: annotation uses {label}, which its expression drops"
                )


def test_canary_alert_fires_two_points_below_the_promotion_baseline() -> None:
    (rule,) = [r for r in rules() if r["alert"] == "VecshardCanaryRecallDrop"]
    assert rule["expr"] == (
        "min by (route) (vecshard_canary_recall) < "
        "max by (route) (vecshard_canary_recall_baseline) - 0.02"
    )


def test_the_monitoring_kustomization_renders_valid_configmaps() -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl (Debian package 'kubectl') renders kustomizations"
    out = subprocess.run(
        [kubectl, "kustomize", str(MONITORING)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    objs = [o for o in yaml.safe_load_all(out.stdout) if o]
    by_name = {o["metadata"]["name"]: o for o in objs}
    assert set(by_name) == {"vecshard-grafana-dashboard", "vecshard-prometheus-rules"}
    for obj in objs:
        kubernetes_validate.validate(obj, "1.29", strict=True)
        assert obj["metadata"]["namespace"] == "monitoring"
    assert by_name["vecshard-grafana-dashboard"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert (
        json.loads(by_name["vecshard-grafana-dashboard"]["data"]["vecshard-dashboard.json"])
        == dashboard()
    )
