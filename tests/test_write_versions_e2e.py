"""The version rules through real processes and two coordinators (issue 14):
a delete removes only what is not newer than itself."""

from __future__ import annotations

import numpy as np
import pytest

from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from tests.conftest import ClusterFactory
from tests.specs import route_spec

pytestmark = pytest.mark.integration

DIM = 4
REGIONS = 6
CENTRES = np.eye(REGIONS, DIM * 2, dtype=np.float32)[:, :DIM] * 10  # 4 distinct + 2 more below
CENTRES[4] = -10 * np.eye(DIM, dtype=np.float32)[0]
CENTRES[5] = -10 * np.eye(DIM, dtype=np.float32)[1]


def _client(address: str) -> RetrievalClient:
    return RetrievalClient(address, tenant_id="t", purpose="test")


def test_a_stale_delete_never_removes_a_newer_write(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(num_shards=2)
    second = cluster.add_coordinator()
    with RegistryClient(cluster.coordinator_address) as reg:
        reg.apply(route_spec(dim=DIM))
    vec = np.array([1, 2, 3, 4], np.float32)
    with _client(cluster.coordinator_address) as a, _client(second) as b:
        assert a.upsert("v", "v1", [Record("k", vec, source_version=100)]) == (1, 0)
        assert b.delete("v", "v1", ["k"], source_version=5) == 0
        (lk,) = a.batch_get("v", "v1", ["k"])
        assert lk.status == "found" and lk.source_version == 100
        assert [h.key.entity_id for h in b.search("r", vec, k=3).hits] == ["k"]
        # A delete of the record's own version wins, and fences that version.
        assert b.delete("v", "v1", ["k"], source_version=100) == 1
        assert a.batch_get("v", "v1", ["k"])[0].status == "deleted"
        assert a.upsert("v", "v1", [Record("k", vec, source_version=100)]) == (0, 1)
        assert a.upsert("v", "v1", [Record("k", vec, source_version=101)]) == (1, 0)
        assert b.batch_get("v", "v1", ["k"])[0].source_version == 101
