"""Principals' certificates come from a CA of their own (SECURITY.md §1-2).

They used to come from the cluster CA, and coordinators' client CA was the
cluster CA. etcd trusts every client certificate of that CA and has no RBAC,
so a reader's own x5c certificate connected to etcd and wrote itself
`Principal(role=admin, tenants=*, purposes=*)`. These tests hold the fix
against a real etcd: a principal certificate opens no connection to it, a
cluster-CA certificate still does (what made the hole, and why the CAs must
differ), and a PKI directory of an earlier release gains a principals CA
without losing its cluster identities."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli.etcd_process import EtcdProcess
from cli.main import main
from cli.pki import LocalPki
from cli.tokens import mint_x5c_token
from coordinator.authn import TokenVerifier
from core.errors import Unauthenticated, Unavailable
from core.identity import principal_uri
from core.tls import TlsIdentity
from registry.access_policy import ANY, Principal, Role
from registry.registry import Registry
from registry.store import EtcdStore

pytestmark = pytest.mark.integration

ADMIN_GRANT = Principal("reader-svc", Role.ADMIN, (ANY,), (ANY,))


def write_grant(etcd: EtcdProcess, prefix: str, cert: bytes, key: bytes, ca: bytes) -> None:
    """Connects to etcd with this client certificate and grants reader-svc admin."""
    store = EtcdStore(etcd.endpoint, tls=TlsIdentity(ca, cert, key), timeout=3.0)
    try:
        Registry(store, prefix).put_principal(ADMIN_GRANT)
    finally:
        store.close()


def granted(etcd: EtcdProcess, prefix: str) -> bool:
    store = etcd.store()
    try:
        return store.get(Registry(store, prefix).keys.principal(ADMIN_GRANT.name)) is not None
    finally:
        store.close()


def test_a_principal_certificate_cannot_reach_etcd(
    etcd: EtcdProcess, pki: LocalPki, prefix: str
) -> None:
    ca = pki.ca_file.read_bytes()
    cert, key = pki.issue_principal_cert("reader-svc")  # what signs its x5c tokens
    with pytest.raises(Unavailable):
        write_grant(etcd, prefix, cert, key, ca)
    assert not granted(etcd, prefix)


def test_a_cluster_ca_client_certificate_does_reach_etcd(
    etcd: EtcdProcess, pki: LocalPki, prefix: str
) -> None:
    """The control: etcd takes any client certificate of the cluster CA,
    whatever it names — which is why principals' certificates must not come
    from it."""
    ca = pki.ca_file.read_bytes()
    cert, key = pki.ca().issue("reader-svc", uris=[principal_uri("reader-svc")], server=False)
    write_grant(etcd, prefix, cert, key, ca)
    assert granted(etcd, prefix)


def test_the_principals_ca_is_apart_from_the_cluster_ca(tmp_path: Path) -> None:
    pki = LocalPki.ensure(tmp_path / "pki")
    cluster, principals = pki.ca(), pki.principals_ca()
    assert cluster.cert.subject != principals.cert.subject
    assert cluster.cert_pem not in pki.principals_ca_file.read_bytes()
    assert principals.cert_pem not in pki.ca_file.read_bytes()
    assert oct(pki.key_file("principals-ca").stat().st_mode & 0o777) == "0o600"
    # Components keep trusting only the cluster CA.
    assert pki.etcd.ca_file == pki.ca_file
    # ensure() on a complete directory keeps the principals CA.
    LocalPki.ensure(pki.root)
    assert pki.principals_ca().cert == principals.cert


def test_a_pki_directory_of_an_earlier_release_gains_a_principals_ca(tmp_path: Path) -> None:
    """A `make run` data dir made before the principals CA: no
    principals-ca.{pem,key}. Its cluster identities are kept (running etcd
    and shards keep trusting each other); the principals CA is made on first
    use, by `ensure()` (`vecshard up`, `vecshard auth pki`) or by issuing a
    certificate from a directory nobody ensured (`vecshard auth principal-cert`)."""
    old = LocalPki.ensure(tmp_path / "old")
    old.principals_ca_file.unlink()
    old.key_file("principals-ca").unlink()
    before = {p.name: p.read_bytes() for p in old.root.iterdir() if p.is_file()}

    shutil.copytree(old.root, tmp_path / "issued")
    issued = LocalPki(tmp_path / "issued")
    issued.issue_principal_cert("svc")
    assert issued.principals_ca_file.exists()

    upgraded = LocalPki.ensure(old.root)
    assert upgraded.principals_ca_file.exists()
    after = {p.name: p.read_bytes() for p in old.root.iterdir() if p.is_file()}
    assert {n: after[n] for n in before} == before


def test_auth_principal_cert_issues_from_the_principals_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What an operator runs to give a workload (or rotate) its certificate:
    its x5c tokens pass a coordinator whose client CA is the principals CA,
    and not one that trusts the cluster CA (what components trust)."""
    pki = LocalPki.ensure(tmp_path / "pki")
    args = ["--pki", str(pki.root), "--principal", "feed", "--out", str(tmp_path / "feed")]
    assert main(["auth", "principal-cert", *args, "--days", "30"]) == 0
    assert "principals CA" in capsys.readouterr().out
    cert, key = (tmp_path / "feed.pem").read_bytes(), (tmp_path / "feed.key").read_bytes()
    assert oct((tmp_path / "feed.key").stat().st_mode & 0o777) == "0o600"
    verifier = TokenVerifier(None, pki.principals_ca_file.read_bytes())
    assert verifier.verify(mint_x5c_token(cert, key, "feed", 60)).principal == "feed"
    as_components_do = TokenVerifier(None, pki.ca_file.read_bytes())
    with pytest.raises(Unauthenticated, match="trusted CA"):
        as_components_do.verify(mint_x5c_token(cert, key, "feed", 60))
