"""The RPCs the data-plane fuzz test leaves out — the registry's admin API,
erasure, evaluation, and the public Upsert, Delete, DescribeRoute and
SearchDebug — fed mutations of a valid request through real processes: every
answer is OK or a client error naming what was wrong, never INTERNAL,
UNKNOWN or a dead server (`tests/mutations.py` says what a mutation is).

The valid requests are the SDK's own, recorded as it sends them. Requests
that change state (a promotion to the status the version has, a switch to
the bundle the route serves, a shard set to serving) are chosen so that the
valid one changes nothing; their mutations may change something, and must
still answer with an actionable status.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from google.protobuf.message import Message

from cli.local_cluster import LocalCluster
from client.erasure_client import ErasureClient
from client.evaluation_client import EvaluationClient
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import EntityKey
from core.errors import InvalidArgument, NotFound
from protos.vecshard.v1 import registry_pb2
from tests.conftest import ClusterFactory
from tests.mutations import ADMIN_ACTIONABLE, copy_of, send_mutated
from tests.specs import route_spec

pytestmark = pytest.mark.integration

DIM = 8


@pytest.fixture(scope="module")
def cluster(make_module_cluster: ClusterFactory) -> LocalCluster:
    c = make_module_cluster(num_shards=2)
    with RegistryClient(c.coordinator_target) as reg:
        reg.apply(route_spec(dim=DIM, metric="cosine", family="fam", attributes={"year": "int"}))
        reg.apply(
            route_spec(dim=DIM, family="pts", index="pts_c", route="cr", placement="centroid")
        )
        # Centroids are trained once: the recorded training is sent again to
        # this untrained version of the same index.
        v1 = reg.get("IndexVersion", "pts_c", "v1").spec
        reg.apply([{"kind": "IndexVersion", "spec": {**v1, "version": "v2", "status": "building"}}])
    return c


def _record(monkeypatch: pytest.MonkeyPatch, seen: list[tuple[str, Any, Message]]) -> None:
    """Every SDK client's `_rpc`: (its stub, the RPC, the request) kept."""
    for cls in (RegistryClient, RetrievalClient, ErasureClient, EvaluationClient):
        send = cls._rpc

        def record(
            self: Any, name: str, request: Any, *a: Any, _send: Any = send, **kw: Any
        ) -> Any:
            seen.append((self._stubs[0], name, copy_of(request)))
            return _send(self, name, request, *a, **kw)

        monkeypatch.setattr(cls, "_rpc", record)


@pytest.fixture(scope="module")
def recorded(cluster: LocalCluster) -> Iterator[tuple[list[tuple[str, Any, Message]], Any]]:
    """The SDK's admin, erasure, evaluation and record-form requests, and
    the metadata its connection sends (credentials)."""
    seen: list[tuple[str, Any, Message]] = []
    target = cluster.coordinator_target
    vectors = np.random.default_rng(3).normal(size=(20, DIM)).astype(np.float32)
    with pytest.MonkeyPatch.context() as mp:
        _record(mp, seen)
        with (
            RegistryClient(target) as reg,
            RetrievalClient(target, tenant_id="acme", purpose="recommendation") as c,
            ErasureClient(target) as erasure,
            EvaluationClient(target) as evaluation,
        ):
            reg.train_placement("pts_c", "v1", np.eye(DIM, dtype=np.float32).repeat(4, 0))
            c.upsert("fam", "v1", [Record(f"i{i}", v, {"year": i}) for i, v in enumerate(vectors)])
            c.describe_route("r", refresh=True)
            c.delete("fam", "v1", ["i19"])
            reg.get("IndexVersion", "ix", "v1")
            reg.list("Route")
            reg.history("r")
            reg.check_compat("fam@v1", "ix@v1")
            reg.status()
            current = reg.get("IndexVersion", "ix", "v1").spec["status"]
            reg.promote("IndexVersion", "ix", "v1", current)
            reg.switch_route("r", "r_bundle")
            reg.set_shard_state("shard-0", "serving")
            subject = EntityKey("acme", "item", "i18")
            plan = erasure.plan(subject)
            erasure.verify(subject, plan.copies, scan_files=False)
            evaluation.search_index("ix@v1", "acme", vectors[:2], 3)
            evaluation.check_recall("ix@v1", 3, 2)
            evaluation.lookup_index("ix@v1", "acme", ["i1", "i2"])
            mp.undo()
            for _, _, request in seen:
                if isinstance(request, registry_pb2.TrainPlacementRequest):
                    request.index_version = "v2"
            # The clients stay open: the test sends on their stubs.
            yield seen, c._conn.metadata


def test_mutated_admin_requests_get_an_actionable_status(
    cluster: LocalCluster, recorded: tuple[list[tuple[str, Any, Message]], Any]
) -> None:
    requests, metadata = recorded
    names = [n for _, n, _ in requests]
    assert set(names) >= {
        "TrainPlacement", "Upsert", "DescribeRoute", "Delete", "Get", "List", "History",
        "CheckCompat", "Status", "Promote", "SwitchRoute", "SetShardState", "PlanErasure",
        "VerifyErasure", "SearchIndex", "CheckRecall", "LookupIndex",
    }  # fmt: skip
    rng = random.Random(11)
    refused: set[str] = set()
    wrong: list[str] = []
    once: set[str] = set()
    for stub, name, valid in requests:
        if name in once:
            continue
        once.add(name)
        codes, bad = send_mutated(
            getattr(stub, name), valid, metadata, False, rng, ADMIN_ACTIONABLE
        )
        wrong += [f"{name} {b}" for b in bad]
        refused |= {name} if codes - {"OK"} else set()
    assert not wrong, "\n".join(wrong)
    # Each RPC that takes arguments refused some mutation (the mutations
    # reach its checks) ...
    assert refused == once - {"Status"}
    # ... and every server still answers.
    with RetrievalClient(
        cluster.coordinator_target, tenant_id="acme", purpose="recommendation"
    ) as c:
        assert len(c.search("r", np.ones(DIM, np.float32), k=3).hits) == 3


def test_an_erasure_of_an_unknown_entity_type_and_an_oversized_recall_sample_are_refused(
    cluster: LocalCluster,
) -> None:
    """Both answered OK, found by the test above: an erasure of a mistyped
    entity type planned nothing, erased nothing and verified clean — an
    erasure reported done that never happened; a recall check's sample of
    2**32 - 1 was passed to every shard, each to search that many of its
    vectors exactly."""
    target = cluster.coordinator_target
    with ErasureClient(target) as erasure, EvaluationClient(target) as evaluation:
        for call in (erasure.plan, erasure.erase, erasure.purge):
            with pytest.raises(
                NotFound, match=r"entity type 'itme': .* expected one of \['item'\]"
            ):
                call(EntityKey("acme", "itme", "i1"))
        with pytest.raises(NotFound, match="entity type 'itme'"):
            erasure.verify(EntityKey("acme", "itme", "i1"), [], scan_files=False)
        assert "ix@v1" in erasure.plan(EntityKey("acme", "item", "i1")).index_versions
        with pytest.raises(InvalidArgument, match=r"sample_per_shard=4294967295: expected 1\.\."):
            evaluation.check_recall("ix@v1", 3, 2**32 - 1)
