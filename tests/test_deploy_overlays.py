"""The Kubernetes overlays in deploy/ (dev, prod): every object validates against the
Kubernetes JSON schemas (offline, kubernetes-validate), and the properties every object
and workload must have hold: namespace, labels, requests and limits, non-root under the
restricted profile, pinned images, resolvable variables, selectors that select real
pods, Prometheus scraping; and the sizes that set the two overlays apart."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from tests.k8s_render import (
    CLUSTER_SCOPED_KINDS,
    COMPONENT_LABEL,
    K8S_VERSIONS,
    NAME_LABEL,
    NAMESPACE,
    OVERLAYS,
    PART_OF_LABEL,
    VAR_REF,
    container,
    containers,
    ident,
    of_kind,
    pod_labels,
    pod_spec,
    quantity,
    render,
    selector_matches,
    the,
    workloads,
)

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


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_etcd_volumes_hold_the_backend_quota_with_room(overlay: str) -> None:
    """The dev overlay's 1 Gi volume was under etcd's 2 GiB quota: the disk
    would fill before the NOSPACE alarm (which refuses writes, recoverably)."""
    etcd = the(render(overlay), "StatefulSet", "vecshard-etcd")
    env = {e["name"]: e.get("value") for e in container(etcd, "etcd").get("env", [])}
    quota = int(env.get("ETCD_QUOTA_BACKEND_BYTES") or 2 * 1024**3)
    (claim,) = etcd["spec"]["volumeClaimTemplates"]
    volume = quantity(claim["spec"]["resources"]["requests"]["storage"], "memory")
    assert volume >= 1.5 * quota, f"{overlay}: a {volume:.0f}-byte volume, quota {quota}"
