"""Issue 5 acceptance: with centroid placement over 8 real shard processes on
clustered data, bounded fanout searches a median of at most 3 shards per
query and returns exactly the full fanout's answer."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from benchmarks.synthetic_data import gaussian_mixture
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import EntityKey
from core.ordering import order_key
from tests.conftest import ClusterFactory

pytestmark = pytest.mark.integration
DIM = 16
SPEC = f"""
kind: EmbeddingFamily
spec: {{name: pts, entity_type: item, dimension: {DIM}, metric: l2}}
---
kind: EmbeddingVersion
spec: {{name: pts, version: v1}}
---
kind: IndexVersion
spec: {{name: pts_c, version: v1, embedding: {{name: pts, version: v1}}, kind: flat, num_buckets: 8, placement: centroid}}
---
kind: Bundle
spec: {{name: b, query_embedding: {{name: pts, version: v1}}, item_embedding: {{name: pts, version: v1}}, index: {{name: pts_c, version: v1}}}}
---
kind: Route
spec: {{name: r, bundle: b}}
"""


def exact_top(base: np.ndarray, ids: list[str], q: np.ndarray, k: int) -> list[str]:
    from core.domain import Metric
    from core.scoring import canonical_scores

    scores = canonical_scores(Metric.L2, q, base)
    order = sorted(
        range(len(ids)), key=lambda i: order_key(float(scores[i]), EntityKey("t", "item", ids[i]))
    )
    return [ids[i] for i in order[:k]]


def test_centroid_placement_touches_few_shards_and_stays_exact(
    make_cluster: ClusterFactory,
) -> None:
    data = gaussian_mixture(n=8000, dim=DIM, n_clusters=8, n_queries=60, seed=3, cluster_std=1.0)
    # seal small so shards publish k-means balls, not one ball per growing segment
    cluster = make_cluster(
        num_shards=8,
        extra_env={"VECSHARD__SHARD__SEAL_ROWS": "200", "VECSHARD__SHARD__MIN_INDEX_ROWS": "50"},
    )
    ids = [f"p{i}" for i in range(len(data.base))]
    with (
        RegistryClient(cluster.coordinator_address) as reg,
        RetrievalClient(cluster.coordinator_address, tenant_id="t", purpose="test") as c,
    ):
        reg.apply(SPEC)
        reg.train_placement("pts_c", "v1", data.base[:2000])
        c.upsert(
            "pts",
            "v1",
            [Record(i, v) for i, v in zip(ids, data.base, strict=True)],
            batch_size=2000,
        )
        deadline = time.monotonic() + 30
        while c.search("r", data.queries[0], 10).diagnostics["shards_skipped"] == 0:
            assert time.monotonic() < deadline, "summaries never allowed a skip"
        searched = []
        for q in data.queries:
            res = c.search("r", q, 10)
            assert not res.partial
            assert [h.key.entity_id for h in res.hits] == exact_top(data.base, ids, q, 10)
            searched.append(res.diagnostics["shards_searched"])
    median = statistics.median(searched)
    print(
        f"\nshards searched per query: median {median}, mean {statistics.mean(searched):.2f}, max {max(searched)} of 8"
    )
    assert median <= 3
