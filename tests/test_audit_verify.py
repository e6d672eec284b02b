"""`vecshard audit verify --etcd` against the heads anchored in a real etcd
(cli.audit_commands): every anchored head needs its chain on disk, every
chain needs its anchored head, and a gap the coordinator wrote down fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli.etcd_process import EtcdProcess
from cli.main import main
from coordinator.audit import AuditTrail
from coordinator.audit_anchor import EtcdHeadAnchor
from core.audit_chain import ChainWriter, derive_keys, segment_files
from registry.keys import Keys

SECRET = b"0123456789abcdef0123456789abcdef"
KEY, _ = derive_keys(SECRET)


class Cluster:
    """Coordinators' chains under one audit root, anchored in the test's etcd prefix."""

    def __init__(self, root: Path, etcd: EtcdProcess, prefix: str) -> None:
        self.root, self.etcd, self.prefix = root, etcd, prefix
        self.key_file = root.parent / "audit.key"
        self.key_file.write_bytes(SECRET)

    def run(self, name: str, calls: int) -> None:
        store = self.etcd.store()
        try:
            anchor = EtcdHeadAnchor(store, Keys(self.prefix).audit_head(name))
            trail = AuditTrail(ChainWriter(self.root / name, KEY), anchor=anchor)
            for i in range(calls):
                trail.record({"coordinator": name, "rpc": "Search", "i": i})
            trail.close()
        finally:
            store.close()

    def verify(self, *extra: str, etcd: bool = True, directory: Path | None = None) -> int:
        tls = self.etcd.tls
        args = ["audit", "verify", "--dir", str(directory or self.root)]
        args += ["--key-file", str(self.key_file), *extra]
        if etcd:
            args += ["--etcd", self.etcd.endpoint, "--etcd-prefix", self.prefix]
            args += ["--etcd-ca-file", str(tls.ca_file), "--etcd-cert-file", str(tls.cert_file)]
            args += ["--etcd-key-file", str(tls.key_file)]
        return main(args)


@pytest.fixture
def cluster(tmp_path: Path, etcd: EtcdProcess, prefix: str) -> Cluster:
    c = Cluster(tmp_path / "audit", etcd, prefix)
    c.run("c1", 5)
    c.run("c2", 5)
    return c


def test_a_chain_removed_whole_fails_while_its_head_is_anchored(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cluster.verify() == 0
    shutil.rmtree(cluster.root / "c2")
    assert cluster.verify(etcd=False) == 0  # the files alone cannot show it
    capsys.readouterr()
    assert cluster.verify() == 1
    assert "c2: anchored in etcd at seq 5, but no chain under" in capsys.readouterr().out


def test_a_chain_without_its_anchored_head_fails_with_etcd(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    store = cluster.etcd.store()
    assert store.delete(Keys(cluster.prefix).audit_head("c1"))
    store.close()
    capsys.readouterr()
    assert cluster.verify() == 1
    out = capsys.readouterr().out
    assert "c1: 5 records in 1 file(s), seq 1..5: TAMPERED" in out
    assert "no head anchored in etcd" in out and "c2: 5 records in 1 file(s), seq 1..5: OK" in out


def test_a_volume_with_some_chains_is_checked_for_those(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(cluster.root / "c2")  # c2 runs elsewhere
    assert cluster.verify("--chain", "c1") == 0
    assert cluster.verify(directory=cluster.root / "c1") == 0  # one chain's own directory
    capsys.readouterr()
    assert cluster.verify("--chain", "c3") == 1
    assert "c3: no chain under" in capsys.readouterr().out


def test_a_gap_found_at_a_restart_fails_verify(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    path = segment_files(cluster.root / "c1")[-1]
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:2]))
    cluster.run("c1", 1)
    capsys.readouterr()
    assert cluster.verify() == 1
    out = capsys.readouterr().out
    assert "gap: audit-000000000001.jsonl:3: seq 6:" in out and "records 3..5 were removed" in out
