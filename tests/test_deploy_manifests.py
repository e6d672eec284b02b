"""The Kubernetes deployment in deploy/: every overlay renders with no cluster, every
object validates against the Kubernetes JSON schemas (offline, kubernetes-validate),
and the rendered objects have the properties the cluster relies on: probes that name
the real gRPC services, shard identity and volumes, network reachability, sizes per
overlay, non-root containers. Also checks the container image's Dockerfile.

Rendering uses `kubectl kustomize` (kubectl ships in this project's machine image).
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import importlib
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from coordinator.config import CoordinatorConfig
from core.settings import load_settings
from shard_server.config import ShardConfig

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "prod")
# The oldest cluster version supported (native gRPC probes are GA since 1.27) and the
# newest schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.29", "1.37")
NAMESPACE = "vecshard"
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
CLUSTER_SCOPED_KINDS = ("Namespace",)
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

Obj = dict[str, Any]


# ---------------------------------------------------------------- rendering helpers


@functools.cache
def _render(overlay: str) -> tuple[Obj, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl (with its built-in kustomize) is needed to render deploy/k8s/overlays; "
            "the machine image ships it as the Debian package 'kubectl'",
            pytrace=False,
        )
    proc = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl kustomize {overlay} failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def render(overlay: str) -> list[Obj]:
    """A fresh copy, so that no test can change what another one sees."""
    return copy.deepcopy(list(_render(overlay)))


def ident(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def the(objs: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def workloads(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: Obj) -> Obj:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: Obj) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def containers(workload: Obj) -> list[Obj]:
    spec = pod_spec(workload)
    return spec["containers"] + spec.get("initContainers", [])


def container(workload: Obj, name: str) -> Obj:
    (found,) = [c for c in containers(workload) if c["name"] == name]
    return found


def workload_of(objs: list[Obj], component: str) -> Obj:
    (found,) = [w for w in workloads(objs) if pod_labels(w).get(COMPONENT_LABEL) == component]
    return found


def selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (an empty selector matches everything)."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


_CPU_UNITS = {"m": 0.001, "": 1.0}
_MEM_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int | float, resource: str) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, f"unparsable {resource} quantity {value!r}"
    units = _CPU_UNITS if resource == "cpu" else _MEM_UNITS
    assert match.group(2) in units, f"unexpected unit in {resource} quantity {value!r}"
    return float(match.group(1)) * units[match.group(2)]


def proto_service_names() -> set[str]:
    """Fully qualified gRPC service names declared in protos/."""
    names = set()
    for proto in (REPO / "protos").rglob("*.proto"):
        text = proto.read_text()
        package = re.search(r"^package\s+([\w.]+)\s*;", text, re.M)
        assert package, f"{proto} has no package"
        for service in re.findall(r"^service\s+(\w+)", text, re.M):
            names.add(f"{package.group(1)}.{service}")
    return names


# ---------------------------------------------------------------- schema validation


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schema(overlay: str, version: str) -> None:
    objs = render(overlay)
    assert len(objs) >= 15
    errors = []
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{ident(obj)}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{ident(obj)}: no schema ({exc.message}); custom resources need a CRD")
    assert not errors, "\n".join(errors)


def test_schema_validation_rejects_a_misspelt_field() -> None:
    """The strict schemas catch a typo, so the test above is not vacuous."""
    shard = copy.deepcopy(the(render("prod"), "StatefulSet", "vecshard-shard"))
    spec = pod_spec(shard)
    spec["terminationGracePeriodSecond"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(shard, K8S_VERSIONS[0], strict=True)


# ---------------------------------------------------------------- whole-overlay rules


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_live_in_the_vecshard_namespace(overlay: str) -> None:
    objs = render(overlay)
    namespace = the(objs, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objs:
        if obj["kind"] not in CLUSTER_SCOPED_KINDS:
            assert obj["metadata"].get("namespace") == NAMESPACE, ident(obj)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_carry_the_standard_labels(overlay: str) -> None:
    objs = render(overlay)
    for obj in objs:
        assert obj["metadata"]["labels"][PART_OF_LABEL] == "vecshard", ident(obj)
    components = set()
    for workload in workloads(objs):
        for labels in (workload["metadata"]["labels"], pod_labels(workload)):
            assert labels[NAME_LABEL] == "vecshard", ident(workload)
            assert labels[PART_OF_LABEL] == "vecshard", ident(workload)
        components.add(pod_labels(workload)[COMPONENT_LABEL])
        assert selector_matches(workload["spec"]["selector"], pod_labels(workload)), ident(workload)
    assert components == {"shard", "coordinator", "etcd"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        for c in containers(workload):
            where = f"{ident(workload)} container {c['name']}"
            resources = c.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request is not None, f"{where}: no {resource} request"
                assert limit is not None, f"{where}: no {resource} limit"
                assert quantity(request, resource) <= quantity(limit, resource), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_as_non_root_under_the_restricted_profile(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        pod_ctx = pod_spec(workload).get("securityContext", {})
        assert pod_spec(workload).get("automountServiceAccountToken") is False, ident(workload)
        for c in containers(workload):
            where = f"{ident(workload)} container {c['name']}"
            ctx = {**pod_ctx, **c.get("securityContext", {})}
            assert ctx.get("runAsNonRoot") is True, where
            assert ctx.get("runAsUser", 0) != 0, where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            assert "ALL" in ctx.get("capabilities", {}).get("drop", []), where
            assert ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_to_a_tag(overlay: str) -> None:
    tags = {}
    for workload in workloads(render(overlay)):
        for c in containers(workload):
            name, _, tag = c["image"].rpartition(":")
            assert name and tag and tag != "latest", f"{ident(workload)}: {c['image']}"
            tags[name] = tag
    assert tags["quay.io/coreos/etcd"] == "v3.5.17"
    assert (tags["vecshard"] == "dev") == (overlay == "dev")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_variable_references_resolve(overlay: str) -> None:
    """$(VAR) in env values must name a variable defined above it (else Kubernetes
    leaves the text as is); in command/args, any variable of the container. Config
    map references must name an existing key."""
    objs = render(overlay)
    config_maps = {o["metadata"]["name"]: o.get("data", {}) for o in of_kind(objs, "ConfigMap")}
    for workload in workloads(objs):
        for c in containers(workload):
            where = f"{ident(workload)} container {c['name']}"
            defined: list[str] = []
            for var in c.get("env", []):
                for ref in VAR_REF.findall(var.get("value", "")):
                    assert ref in defined, f"{where}: {var['name']} uses $({ref}) before it is set"
                key_ref = var.get("valueFrom", {}).get("configMapKeyRef")
                if key_ref:
                    assert key_ref["key"] in config_maps.get(key_ref["name"], {}), where
                defined.append(var["name"])
            for arg in c.get("command", []) + c.get("args", []):
                for ref in VAR_REF.findall(arg):
                    assert ref in defined, f"{where}: argument {arg!r} uses unset $({ref})"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_budgets_and_policies_select_real_pods(overlay: str) -> None:
    objs = render(overlay)
    pods = {ident(w): pod_labels(w) for w in workloads(objs)}
    ports = {
        ident(w): {p["name"] for c in containers(w) for p in c.get("ports", [])}
        for w in workloads(objs)
    }
    for svc in of_kind(objs, "Service"):
        selector = {"matchLabels": svc["spec"]["selector"]}
        selected = [w for w, labels in pods.items() if selector_matches(selector, labels)]
        assert len(selected) == 1, f"{ident(svc)} selects {selected}"
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports[selected[0]], f"{ident(svc)} port {port['name']}"
    for kind, path in (("PodDisruptionBudget", "selector"), ("NetworkPolicy", "podSelector")):
        for obj in of_kind(objs, kind):
            selected = [
                w for w, labels in pods.items() if selector_matches(obj["spec"][path], labels)
            ]
            assert len(selected) == 1, f"{ident(obj)} selects {selected}"
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        the(objs, target["kind"], target["name"])
    for workload in workloads(objs):
        assert any(
            selector_matches(pdb["spec"]["selector"], pod_labels(workload))
            for pdb in of_kind(objs, "PodDisruptionBudget")
        ), f"{ident(workload)} has no PodDisruptionBudget"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_scraped_by_prometheus_on_9100(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", ident(workload)
        assert annotations.get("prometheus.io/port") == "9100", ident(workload)
        metrics = [
            p
            for c in containers(workload)
            for p in c.get("ports", [])
            if p["containerPort"] == 9100
        ]
        assert [p["name"] for p in metrics] == ["metrics"], ident(workload)


# ---------------------------------------------------------------- network policies


def _ingress_allowed(
    policies: list[Obj],
    target: dict[str, str],
    source: dict[str, str] | None,
    source_namespace: str,
    port: int,
) -> bool:
    """Whether NetworkPolicy ingress rules let a pod (labels `source`, or None for a
    pod with no vecshard labels) in `source_namespace` reach `port` of a pod with
    labels `target` in the vecshard namespace."""
    source = source or {}
    namespace_labels = {"kubernetes.io/metadata.name": source_namespace}
    selecting = [p for p in policies if selector_matches(p["spec"]["podSelector"], target)]
    if not selecting:
        return True  # not isolated
    for policy in selecting:
        assert "Ingress" in policy["spec"]["policyTypes"], ident(policy)
        for rule in policy["spec"].get("ingress", []):
            rule_ports = rule.get("ports", [])
            for p in rule_ports:
                assert isinstance(p["port"], int), f"{ident(policy)}: use numeric ports"
            if rule_ports and port not in [p["port"] for p in rule_ports]:
                continue
            peers = rule.get("from", [])
            if not peers:
                return True
            for peer in peers:
                ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
                if ns_sel is None:
                    ns_ok = source_namespace == NAMESPACE
                else:
                    ns_ok = selector_matches(ns_sel, namespace_labels)
                pod_ok = pod_sel is None or selector_matches(pod_sel, source)
                if ns_ok and pod_ok:
                    return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_intended_traffic(overlay: str) -> None:
    objs = render(overlay)
    policies = of_kind(objs, "NetworkPolicy")
    pods = {c: pod_labels(workload_of(objs, c)) for c in ("shard", "coordinator", "etcd")}
    # (source, namespace) -> {(target component, port) that must be reachable}
    sources: dict[tuple[str, str], set[tuple[str, int]]] = {
        ("coordinator", NAMESPACE): {("shard", 7400), ("etcd", 2379), ("coordinator", 7300)},
        ("shard", NAMESPACE): {("etcd", 2379), ("coordinator", 7300)},
        ("etcd", NAMESPACE): {("etcd", 2380), ("coordinator", 7300)},
        ("other", NAMESPACE): {("coordinator", 7300)},
        ("other", "monitoring"): {
            ("shard", 9100),
            ("etcd", 9100),
            ("coordinator", 9100),
            ("coordinator", 7300),
        },
        ("other", "default"): {("coordinator", 7300)},
    }
    target_ports = {
        component: sorted(
            p["containerPort"]
            for c in containers(workload_of(objs, component))
            for p in c.get("ports", [])
        )
        for component in pods
    }
    wrong = []
    for (source, namespace), expected in sources.items():
        for component, port_list in target_ports.items():
            for port in port_list:
                allowed = _ingress_allowed(
                    policies, pods[component], pods.get(source), namespace, port
                )
                if allowed != ((component, port) in expected):
                    wrong.append(
                        f"{source} pod in {namespace} -> {component}:{port} "
                        f"{'allowed' if allowed else 'refused'}"
                    )
    assert not wrong, "\n".join(wrong)


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
    assert headless["spec"]["publishNotReadyAddresses"] is False
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
    # liveness on the overall server.
    shard_service = "vecshard.v1.internal.ShardService"
    assert shard_service in proto_service_names()
    assert shard["readinessProbe"]["grpc"] == {"port": 7400, "service": shard_service}
    assert shard["livenessProbe"]["grpc"].get("service", "") == ""
    assert shard["livenessProbe"]["grpc"]["port"] == 7400
    assert shard["startupProbe"]["grpc"]["port"] == 7400


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
        "--metrics-host",
        "0.0.0.0",
        "--metrics-port",
        "9100",
    ]
    retrieval = "vecshard.v1.RetrievalService"
    assert retrieval in proto_service_names()
    assert coordinator["readinessProbe"]["grpc"] == {"port": 7300, "service": retrieval}
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
    component: str, pod_name: str, config_cls: type, grpc_port: int
) -> None:
    """The args, expanded as the kubelet would, are accepted by the role's own flag
    parser and settings loader, bind every interface, and name the health service
    the server really registers; the server's own grace period fits the pod's."""
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
    assert c["readinessProbe"]["grpc"] == {"port": grpc_port, "service": service}
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
            f"http://{name}.{headless['metadata']['name']}.$(POD_NAMESPACE).svc.cluster.local:2380"
        )
    env = {e["name"]: e.get("value") for e in container(etcd, "etcd")["env"]}
    assert env["ETCD_NAME"] == "$(POD_NAME)"
    assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == (
        "http://$(POD_NAME).vecshard-etcd.$(POD_NAMESPACE).svc.cluster.local:2380"
    )
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


# ---------------------------------------------------------------- overlay differences


def test_dev_and_prod_sizes() -> None:
    sizes = {}
    for overlay in OVERLAYS:
        objs = render(overlay)
        hpa = the(objs, "HorizontalPodAutoscaler", "vecshard-coordinator")
        shard = the(objs, "StatefulSet", "vecshard-shard")
        sizes[overlay] = {
            "shards": shard["spec"]["replicas"],
            "etcd": the(objs, "StatefulSet", "vecshard-etcd")["spec"]["replicas"],
            "coordinators": (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]),
            "shard_memory": quantity(
                container(shard, "shard")["resources"]["requests"]["memory"], "memory"
            ),
        }
    assert sizes["dev"]["shards"] == 2
    assert sizes["prod"]["shards"] == 6
    assert sizes["dev"]["etcd"] in (1, 3)
    assert sizes["prod"]["etcd"] == 3
    assert sizes["dev"]["coordinators"][0] == 1
    assert sizes["prod"]["coordinators"] == (3, 12)
    assert sizes["dev"]["shard_memory"] < sizes["prod"]["shard_memory"]


# ---------------------------------------------------------------- container image


def _dockerfile_stages() -> list[list[str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    lines = [ln.strip() for ln in logical.splitlines() if ln.strip() and not ln.startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_builds_wheels_then_runs_them_as_non_root() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (script,) = pyproject["project"]["scripts"]
    build, runtime = _dockerfile_stages()
    assert build[0].split()[1:] == ["python:3.11-slim", "AS", "build"]
    assert runtime[0].split()[1] == "python:3.11-slim"
    build_text, runtime_text = "\n".join(build), "\n".join(runtime)
    assert "g++" in build_text and "gcc" in build_text
    assert "pip wheel --wheel-dir /wheels ." in build_text
    assert "HNSWLIB_NO_NATIVE=1" in build_text, "a -march=native hnswlib would not be portable"
    assert "gcc" not in runtime_text
    assert "[dev]" not in runtime_text
    assert "--no-index" in runtime_text and "from=build" in runtime_text
    assert "USER 10001:10001" in runtime
    assert f'ENTRYPOINT ["{script}"]' in runtime
    assert 'CMD ["--help"]' in runtime


def test_docker_context_keeps_what_the_wheel_build_needs() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = ["pyproject.toml", pyproject["project"]["readme"]]
    needed += [p.rstrip("*") + "/__init__.py" for p in packages]
    for path in needed:
        for pattern in patterns:
            assert not fnmatch.fnmatch(path, pattern), f"{pattern!r} drops {path}"
            assert not path.startswith(pattern.rstrip("/") + "/"), f"{pattern!r} drops {path}"
