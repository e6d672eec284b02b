"""SearchBatch and SearchDebug through real processes."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.errors import InvalidArgument
from core.filters import Eq
from core.wire import filter_to_pb
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1 import retrieval_pb2_grpc
from tests.conftest import ClusterFactory
from tests.specs import route_spec

pytestmark = pytest.mark.integration
SPEC = route_spec(dim=8, metric="inner_product", num_buckets=6, attributes={"colour": "string"})


def test_search_batch_and_debug(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(num_shards=3)
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(SPEC)
    rng = np.random.default_rng(0)
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c:
        c.upsert(
            "v",
            "v1",
            [
                Record(
                    f"e{i}",
                    rng.normal(size=8),
                    attributes={"colour": "red" if i % 10 == 0 else "blue"},
                )
                for i in range(500)
            ],
        )
        queries = [rng.normal(size=8).astype(np.float32) for _ in range(12)]
        single = [[(h.key.entity_id, h.score) for h in c.search("r", q, 5).hits] for q in queries]
        # The SDK's batch form: packed hits, 12 queries in calls of 5, 5 and 2.
        answers = c.search_batch("r", np.stack(queries), 5, searches_per_call=5)
        assert [
            list(zip(a.hits.entity_ids, a.hits.scores.tolist(), strict=True)) for a in answers
        ] == single
        for q, a in zip(queries[:3], answers[:3], strict=True):
            one = c.search("r", q, 5)
            assert a.hits.keys == [h.key for h in one.hits]
            assert a.hits.shard_ids == [h.shard_id for h in one.hits]
            assert (a.route, a.index, a.metric, a.partial) == (
                one.route,
                one.index,
                one.metric,
                False,
            )
            assert bool(a.next_cursor) == bool(one.next_cursor)
        filtered = c.search_batch("r", np.stack(queries[:2]), 3, filter=Eq("colour", "red"))
        assert [a.hits.entity_ids for a in filtered] == [
            [h.key.entity_id for h in c.search("r", q, 3, filter=Eq("colour", "red")).hits]
            for q in queries[:2]
        ]
        for bad, match in (
            (np.ones((2, 7), np.float32), r"shape \(2, 7\), expected \(queries, 8\)"),
            (np.ones(8, np.float32), r"expected \(queries, 8\)"),
            (
                np.stack([queries[0], np.full(8, np.nan, np.float32)]),
                "query vector 1: contains NaN",
            ),
        ):
            with pytest.raises(InvalidArgument, match=match):
                c.search_batch("r", bad, 5)
        with pytest.raises(InvalidArgument, match="k=0"):
            c.search_batch("r", np.stack(queries), 0)
        assert c.search_batch("r", np.zeros((0, 8), np.float32), 5) == []
    access = cpb.AccessContext(tenant_id="t", purpose="p")
    with cluster.channel() as ch:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(ch)
        batch = stub.SearchBatch(
            pb.SearchBatchRequest(
                requests=[
                    pb.SearchRequest(route="r", access=access, query_vector=q.tobytes(), k=5)
                    for q in queries
                ]
            )
        )
        assert [[(h.key.entity_id, h.score) for h in r.hits] for r in batch.responses] == single
        with pytest.raises(grpc.RpcError) as err:
            stub.SearchBatch(
                pb.SearchBatchRequest(
                    requests=[
                        pb.SearchRequest(
                            route="r", access=access, query_vector=queries[0].tobytes(), k=5
                        )
                    ]
                    * 300
                )
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 256" in (
            err.value.details() or ""
        )
        dbg = stub.SearchDebug(
            pb.SearchRequest(
                route="r",
                access=access,
                query_vector=queries[0].tobytes(),
                k=5,
                filter=filter_to_pb(Eq("colour", "red")),
            )
        )
    assert json.loads(dbg.resolved_bundle_json)["index"] == {"name": "ix", "version": "v1"}
    assert {s.shard_id for s in dbg.shards} == {"shard-0", "shard-1", "shard-2"}
    assert all(s.outcome == "searched" and s.latency_ms > 0 for s in dbg.shards)
    assert sum(s.candidates for s in dbg.shards) == 50  # the red ones
    assert dbg.filter_selectivity == pytest.approx(0.1)
    assert all(h.key.entity_id.endswith("0") for h in dbg.response.hits)
