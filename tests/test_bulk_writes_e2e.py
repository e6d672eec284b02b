"""Bulk writes through real processes: `RetrievalClient.upsert_matrix` →
`UpsertColumns` (coordinator) → `ShardService.UpsertColumns` (shards, two
replicas per bucket). The same records written per record and as columns are
stored byte for byte alike and answer exact searches with identical hits;
a bad row rejects the request and writes nothing; a restart loses nothing
that was acknowledged."""

from __future__ import annotations

import numpy as np
import pytest

from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import AttrValue
from core.errors import InvalidArgument
from protos.vecshard.v1.internal import shard_pb2 as spb
from protos.vecshard.v1.internal import shard_pb2_grpc
from tests.conftest import ClusterFactory
from tests.specs import route_spec

pytestmark = pytest.mark.integration

DIM = 16
N = 3000
ATTRS = {"genre": "string", "year": "int", "price": "float", "tags": "string_list"}


def _client(address: str) -> RetrievalClient:
    return RetrievalClient(address, tenant_id="t", purpose="test", timeout=60)


def _data() -> tuple[list[str], np.ndarray, dict[str, list[AttrValue | None]]]:
    rng = np.random.default_rng(11)
    ids = [f"item-{i:05d}" if i % 7 else f"é-{i}" for i in range(N)]
    vectors = rng.normal(size=(N, DIM)).astype(np.float32)
    vectors[::50] = np.round(vectors[::50])  # ties on a grid
    attributes: dict[str, list[AttrValue | None]] = {
        "genre": [["rock", "jazz", None][i % 3] for i in range(N)],
        "year": [1990 + i % 30 if i % 4 else None for i in range(N)],
        "price": [float(i) / 8 if i % 5 else None for i in range(N)],
        "tags": [("a", "b") if i % 2 else () for i in range(N)],
        "note": [f"free text {i}" if i % 9 == 0 else None for i in range(N)],  # undeclared
    }
    return ids, vectors, attributes


def test_columns_store_and_answer_exactly_what_records_do(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(num_shards=3)
    with RegistryClient(cluster.coordinator_address) as reg:
        for name in ("a", "b"):
            reg.apply(
                route_spec(
                    dim=DIM,
                    metric="cosine",
                    family=f"f{name}",
                    index=f"ix{name}",
                    route=f"r{name}",
                    replicas=2,
                    attributes=ATTRS,
                )
            )
    ids, vectors, attributes = _data()
    versions = np.arange(1, N + 1, dtype=np.int64)
    with _client(cluster.coordinator_address) as c:
        records = [
            Record(
                eid,
                vectors[i],
                attributes={k: a for k, v in attributes.items() if (a := v[i]) is not None},
                source_version=int(versions[i]),
                model_version="m7",
            )
            for i, eid in enumerate(ids)
        ]
        assert c.upsert("fa", "v1", records, batch_size=700) == (N, 0)
        written = c.upsert_matrix(
            "fb",
            "v1",
            ids,
            vectors,
            attributes=attributes,
            source_versions=versions,
            model_version="m7",
            batch_size=700,
            max_in_flight=3,
        )
        assert written == (N, 0)
        # Older rows are ignored and counted; equal versions replace.
        older = c.upsert_matrix(
            "fb", "v1", ids[1:11], vectors[1:11], source_versions=versions[1:11] - 1
        )
        assert older == (0, 10)
        assert c.upsert_matrix(
            "fb", "v1", ids[1:3], vectors[1:3], source_versions=versions[1:3]
        ) == (2, 0)
        sample = ids[::97]
        for x, y in zip(
            c.batch_get("fa", "v1", sample), c.batch_get("fb", "v1", sample), strict=True
        ):
            assert x.status == y.status == "found"
            assert x.vector is not None and y.vector is not None
            assert x.vector.tobytes() == y.vector.tobytes()
            assert (x.norm, x.source_version, x.model_version) == (
                y.norm,
                y.source_version,
                y.model_version,
            )
            assert x.attributes == y.attributes
        for q in np.random.default_rng(3).normal(size=(10, DIM)).astype(np.float32):
            ha, hb = c.search("ra", q, k=20).hits, c.search("rb", q, k=20).hits
            assert [(h.key.entity_id, h.score) for h in ha] == [
                (h.key.entity_id, h.score) for h in hb
            ]
        # A bad row rejects the whole request, naming it; nothing is written.
        bad = vectors[:5].copy()
        bad[3, 2] = np.inf
        with pytest.raises(InvalidArgument, match="NaN or Inf"):
            c.upsert_matrix("fb", "v1", [f"new{i}" for i in range(5)], bad)
        zero = np.zeros((2, DIM), np.float32)
        with pytest.raises(InvalidArgument, match=r"records\[1\] .*zero vector"):
            c.upsert_matrix("fb", "v1", ["new-a", "new-b"], np.stack([vectors[0], zero[1]]))
        with pytest.raises(InvalidArgument, match="attribute 'year'"):
            c.upsert_matrix("fb", "v1", ["new-c"], vectors[:1], attributes={"year": ["x"]})
        with pytest.raises(InvalidArgument, match=r"records\[1\] .*created_at.*nanoseconds"):
            now_ns = 1_800_000_000 * 10**9
            c.upsert_matrix("fb", "v1", ["new-d", "new-e"], vectors[:2], created_at=[0, now_ns])
        assert {
            lk.status for lk in c.batch_get("fb", "v1", ["new0", "new-a", "new-c", "new-d"])
        } == {"missing"}

    # Each shard says what its rows cost in memory, and what the process holds.
    for child in cluster.shards.values():
        assert child.ready is not None
        with cluster.shard_channel(str(child.ready["grpc"])) as channel:
            described = shard_pb2_grpc.ShardServiceStub(channel).Describe(
                spb.DescribeRequest(), timeout=30
            )
        ix = next(i for i in described.indexes if i.index.name == "ixb")
        assert ix.memory_bytes > ix.live_count * DIM * 4 > 0
        assert ix.bytes_per_vector == pytest.approx(
            ix.memory_bytes / sum(g.rows for g in ix.segments)
        )
        assert described.process_rss_bytes >= described.process_rss_anon_bytes > ix.memory_bytes

    # What was acknowledged survives a SIGKILL of a shard.
    cluster.kill_shard("shard-1")
    cluster.restart_shard("shard-1")
    with _client(cluster.coordinator_address) as c:
        found = c.batch_get("fb", "v1", ids)
        assert all(lk.status == "found" for lk in found)
