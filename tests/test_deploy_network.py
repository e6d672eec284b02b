"""The NetworkPolicies of both overlays let exactly the intended traffic through: who
may reach shards, etcd and coordinators, on which ports, from which namespaces."""

from __future__ import annotations

import pytest

from tests.k8s_render import (
    NAMESPACE,
    OVERLAYS,
    Obj,
    containers,
    ident,
    of_kind,
    pod_labels,
    render,
    selector_matches,
    workload_of,
)


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
        # Shards copy missed writes from peer replicas (ExportBuckets).
        ("shard", NAMESPACE): {("etcd", 2379), ("coordinator", 7300), ("shard", 7400)},
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
