"""A request that opts out of exact reranking gets index scores calibrated
per shard onto the exact scale: the ranking stays close to the exact one and
sampled scores are exact."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.synthetic_data import gaussian_mixture
from client.errors import InvalidArgument
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from tests.conftest import ClusterFactory
from tests.specs import route_spec

pytestmark = pytest.mark.integration
SPEC = route_spec(
    dim=32, kind="hnsw", num_buckets=4, params={"M": 16, "ef_construction": 100, "ef_search": 64}
)


def test_skip_rerank_is_calibrated_and_close_to_exact(make_cluster: ClusterFactory) -> None:
    data = gaussian_mixture(n=6000, dim=32, n_clusters=20, n_queries=40, seed=2)
    cluster = make_cluster(
        num_shards=2,
        extra_env={"VECSHARD__SHARD__SEAL_ROWS": "1000", "VECSHARD__SHARD__MIN_INDEX_ROWS": "200"},
    )
    with (
        RegistryClient(cluster.coordinator_target) as reg,
        RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c,
    ):
        reg.apply(SPEC)
        c.upsert("v", "v1", [Record(f"e{i}", v) for i, v in enumerate(data.base)], batch_size=2000)
        overlaps = []
        for q in data.queries:
            exact = c.search("r", q, 10)
            approx = c.search("r", q, 10, skip_rerank=True)
            overlaps.append(len({h.key for h in exact.hits} & {h.key for h in approx.hits}) / 10)
            # the best hit's score was sampled: it is the exact canonical score
            if approx.hits[0].key == exact.hits[0].key:
                assert approx.hits[0].score == pytest.approx(exact.hits[0].score, rel=1e-6)
        assert float(np.mean(overlaps)) >= 0.8, overlaps
        # One page: its index scores set no exact boundary for a cursor.
        q = data.queries[0]
        assert approx.next_cursor == ""
        with pytest.raises(InvalidArgument, match="skip_rerank cannot continue a cursor"):
            c.search("r", q, 10, cursor=c.search("r", q, 10).next_cursor, skip_rerank=True)
