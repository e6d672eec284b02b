"""Issue 5: a replica that was down while writes were acknowledged by a
quorum of its peers catches up from a peer before it serves again, and then
serves identical results."""

from __future__ import annotations

import time

import numpy as np
import pytest

from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from tests.conftest import ClusterFactory
from tests.specs import route_spec

pytestmark = pytest.mark.integration
DIM = 8
SPEC = route_spec(dim=DIM, metric="cosine", num_buckets=4, replicas=2, write_quorum=1)


def test_restarted_replica_catches_up_and_serves_identical_results(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(num_shards=2, lease_ttl=30)
    rng = np.random.default_rng(0)
    with (
        RegistryClient(cluster.coordinator_target) as reg,
        RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c,
    ):
        reg.apply(SPEC)
        c.upsert("v", "v1", [Record(f"e{i}", rng.normal(size=DIM)) for i in range(600)])
        cluster.kill_shard("shard-1")
        # acknowledged by shard-0 alone (write_quorum 1): shard-1 misses all of it
        assert (
            c.upsert("v", "v1", [Record(f"late{i}", rng.normal(size=DIM)) for i in range(200)])[0]
            == 200
        )
        c.upsert(
            "v", "v1", [Record(f"e{i}", rng.normal(size=DIM)) for i in range(0, 100)]
        )  # updates
        assert c.delete("v", "v1", [f"e{i}" for i in range(100, 150)]) == 50
        queries = [rng.normal(size=DIM).astype(np.float32) for _ in range(15)]
        want = [[(h.key, h.score) for h in c.search("r", q, 20).hits] for q in queries]
        keys = [f"e{i}" for i in range(600)] + [f"late{i}" for i in range(200)]
        want_lookups = [
            (lk.status, lk.vector.tobytes() if lk.vector is not None else b"")
            for lk in c.batch_get("v", "v1", keys)
        ]

        cluster.restart_shard("shard-1")  # catches up from shard-0 before serving
        reg.set_shard_state("shard-0", "draining")  # every query now goes to shard-1
        deadline = time.monotonic() + 10
        while {h.shard_id for h in c.search("r", queries[0], 20).hits} != {"shard-1"}:
            assert time.monotonic() < deadline, "queries still reach shard-0"
        got = [[(h.key, h.score) for h in c.search("r", q, 20).hits] for q in queries]
        assert got == want
        reg.set_shard_state("shard-0", "serving")
    # lookups straight from shard-1's data: stop shard-0 entirely
    cluster.shards["shard-0"].stop()
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c:
        deadline = time.monotonic() + 15
        while True:
            try:
                got_lookups = [
                    (lk.status, lk.vector.tobytes() if lk.vector is not None else b"")
                    for lk in c.batch_get("v", "v1", keys)
                ]
                break
            except Exception:  # noqa: BLE001 - until the coordinator stops choosing shard-0
                assert time.monotonic() < deadline
    assert got_lookups == want_lookups
