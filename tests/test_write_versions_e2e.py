"""The version rules through real processes and two coordinators (issue 14,
defects 1 and 2): a write older than what is stored never removes it, a
delete removes only what is not newer than itself, and a key moved between
centroid regions by concurrent writers ends with exactly its newest copy."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import Metric, VersionRef
from registry.placement import decode_centroids, nearest
from registry.registry import Registry
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


def _centroid_cluster(make_cluster: ClusterFactory) -> tuple[LocalCluster, str]:
    cluster = make_cluster(num_shards=3)
    second = cluster.coordinator_addresses[1]
    rng = np.random.default_rng(7)
    sample = np.concatenate([c + 0.1 * rng.normal(size=(30, DIM)) for c in CENTRES])
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(route_spec(dim=DIM, num_buckets=REGIONS, placement="centroid"))
        assert reg.train_placement("ix", "v1", sample.astype(np.float32)) == REGIONS
    return cluster, second


def _regions_on_two_shards(cluster: LocalCluster) -> tuple[int, int]:
    """Two centres whose regions (buckets) the registry placed on different shards."""
    store = cluster.etcd_store()
    try:
        snap = Registry(store, cluster.etcd_prefix).snapshot()
    finally:
        store.close()
    placement = snap.placement(VersionRef("ix", "v1"))
    centroids = decode_centroids(placement.centroids, DIM)
    shard_of = [placement.buckets[int(b)][0] for b in nearest(CENTRES, centroids, Metric.L2)]
    return next(
        (i, j) for i in range(REGIONS) for j in range(REGIONS) if shard_of[i] != shard_of[j]
    )


def test_a_late_older_write_in_another_region_removes_nothing(
    make_cluster: ClusterFactory,
) -> None:
    cluster, second = _centroid_cluster(make_cluster)
    here, there = _regions_on_two_shards(cluster)
    with _client(cluster.coordinator_address) as a, _client(second) as b:
        assert a.upsert("v", "v1", [Record("k", CENTRES[here], source_version=5)]) == (1, 0)
        # Older, and its vector lies in a region placed on another shard.
        assert b.upsert("v", "v1", [Record("k", CENTRES[there], source_version=3)]) == (0, 1)
        for c in (a, b):
            (lk,) = c.batch_get("v", "v1", ["k"])
            assert lk.status == "found" and lk.source_version == 5
            assert lk.vector is not None and lk.vector.tobytes() == CENTRES[here].tobytes()
            hits = c.search("r", CENTRES[here], k=5).hits
            assert [h.key.entity_id for h in hits] == ["k"]


def test_concurrent_versions_across_regions_keep_exactly_the_newest(
    make_cluster: ClusterFactory,
) -> None:
    cluster, second = _centroid_cluster(make_cluster)
    rng = np.random.default_rng(11)
    versions = list(range(1, 49))
    rng.shuffle(versions)
    vectors = {v: CENTRES[v % REGIONS] + 0.01 * v for v in versions}
    addresses = [cluster.coordinator_address, second]
    errors: list[BaseException] = []

    def writer(part: list[int], address: str) -> None:
        try:
            with _client(address) as c:
                for v in part:
                    c.upsert("v", "v1", [Record("k", vectors[v], source_version=v)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(versions[i::6], addresses[i % 2])) for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    newest = max(versions)
    for address in addresses:
        with _client(address) as c:
            (lk,) = c.batch_get("v", "v1", ["k"])
            assert lk.status == "found", "the key was lost"
            assert lk.source_version == newest
            assert lk.vector is not None and lk.vector.tobytes() == vectors[newest].tobytes()
            for centre in CENTRES:
                hits = c.search("r", centre, k=10).hits
                assert [h.key.entity_id for h in hits] == ["k"], "not exactly one live copy"


def test_a_stale_delete_never_removes_a_newer_write(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(num_shards=2)
    second = cluster.coordinator_addresses[1]
    with RegistryClient(cluster.coordinator_target) as reg:
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
