"""The workloads of the Kubernetes deployment: the shard StatefulSet (identity, volumes,
probes, spreading), the coordinator Deployment with its Service, autoscaler and budget,
etcd's members, and container args that parse with the real `vecshard shard` and
`vecshard coordinator` flags and settings loader."""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest
import yaml

from coordinator.config import AuditSettings, AuthSettings, CoordinatorConfig
from core.settings import load_settings
from core.tls import TlsSettings
from shard_server.config import ShardConfig
from tests.k8s_render import (
    NAMESPACE,
    OVERLAYS,
    REPO,
    VAR_REF,
    Obj,
    container,
    of_kind,
    pod_labels,
    pod_spec,
    proto_service_names,
    render,
    selector_matches,
    the,
    workload_of,
)

# ---------------------------------------------------------------- shard StatefulSet


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shard_statefulset(overlay: str) -> None:
    objs = render(overlay)
    sts = the(objs, "StatefulSet", "vecshard-shard")
    spec, pod = sts["spec"], pod_spec(sts)
    shard = container(sts, "shard")

    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    assert "partition" in spec["updateStrategy"]["rollingUpdate"]
    assert pod["terminationGracePeriodSeconds"] >= 30

    # Identity: the pod name is the shard id and the advertised DNS name.
    headless = the(objs, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    # Resolvable before Ready: a shard catching up is registered DRAINING and
    # gets writes (the registry, not readiness, keeps queries from it).
    assert headless["spec"]["publishNotReadyAddresses"] is True
    env = {e["name"]: e for e in shard["env"]}
    assert env["VECSHARD_SHARD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["VECSHARD_ETCD"]["valueFrom"]["configMapKeyRef"] == {
        "name": "vecshard-config",
        "key": "etcd_endpoints",
    }
    assert shard["args"] == [
        "shard",
        "--shard-id",
        "$(VECSHARD_SHARD_ID)",
        "--data-dir",
        "/data",
        "--etcd",
        "$(VECSHARD_ETCD)",
        "--listen",
        "0.0.0.0:7400",
        "--advertise",
        f"$(POD_NAME).{headless['metadata']['name']}.$(POD_NAMESPACE).svc.cluster.local:7400",
        "--health-listen",
        "0.0.0.0:7401",
        "--metrics-host",
        "0.0.0.0",
        "--metrics-port",
        "9100",
    ]

    # Storage: its own PVC, mounted where --data-dir points.
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["mountPath"]: m["name"] for m in shard["volumeMounts"]}
    assert mounts["/data"] == claim["metadata"]["name"]
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"

    # Probes: readiness on the shard service (SERVING only once segments are loaded),
    # liveness on the overall server — on the plaintext health-only port, since
    # Kubernetes' gRPC probes cannot speak the TLS of the main port.
    shard_service = "vecshard.v1.internal.ShardService"
    assert shard_service in proto_service_names()
    assert shard["readinessProbe"]["grpc"] == {"port": 7401, "service": shard_service}
    assert shard["livenessProbe"]["grpc"].get("service", "") == ""
    assert shard["livenessProbe"]["grpc"]["port"] == 7401
    assert shard["startupProbe"]["grpc"]["port"] == 7401

    # TLS: the shard's certificate from its Secret, where the settings point.
    env_values = {e["name"]: e.get("value") for e in shard["env"]}
    mounts = {m["name"]: m["mountPath"] for m in shard["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets["tls"] == "vecshard-shard-tls"
    for key in ("CA_FILE", "CERT_FILE", "KEY_FILE"):
        assert env_values[f"VECSHARD__TLS__{key}"].startswith(mounts["tls"] + "/")


def test_dev_and_prod_shard_anti_affinity() -> None:
    for overlay, hard in (("dev", False), ("prod", True)):
        sts = the(render(overlay), "StatefulSet", "vecshard-shard")
        anti = pod_spec(sts)["affinity"]["podAntiAffinity"]
        if hard:
            assert "preferredDuringSchedulingIgnoredDuringExecution" not in anti
            terms = anti["requiredDuringSchedulingIgnoredDuringExecution"]
        else:
            assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
            terms = [
                t["podAffinityTerm"]
                for t in anti["preferredDuringSchedulingIgnoredDuringExecution"]
            ]
        assert terms, overlay
        for term in terms:
            assert term["topologyKey"] == "kubernetes.io/hostname", overlay
            assert selector_matches(term["labelSelector"], pod_labels(sts)), overlay


# ---------------------------------------------------------------- coordinator


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_coordinator_deployment_service_and_autoscaler(overlay: str) -> None:
    objs = render(overlay)
    deployment = the(objs, "Deployment", "vecshard-coordinator")
    coordinator = container(deployment, "coordinator")
    assert coordinator["args"] == [
        "coordinator",
        "--etcd",
        "$(VECSHARD_ETCD)",
        "--listen",
        "0.0.0.0:7300",
        "--health-listen",
        "0.0.0.0:7301",
        "--name",
        "$(POD_NAME)",
        "--metrics-host",
        "0.0.0.0",
        "--metrics-port",
        "9100",
    ]
    retrieval = "vecshard.v1.RetrievalService"
    assert retrieval in proto_service_names()
    assert coordinator["readinessProbe"]["grpc"] == {"port": 7301, "service": retrieval}
    assert coordinator["livenessProbe"]["grpc"].get("service", "") == ""
    # The autoscaler owns the replica count; a replicas field would fight it on apply.
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    service = the(objs, "Service", "vecshard")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "grpc", "port": 7300, "targetPort": "grpc"}]

    hpa = the(objs, "HorizontalPodAutoscaler", "vecshard-coordinator")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "vecshard-coordinator"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]

    pdb = the(objs, "PodDisruptionBudget", "vecshard-coordinator")
    # A budget must leave node drains possible even at the autoscaler's floor.
    if "minAvailable" in pdb["spec"]:
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    else:
        assert pdb["spec"]["maxUnavailable"] >= 1


