"""TLS in the Kubernetes deployment: every workload mounts its certificate from
a Secret, and the prod overlay's optional cert-manager component issues exactly
those Secrets, with the role named in the URI SAN that shards check and DNS
names that cover the addresses components dial."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from core.identity import ComponentRole, component_uri
from tests.k8s_render import DEPLOY, NAMESPACE, Obj, container, of_kind, pod_spec, render, the


def render_with_cert_manager(tmp: Path) -> list[Obj]:
    """prod plus the component, as `components: [cert-manager]` in prod's own
    kustomization would give (kustomize takes relative paths only)."""
    prod = os.path.relpath(DEPLOY / "k8s" / "overlays" / "prod", tmp)
    doc = {
        "namespace": NAMESPACE,
        "resources": [prod],
        "components": [os.path.join(prod, "cert-manager")],
    }
    (tmp / "kustomization.yaml").write_text(yaml.safe_dump(doc))
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    out = subprocess.run(
        [kubectl, "kustomize", str(tmp)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def mounted_secrets(workload: Obj) -> set[str]:
    return {v["secret"]["secretName"] for v in pod_spec(workload)["volumes"] if "secret" in v}


def test_every_workload_mounts_its_certificate_from_a_secret() -> None:
    objs = render("prod")
    expected = {
        ("Deployment", "vecshard-coordinator"): "vecshard-coordinator-tls",
        ("StatefulSet", "vecshard-shard"): "vecshard-shard-tls",
        ("StatefulSet", "vecshard-etcd"): "vecshard-etcd-tls",
    }
    for (kind, name), secret in expected.items():
        workload = the(objs, kind, name)
        assert secret in mounted_secrets(workload), name
        # Group-readable by the pod's group only: keys are not world-readable.
        for v in pod_spec(workload)["volumes"]:
            if "secret" in v:
                assert v["secret"]["defaultMode"] == 0o440, (name, v["name"])
        assert pod_spec(workload)["securityContext"]["fsGroup"] == 10001
    coordinator = the(objs, "Deployment", "vecshard-coordinator")
    assert {"vecshard-auth", "vecshard-audit"} <= mounted_secrets(coordinator)
    assert not any(
        "private" in c.get("name", "") for c in container(coordinator, "coordinator")["env"]
    )


def test_cert_manager_issues_the_mounted_secrets_with_the_roles(tmp_path: Path) -> None:
    objs = render_with_cert_manager(tmp_path)
    certs = {c["spec"]["secretName"]: c for c in of_kind(objs, "Certificate")}
    assert all(c["metadata"]["namespace"] == NAMESPACE for c in certs.values())
    (issuer,) = of_kind(objs, "Issuer")
    for cert in certs.values():
        assert cert["spec"]["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer"}
        assert set(cert["spec"]["usages"]) == {"server auth", "client auth"}
        assert cert["spec"]["privateKey"]["rotationPolicy"] == "Always"
    for workload in (
        the(objs, "Deployment", "vecshard-coordinator"),
        the(objs, "StatefulSet", "vecshard-shard"),
        the(objs, "StatefulSet", "vecshard-etcd"),
    ):
        tls = [s for s in mounted_secrets(workload) if s.endswith("-tls")]
        assert tls and all(s in certs for s in tls), tls
    coordinator = certs["vecshard-coordinator-tls"]["spec"]
    shard = certs["vecshard-shard-tls"]["spec"]
    assert coordinator["uris"] == [component_uri(ComponentRole.COORDINATOR)]
    assert shard["uris"] == [component_uri(ComponentRole.SHARD)]
    # The names each component is dialled by: the client Service, the shards'
    # advertised pod names, the etcd endpoints of the ConfigMap.
    assert f"vecshard.{NAMESPACE}.svc.cluster.local" in coordinator["dnsNames"]
    assert f"*.vecshard-shard.{NAMESPACE}.svc.cluster.local" in shard["dnsNames"]
    etcd_host = the(objs, "ConfigMap", "vecshard-config")["data"]["etcd_endpoints"].split(":")[0]
    assert etcd_host in certs["vecshard-etcd-tls"]["spec"]["dnsNames"]


def test_coordinators_take_callers_certificates_from_the_principals_ca_only() -> None:
    """x5c tokens chain to the principals CA from the vecshard-auth Secret, not
    to the cluster CA the components trust: etcd accepts every client
    certificate of that one, so a caller's own could write the registry."""
    coordinator = the(render("prod"), "Deployment", "vecshard-coordinator")
    env = {e["name"]: e.get("value") for e in container(coordinator, "coordinator")["env"]}
    client_ca = env["VECSHARD__AUTH__CLIENT_CA_FILE"]
    assert client_ca != env["VECSHARD__TLS__CA_FILE"]
    mounts = {
        m["name"]: m["mountPath"] for m in container(coordinator, "coordinator")["volumeMounts"]
    }
    (auth,) = [
        v
        for v in pod_spec(coordinator)["volumes"]
        if v.get("secret", {}).get("secretName") == "vecshard-auth"
    ]
    assert client_ca == f"{mounts[auth['name']]}/principals-ca.crt"
    assert {"key": "principals-ca.crt", "path": "principals-ca.crt"} in auth["secret"]["items"]
