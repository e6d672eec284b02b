"""A shard that was away — its lease lost to a pause, restarted on its own
address, or restarted while a replica is dead but still registered — answers
no query before it has caught up from some live replica: acknowledged writes
are not missing, acknowledged deletes do not come back (real processes)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from tests.conftest import ClusterFactory
from tests.polling import eventually
from tests.specs import route_spec

pytestmark = pytest.mark.integration
DIM = 8


def spec(buckets: int, replicas: int) -> str:
    return route_spec(
        dim=DIM, metric="cosine", num_buckets=buckets, replicas=replicas, write_quorum=1
    )


def test_catch_up_falls_back_to_a_live_replica(make_cluster: ClusterFactory) -> None:
    """The first replica catch-up asks is dead, its lease still alive: the
    buckets are copied from the next replica instead of skipped."""
    cluster = make_cluster(num_shards=3, num_coordinators=1, lease_ttl=30)
    rng = np.random.default_rng(0)
    with (
        RegistryClient(cluster.coordinator_target) as reg,
        RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c,
    ):
        reg.apply(spec(6, 3))
        c.upsert("v", "v1", [Record(f"e{i}", rng.normal(size=DIM)) for i in range(60)])
        cluster.kill_shard("shard-0")
        cluster.kill_shard("shard-1")  # its key lingers 30 s
        late = [f"late{i}" for i in range(120)]
        assert c.upsert("v", "v1", [Record(k, rng.normal(size=DIM)) for k in late])[0] == 120
        time.sleep(9)  # the coordinator's repair retries give up
        cluster.restart_shard("shard-0")
    cluster.shards["shard-2"].stop()  # the only replica that had them leaves
    store = cluster.etcd_store()
    assert eventually(lambda: store.get(f"{cluster.etcd_prefix}cluster/shards/shard-1") is None, 40)
    time.sleep(1.5)
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c:
        got = [lk.status for lk in c.batch_get("v", "v1", late)]
    missing = sum(s != "found" for s in got)
    assert missing == 0, f"{missing} of 120 acknowledged keys missing on shard-0 after catch-up"