# ---------------------------------------------------------------- manifests vs the CLI


def _pod_env(objs: list[Obj], c: Obj, pod_name: str) -> dict[str, str]:
    """The variables the kubelet would give container `c` of pod `pod_name`."""
    config_maps = {o["metadata"]["name"]: o.get("data", {}) for o in of_kind(objs, "ConfigMap")}
    fields = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE}
    env: dict[str, str] = {}
    for var in c.get("env", []):
        source = var.get("valueFrom", {})
        if "fieldRef" in source:
            env[var["name"]] = fields[source["fieldRef"]["fieldPath"]]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[var["name"]] = config_maps[ref["name"]][ref["key"]]
        else:
            env[var["name"]] = VAR_REF.sub(lambda m: env[m.group(1)], var["value"])
    return env


@pytest.mark.parametrize(
    ("component", "pod_name", "config_cls", "grpc_port"),
    [
        ("shard", "vecshard-shard-0", ShardConfig, 7400),
        ("coordinator", "vecshard-coordinator-6d9f-abcde", CoordinatorConfig, 7300),
    ],
)
def test_container_args_parse_with_the_real_cli(
    component: str, pod_name: str, config_cls: type[Any], grpc_port: int
) -> None:
    """The args, expanded as the kubelet would, are accepted by the role's own flag
    parser and settings loader, bind every interface, and name the health service
    the server really registers; the server's own grace period fits the pod's. The
    security settings (TLS, and for coordinators auth and audit) load from the
    container's environment and point into the Secrets' mounts."""
    objs = render("prod")
    workload = workload_of(objs, component)
    (c,) = pod_spec(workload)["containers"]
    env = _pod_env(objs, c, pod_name)
    argv = [VAR_REF.sub(lambda m: env[m.group(1)], a) for a in c["args"]]
    assert argv[0] == component
    package = "shard_server" if component == "shard" else "coordinator"
    args = importlib.import_module(f"{package}.__main__").parse_args(argv[1:])
    overrides = {k: v for k, v in vars(args).items() if k != "config"}
    cfg = load_settings(config_cls, component, env={}, overrides=overrides)

    assert cfg.listen == f"0.0.0.0:{grpc_port}"
    assert (cfg.metrics_host, cfg.metrics_port) == ("0.0.0.0", 9100)
    assert cfg.etcd == the(objs, "ConfigMap", "vecshard-config")["data"]["etcd_endpoints"]
    if component == "shard":
        assert cfg.shard_id == pod_name
        assert str(cfg.data_dir) == "/data"
        assert cfg.advertise == f"{pod_name}.vecshard-shard.{NAMESPACE}.svc.cluster.local:7400"
    service = importlib.import_module(f"{package}.server").SERVICE
    health_port = grpc_port + 1
    assert cfg.health_listen == f"0.0.0.0:{health_port}"
    assert c["readinessProbe"]["grpc"] == {"port": health_port, "service": service}
    mounts = [m["mountPath"] for m in c["volumeMounts"]]
    secret_volumes = {
        m["mountPath"]
        for m in c["volumeMounts"]
        for v in pod_spec(workload)["volumes"]
        if v["name"] == m["name"] and "secret" in v
    }
    files = load_settings(TlsSettings, "tls", env=env).files()
    for path in (files.ca_file, files.cert_file, files.key_file):
        assert str(path.parent) in secret_volumes, path
    if component == "coordinator":
        assert cfg.name == pod_name
        auth = load_settings(AuthSettings, "auth", env=env)
        audit = load_settings(AuditSettings, "audit", env=env)
        assert str(auth.jwks_file.parent) in secret_volumes  # type: ignore[union-attr]  # set in the manifest
        assert str(audit.key_file.parent) in secret_volumes  # type: ignore[union-attr]  # set in the manifest
        assert str(audit.dir) in mounts
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop_s = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
    assert pre_stop_s + cfg.grace_seconds < pod_spec(workload)["terminationGracePeriodSeconds"]


