"""Every public data-plane RPC, fed mutations of a valid request through real
processes, answers with a status a caller can act on: OK or a client error
naming what was wrong — never INTERNAL, UNKNOWN or a dead server.

The valid requests are the SDK's own (recorded as it sends them); each
mutation changes one field of one: a bytes field cut, lengthened, emptied or
scrambled (the packed columns: vectors, times, values, validity, offsets), a
number at its extremes, a string emptied or odd, a repeated field one item
short or long. (Reading through what it accepted found feature rows stored
with times no clock gives — nanoseconds taken for microseconds — now refused
by `core.timestamps`.)
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf.message import Message

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import RetrievalClient
from core.filters import Range
from tests.conftest import ClusterFactory
from tests.mutations import copy_of, send_mutated
from tests.specs import route_spec, tenant_docs

pytestmark = pytest.mark.integration

T0 = 1_800_000_000 * 1_000_000
SPEC = (Path(__file__).resolve().parent.parent / "deploy/examples/50-features.yaml").read_text()


@pytest.fixture(scope="module")
def cluster(make_module_cluster: ClusterFactory) -> LocalCluster:
    c = make_module_cluster(num_shards=2)
    attrs = {"genre": "string", "year": "int", "price": "float", "tags": "string_list"}
    with RegistryClient(c.coordinator_target) as reg:
        reg.apply(SPEC)
        reg.apply(tenant_docs())
        reg.apply(route_spec(dim=8, metric="cosine", family="fam", attributes=attrs))
    return c


def client(cluster: LocalCluster) -> RetrievalClient:
    return RetrievalClient(cluster.coordinator_target, tenant_id="acme", purpose="recommendation")


def recorded_requests(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, Message]]:
    """The SDK's requests for a write, searches, a lookup and feature calls."""
    seen: list[tuple[str, Message]] = []
    send = RetrievalClient._rpc

    def record(self: RetrievalClient, name: str, request: Any, *args: Any, **kw: Any) -> Any:
        first = request[0] if isinstance(request, list) else request  # a stream: its message
        seen.append((name, copy_of(first)))
        return send(self, name, request, *args, **kw)

    monkeypatch.setattr(RetrievalClient, "_rpc", record)
    vectors = np.random.default_rng(1).normal(size=(20, 8)).astype(np.float32)
    ids = [f"i{i}" for i in range(20)]
    with client(cluster) as c:
        c.upsert_matrix(
            "fam",
            "v1",
            ids,
            vectors,
            attributes={"genre": ["a"] * 20, "year": list(range(20)), "tags": [("x",)] * 20},
        )
        c.search("r", vectors[0], k=5, filter=Range("year", gte=3))
        c.search_batch("r", vectors[:2], k=5)
        c.batch_get("fam", "v1", ids[:3])
        c.put_features("item_stats", "v1", [(("item", "x"), T0, {"item_ctr": 0.5})])
        c.put_features("user_profile", "v1", [(("user", "u1"), T0, {"age_bucket": "18-24"})])
        c.get_features("home_ranker", "v1", [("user", "u1"), ("item", "x")])
    monkeypatch.undo()
    return [(n, r) for n, r in seen if n != "DescribeRoute"]


def test_mutated_requests_get_an_actionable_status(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = recorded_requests(cluster, monkeypatch)
    assert {n for n, _ in requests} == {
        "UpsertColumns", "Search", "SearchBatch", "BatchGetEmbeddings", "PutFeatures",
        "GetFeatures",
    }  # fmt: skip
    rng = random.Random(7)
    refused: set[str] = set()
    wrong: list[str] = []
    with client(cluster) as c:
        stub, metadata = c._stubs[0], c._conn.metadata
        for name, valid in requests:
            streamed = name == "PutFeatures"
            codes, bad = send_mutated(getattr(stub, name), valid, metadata, streamed, rng)
            wrong += [f"{name} {b}" for b in bad]
            refused |= {name} if codes - {"OK"} else set()
        assert not wrong, "\n".join(wrong)
        # Each RPC refused some mutation (the mutations reach its checks) ...
        assert refused == {n for n, _ in requests}
        # ... and every server still answers.
        assert len(c.search("r", np.ones(8, np.float32), k=3).hits) == 3
