"""Issue 5 fault tests through real shard processes: a slow shard (injected
delay), a SIGKILLed shard and a shard returning errors give partial results
within the deadline naming the missing buckets — or DEADLINE_EXCEEDED when
complete results were required; with two replicas per bucket, a killed
replica changes nothing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.errors import DeadlineExceeded
from tests.conftest import ClusterFactory
from tests.specs import route_spec

pytestmark = pytest.mark.integration
DIM = 8


def spec(replicas: int) -> str:
    return route_spec(dim=DIM, num_buckets=8, replicas=replicas)


def load(address: str, n: int = 400) -> None:
    rng = np.random.default_rng(0)
    with RetrievalClient(address, tenant_id="t", purpose="test") as c:
        c.upsert(
            "v", "v1", [Record(f"e{i}", rng.normal(size=DIM).astype(np.float32)) for i in range(n)]
        )


def test_slow_killed_and_failing_shards_give_partial_results_in_time(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(
        num_shards=4,
        lease_ttl=30,  # the killed shard stays registered: the coordinator must cope with refusals
        shard_env={
            "shard-0": {"VECSHARD_FAULTS": "Search=delay:5.0"},
            "shard-1": {"VECSHARD_FAULTS": "Search=error:INTERNAL"},
        },
    )
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(spec(replicas=1))
        placement = reg.get("Placement", "ix", "v1").spec["buckets"]
    load(cluster.coordinator_target)
    cluster.kill_shard("shard-2")
    down = sorted(
        b
        for b, replicas in enumerate(placement)
        if replicas[0] in ("shard-0", "shard-1", "shard-2")
    )
    q = np.zeros(DIM, np.float32)
    with RetrievalClient(
        cluster.coordinator_target, tenant_id="t", purpose="test", timeout=1.5
    ) as c:
        t0 = time.monotonic()
        res = c.search("r", q, 10)
        elapsed = time.monotonic() - t0
        assert elapsed < 1.5, f"answered after {elapsed:.2f}s, past the 1.5 s deadline"
        assert res.partial and list(res.missing_buckets) == down
        assert res.completeness == pytest.approx(1 - len(down) / 8)
        assert len(res.hits) == 10 and {h.shard_id for h in res.hits} == {"shard-3"}
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="complete results were required"):
            c.search("r", q, 10, require_complete=True)
        assert time.monotonic() - t0 < 1.5


def test_a_killed_replica_changes_nothing(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(num_shards=3, lease_ttl=30)
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(spec(replicas=2))
    load(cluster.coordinator_target)
    rng = np.random.default_rng(9)
    queries = [rng.normal(size=DIM).astype(np.float32) for _ in range(20)]
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="test") as c:
        before = [[(h.key, h.score) for h in c.search("r", q, 10).hits] for q in queries]
        cluster.kill_shard("shard-1")  # still registered (lease 30 s): every call to it is refused
        for q, want in zip(queries, before, strict=True):
            res = c.search("r", q, 10)
            assert not res.partial and res.completeness == 1.0
            assert [(h.key, h.score) for h in res.hits] == want
            assert "shard-1" not in {h.shard_id for h in res.hits}