# ---------------------------------------------------------------- etcd


def _initial_cluster(etcd: Obj) -> dict[str, str]:
    (arg,) = [a for a in container(etcd, "etcd")["args"] if a.startswith("--initial-cluster=")]
    members = arg.removeprefix("--initial-cluster=").split(",")
    return dict(m.split("=", 1) for m in members)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_etcd_members_follow_the_stable_pod_names(overlay: str) -> None:
    objs = render(overlay)
    etcd = the(objs, "StatefulSet", "vecshard-etcd")
    replicas = etcd["spec"]["replicas"]
    headless = the(objs, "Service", etcd["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    # Members must resolve each other before any is ready (readiness needs a quorum).
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert etcd["spec"]["podManagementPolicy"] == "Parallel"
    assert etcd["spec"]["volumeClaimTemplates"]

    members = _initial_cluster(etcd)
    names = [f"vecshard-etcd-{i}" for i in range(replicas)]
    assert list(members) == names
    for name in names:
        assert members[name] == (
            f"https://{name}.{headless['metadata']['name']}.$(POD_NAMESPACE).svc.cluster.local:2380"
        )
    env = {e["name"]: e.get("value") for e in container(etcd, "etcd")["env"]}
    assert env["ETCD_NAME"] == "$(POD_NAME)"
    assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == (
        "https://$(POD_NAME).vecshard-etcd.$(POD_NAMESPACE).svc.cluster.local:2380"
    )
    # Mutual TLS for clients and peers.
    assert env["ETCD_LISTEN_CLIENT_URLS"].startswith("https://")
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    assert "ETCD_INITIAL_CLUSTER" not in env, "set the initial cluster in one place only"

    config = the(objs, "ConfigMap", "vecshard-config")
    client = the(objs, "Service", "vecshard-etcd-client")
    assert config["data"]["etcd_endpoints"] == f"{client['metadata']['name']}:2379"


def test_prod_etcd_has_three_members_a_budget_and_hard_spreading() -> None:
    objs = render("prod")
    etcd = the(objs, "StatefulSet", "vecshard-etcd")
    assert etcd["spec"]["replicas"] == 3
    pdb = the(objs, "PodDisruptionBudget", "vecshard-etcd")
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": etcd["spec"]["selector"]["matchLabels"]},
    }
    anti = pod_spec(etcd)["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"]


_UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_audit_alert_fires_before_the_audit_volume_evicts_the_pod(overlay: str) -> None:
    """Past an emptyDir's sizeLimit the kubelet evicts the pod and the
    volume goes with it: the trail not yet shipped is lost. At ~870 bytes a
    Search, 2Gi lasts about 80 minutes at 500 searches a second — the alert
    must come first, with room to ship."""
    deployment = the(render(overlay), "Deployment", "vecshard-coordinator")
    (volume,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "audit"]
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", volume["emptyDir"]["sizeLimit"]).groups()  # type: ignore[union-attr]
    limit = int(number) * _UNITS[unit]
    alerts = yaml.safe_load((REPO / "deploy/k8s/monitoring/vecshard-alerts.yaml").read_text())
    (rule,) = [
        r for g in alerts["groups"] for r in g["rules"] if r["alert"] == "VecshardAuditTrailFilling"
    ]
    threshold = 1.0
    for factor in rule["expr"].split(">")[1].split("*"):
        threshold *= float(factor)
    assert 0.5 * limit <= threshold <= 0.8 * limit, (threshold, limit)
