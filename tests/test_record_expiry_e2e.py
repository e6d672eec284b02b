"""Records past their family's `retention_days`, through real processes
(two shards, two replicas): lookups read them as missing at once, the
shards delete them on their timer (`shard_server/record_expiry.py`), so they
leave search results too, on both replicas; a newer write of an expired key
lands (it left no tombstone), and the registry refuses a negative lifetime."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.errors import VecshardError
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as rpb
from tests.conftest import ClusterFactory
from tests.polling import poll
from tests.specs import route_spec
from tests.test_feature_replicas_e2e import metric

pytestmark = pytest.mark.integration
S = 1_000_000
DAY = 86_400 * S
FAMILY = '"metric": "l2"}'


def written_at(c: RetrievalClient, ids: list[str], created_at: int, version: int) -> None:
    """Records with a `created_at` of the caller's choosing (the SDK stamps now)."""
    records = [
        cpb.EmbeddingRecord(
            key=cpb.EntityKey(entity_id=i),
            vector=np.ones(4, np.float32).tobytes(),
            created_at_unix_micros=created_at,
            source_version=version,
        )
        for i in ids
    ]
    request = rpb.UpsertRequest(
        access=c.access, embedding_name="v", embedding_version="v1", records=records
    )
    c._rpc("Upsert", request, None)


def test_records_past_their_retention_leave_lookups_search_and_both_replicas(
    make_cluster: ClusterFactory,
) -> None:
    cluster: LocalCluster = make_cluster(
        num_shards=2,
        num_coordinators=1,
        extra_env={"VECSHARD__SHARD__EXPIRY_INTERVAL_SECONDS": "1"},
    )
    spec = route_spec(dim=4, num_buckets=4, replicas=2)
    assert FAMILY in spec
    with RegistryClient(cluster.coordinator_address) as reg:
        with pytest.raises(VecshardError, match="retention_days -1; expected 0..36500"):
            reg.apply(spec.replace(FAMILY, '"metric": "l2", "retention_days": -1}'))
        reg.apply(spec.replace(FAMILY, '"metric": "l2", "retention_days": 1}'))
    now = time.time_ns() // 1000
    with RetrievalClient(cluster.coordinator_address, tenant_id="t", purpose="test") as c:
        c.upsert("v", "v1", [Record("fresh", np.ones(4)), Record("young", np.ones(4))])
        written_at(c, ["old1", "old2"], now - 2 * DAY, 5)
        written_at(c, ["young"], now - DAY // 2, 5)  # half a day: kept
        ids = ["fresh", "young", "old1", "old2"]
        assert c.get_embeddings("v", "v1", ids).statuses() == ["found"] * 2 + ["missing"] * 2

        def searched() -> set[str]:
            return {h.key.entity_id for h in c.search("r", np.ones(4), k=10).hits}

        assert poll(searched, lambda got: got == {"fresh", "young"}, timeout=30) == {
            "fresh",
            "young",
        }
        ports = [s.ready["metrics"] for s in cluster.shards.values()]  # type: ignore[index]

        def expired() -> list[float]:
            return [metric(p, "vecshard_shard_records_expired_total") for p in ports]

        assert poll(expired, lambda n: n == [2.0, 2.0], timeout=10) == [2.0, 2.0]
        assert c.get_embeddings("v", "v1", ids).statuses() == ["found"] * 2 + ["missing"] * 2

        # No tombstone: a newer write of an expired key lands, and stays.
        c.upsert("v", "v1", [Record("old1", np.ones(4), source_version=6)])
        assert c.get_embeddings("v", "v1", ["old1"]).statuses() == ["found"]

        def sweeps() -> list[float]:
            return [metric(p, "vecshard_shard_expiry_sweeps_total") for p in ports]

        before = sweeps()
        after = poll(
            sweeps, lambda n: all(a >= b + 2 for a, b in zip(n, before, strict=True)), timeout=15
        )
        assert all(a >= b + 2 for a, b in zip(after, before, strict=True)), (before, after)
        assert searched() == {"fresh", "young", "old1"}
