"""A coordinator whose audit trail cannot be written refuses every request
(fail closed, coordinator.audit) — and now also tells its health probes, so a
load balancer stops sending it requests and an orchestrator restarts it; it
used to report SERVING while refusing everything, for good. A restart with a
writable trail serves again, and the chain still verifies.

The trail is broken the way a full or lost volume breaks it, without root:
the chain's directory is swapped for a file, so the next segment cannot be
created (segments rotate every 4 KiB here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import RetrievalClient
from core.audit_chain import chains, derive_keys, read_secret, segment_files, verify_chain
from core.errors import Unavailable
from tests.conftest import ClusterFactory
from tests.polling import poll
from tests.specs import route_spec

pytestmark = pytest.mark.integration

VECSHARD = str(Path(sys.executable).parent / "vecshard")
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


def vecshard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VECSHARD, *args], capture_output=True, text=True, timeout=120)


def health(cluster: LocalCluster) -> list[int]:
    with cluster.channel() as ch:
        stub: Any = health_pb2_grpc.HealthStub(ch)  # the generated stub declares no Check
        return [
            stub.Check(health_pb2.HealthCheckRequest(service=s), timeout=5).status
            for s in ("", "vecshard.v1.RetrievalService", "vecshard.v1.RegistryService")
        ]


def test_a_coordinator_that_cannot_audit_reports_not_serving(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(
        num_shards=1, num_coordinators=1, extra_env={"VECSHARD__AUDIT__ROTATE_BYTES": "4096"}
    )
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(route_spec(dim=4))
    (chain,) = chains(cluster.audit_dir)
    query = np.ones(4, np.float32)
    assert health(cluster) == [SERVING] * 3
    moved = chain.with_name(chain.name + ".moved")
    chain.rename(moved)
    chain.write_text("not a directory")
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c:

        def refused() -> bool:
            try:
                c.search("r", query, k=1)
            except Unavailable as exc:
                assert "audit trail cannot be written" in str(exc)
                return True
            return False

        assert poll(refused, lambda r: r, 30.0, 0.01) is True
        not_serving = [NOT_SERVING] * 3
        assert poll(lambda: health(cluster), lambda h: h == not_serving, 10.0, 0.1) == not_serving
        chain.unlink()
        moved.rename(chain)
        cluster.restart_coordinator(0)  # on a new port
    assert health(cluster) == [SERVING] * 3
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c:
        assert c.search("r", query, k=1).hits == []
    # The failed trail closed without an error (the stop used to raise).
    assert "Traceback" not in (cluster.logs / "coordinator.log").read_text()
    key, _ = derive_keys(read_secret(cluster.certs.audit_key_file))
    assert verify_chain(chain, key).ok


def test_closed_files_move_to_an_archive_while_the_coordinator_writes(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    cluster = make_cluster(
        num_shards=1, num_coordinators=1, extra_env={"VECSHARD__AUDIT__ROTATE_BYTES": "4096"}
    )
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(route_spec(dim=4))
    key_file = str(cluster.certs.audit_key_file)
    archive = tmp_path / "archive"
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c:
        for _ in range(3):
            for _ in range(40):
                c.search("r", np.ones(4, np.float32), k=1)
            out = vecshard("audit", "archive", "--dir", str(cluster.audit_dir), "--to",
                           str(archive), "--key-file", key_file)  # fmt: skip
            assert out.returncode == 0 and "moved" in out.stdout, out.stderr[-2000:]
        c.search("r", np.ones(4, np.float32), k=1)  # still serving, still audited
    (chain,) = chains(cluster.audit_dir)
    assert len(segment_files(archive / chain.name)) > 2 and len(segment_files(chain)) <= 2
    whole = vecshard("audit", "verify", "--dir", str(archive), "--key-file", key_file)
    rest = vecshard(
        "audit", "verify", "--archived", "--dir", str(cluster.audit_dir), "--key-file", key_file
    )
    assert whole.returncode == 0 and rest.returncode == 0, whole.stdout + rest.stdout
    assert "OK" in whole.stdout and "OK" in rest.stdout
