"""Coverage is measured on the index version evaluated (real processes): a
new index version of an embedding version that already serves (another
kind being tried) holds none of the rows written before it, and a lookup
of the embedding version reads the serving one — measured that way, an
empty version had coverage 1.0 and passed its min_coverage gate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.evaluation_client import EvaluationClient
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import VersionRef
from core.errors import NotFound
from offline.evaluation import EvaluateJob, Evaluation
from tests.conftest import ClusterFactory
from tests.model_change_support import DIM, PURPOSE, write_parquet
from tests.specs import tenant_docs

pytestmark = pytest.mark.integration
N = 120
EMBEDDING = {"name": "items", "version": "v1"}


def _index(version: str, status: str, **spec: object) -> dict[str, object]:
    return {
        "kind": "IndexVersion",
        "spec": {
            "name": "ix",
            "version": version,
            "embedding": EMBEDDING,
            "kind": "flat",
            "num_buckets": 4,
            "status": status,
            **spec,
        },
    }


@pytest.fixture()
def cluster(make_cluster: ClusterFactory) -> Iterator[LocalCluster]:
    yield make_cluster(num_shards=1)


def test_coverage_counts_the_rows_of_the_evaluated_index_version(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    target = cluster.coordinator_target
    ids = [f"item-{i:04d}" for i in range(N)]
    vectors = np.random.default_rng(3).normal(size=(N, DIM)).astype(np.float32)
    with RegistryClient(target) as reg:
        reg.apply(
            [
                *tenant_docs(),
                {
                    "kind": "EmbeddingFamily",
                    "spec": {
                        "name": "items",
                        "entity_type": "item",
                        "dimension": DIM,
                        "metric": "l2",
                    },
                },
                {"kind": "EmbeddingVersion", "spec": {**EMBEDDING, "status": "ready"}},
                _index("flat", "ready"),
            ]
        )
        reg.promote("IndexVersion", "ix", "flat", "production")
    with RetrievalClient(target, tenant_id="acme", purpose=PURPOSE) as c:
        assert (
            c.upsert("items", "v1", [Record(i, v) for i, v in zip(ids, vectors, strict=True)])[0]
            == N
        )
    # Created after the rows were written, never backfilled: it holds nothing.
    with RegistryClient(target) as reg:
        reg.apply([_index("trial", "building", gates={"k": 10, "min_coverage": 0.99})])
    src = tmp_path / "src"
    write_parquet(src, ids, vectors, version=time.time_ns() // 1000)
    job = EvaluateJob(VersionRef("ix", "trial"), source=src, recall_sample_per_shard=10)

    evaluation, failures, _ = Evaluation(target, job).run()
    assert evaluation.coverage == 0.0
    assert evaluation.coverage_by_tenant == {"acme": 0.0}
    assert any("coverage" in f for f in failures), failures

    with EvaluationClient(target, purpose=PURPOSE) as ev:
        held = ev.lookup_index("ix@flat", "acme", ids[:3], include_vectors=True)
        assert held.statuses() == ["found"] * 3
        np.testing.assert_array_equal(held.vectors, vectors[:3])
        assert ev.lookup_index("ix@trial", "acme", ids[:3]).statuses() == ["missing"] * 3
        with pytest.raises(NotFound):
            ev.lookup_index("ix@nope", "acme", ids[:3])

    # Written again, the rows reach every index version of the embedding
    # version, the trial one too: now it covers them.
    with RetrievalClient(target, tenant_id="acme", purpose=PURPOSE) as c:
        assert (
            c.upsert("items", "v1", [Record(i, v) for i, v in zip(ids, vectors, strict=True)])[0]
            == N
        )
    evaluation, failures, _ = Evaluation(target, job).run()
    assert evaluation.coverage == 1.0
    assert not [f for f in failures if "coverage" in f], failures
