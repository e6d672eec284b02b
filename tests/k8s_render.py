"""Rendering the Kubernetes overlays in deploy/ and reading the rendered objects, for the
deployment tests (test_deploy_*.py). Rendering uses `kubectl kustomize` (kubectl ships
in this project's machine image); no cluster is needed."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

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
