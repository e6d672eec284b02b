"""Centroid placement: the coarse quantizer, nearest-centroid writes, and the
invariants that must survive a vector moving to another bucket."""

from __future__ import annotations

import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import Metric
from core.errors import FailedPrecondition
from registry.placement import nearest, train_centroids
from tests.conftest import ClusterFactory
from tests.specs import tenant_spec


def blobs(n_per: int, centres: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [c + 0.1 * rng.normal(size=(n_per, centres.shape[1])) for c in centres]
    ).astype(np.float32)


@pytest.mark.parametrize("metric", list(Metric))
def test_training_finds_the_clusters_and_is_deterministic(metric: Metric) -> None:
    centres = np.eye(6, dtype=np.float32) * 5
    x = blobs(50, centres, seed=1)
    c1 = train_centroids(x, 6, metric, seed=3)
    assert c1.tobytes() == train_centroids(x, 6, metric, seed=3).tobytes()
    assign = nearest(x, c1, metric)
    # every generating cluster maps to exactly one bucket, and all buckets are used
    per_cluster = [set(assign[i * 50 : (i + 1) * 50].tolist()) for i in range(6)]
    assert all(len(s) == 1 for s in per_cluster)
    assert len(set().union(*per_cluster)) == 6


def test_too_small_a_sample_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        train_centroids(np.ones((3, 2), np.float32), 8, Metric.L2)


SPEC = """
kind: EmbeddingFamily
spec: {name: pts, entity_type: item, dimension: 4, metric: l2}
---
kind: EmbeddingVersion
spec: {name: pts, version: v1}
---
kind: IndexVersion
spec: {name: pts_c, version: v1, embedding: {name: pts, version: v1}, kind: flat, num_buckets: 4, placement: centroid}
---
kind: Bundle
spec: {name: pts_b, query_embedding: {name: pts, version: v1}, item_embedding: {name: pts, version: v1}, index: {name: pts_c, version: v1}}
---
kind: Route
spec: {name: pts_r, bundle: pts_b}
"""


@pytest.mark.integration
def test_moves_between_buckets_leave_one_live_copy(make_cluster: ClusterFactory) -> None:
    cluster: LocalCluster = make_cluster(num_shards=2)
    centres = np.eye(4, dtype=np.float32) * 10
    with (
        RegistryClient(cluster.coordinator_target) as reg,
        RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="test") as c,
    ):
        reg.apply(SPEC + "\n---\n" + tenant_spec())
        with pytest.raises(FailedPrecondition, match="centroids are not trained"):
            c.upsert("pts", "v1", [Record("x", centres[0])])
        assert reg.train_placement("pts_c", "v1", blobs(30, centres, seed=2)) == 4
        with pytest.raises(FailedPrecondition, match="immutable"):
            reg.train_placement("pts_c", "v1", blobs(30, centres, seed=2))
        c.upsert(
            "pts",
            "v1",
            [Record(f"p{i}", centres[i % 4] + 0.01 * i, source_version=1) for i in range(40)],
        )
        # p0 moves from the region of centre 0 to centre 3's (likely another shard)
        c.upsert("pts", "v1", [Record("p0", centres[3], source_version=2)])
        hits = c.search("pts_r", centres[3], k=40).hits
        assert [h.key.entity_id for h in hits].count("p0") == 1
        assert hits[0].key.entity_id == "p0" and hits[0].score == 0.0
        far = c.search("pts_r", centres[0], k=40).hits
        assert [h.key.entity_id for h in far].count("p0") == 1
        (lk,) = c.batch_get("pts", "v1", ["p0"])
        assert lk.status == "found" and lk.source_version == 2
        assert lk.vector is not None and lk.vector.tobytes() == centres[3].tobytes()
        assert c.delete("pts", "v1", ["p0", "p1"]) == 2
        assert [lk.status for lk in c.batch_get("pts", "v1", ["p0", "p1", "p2", "nope"])] == [
            "deleted",
            "deleted",
            "found",
            "missing",
        ]
        assert "p0" not in {h.key.entity_id for h in c.search("pts_r", centres[3], k=40).hits}
