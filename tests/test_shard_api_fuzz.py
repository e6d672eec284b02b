"""A shard must not trust its caller: every internal RPC a coordinator makes
(`ShardService`, `FeatureShardService`), fed mutations of the coordinator's
own requests through a real shard process, answers OK or a status naming
what was wrong — never INTERNAL, UNKNOWN or a dead shard.

The valid requests are recorded as `RemoteShard` sends them (with their
vouches); the mutations are `tests/mutations.py`'s."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.message import Message

from coordinator.model import GroupFetch, ShardQuery
from coordinator.remote_shard import RemoteShard
from core import runtime as serving
from protos.vecshard.v1.internal import features_pb2_grpc, shard_pb2_grpc
from protos.vecshard.v1.internal import shard_pb2 as spb
from registry.feature_batches import rows_to_batch
from registry.features import GroupRow
from registry.watcher import SnapshotCache
from tests import shard_contract_support as support
from tests.mutations import copy_of, send_mutated
from tests.shard_contract_support import (
    SHARD,
    T0,
    TIMEOUT,
    Names,
    Vouching,
    as_columns,
    catalogue,
    key,
)

pytestmark = pytest.mark.integration

cluster, registry, names = support.cluster, support.registry, support.names


class Recorder:
    """Stands in for a generated stub: records each call, then makes it."""

    def __init__(self, stub: Any, seen: list[tuple[str, Message, Any]]) -> None:
        self._stub, self._seen = stub, seen

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(request: Any, **kw: Any) -> Any:
            if isinstance(request, Message):
                self._seen.append((name, copy_of(request), kw.get("metadata")))
                return method(request, **kw)
            messages = list(request)  # a client stream: its first message stands for it
            self._seen.append((name, copy_of(messages[0]), kw.get("metadata")))
            return method(iter(messages), **kw)

        return call


def test_mutated_internal_requests_get_an_actionable_status(
    cluster: Any, registry: SnapshotCache, names: Names
) -> None:
    address = registry.snapshot.shards[SHARD].address
    seen: list[tuple[str, Message, Any]] = []
    rows = catalogue(6)
    schema = registry.snapshot.feature_catalog.schema(names.group)
    label, ctr = schema.names

    async def record() -> None:
        remote = RemoteShard(SHARD, address, credentials=cluster.peer_credentials())
        remote.stub = Recorder(remote.stub, seen)  # type: ignore[assignment]
        remote.features = Recorder(remote.features, seen)  # type: ignore[assignment]
        shard = Vouching(remote)
        try:
            await shard.upsert(names.index, [(r, 0) for r in rows[:3]], TIMEOUT)
            buckets = np.zeros(len(rows) - 3, dtype=np.int64)
            await shard.upsert_columns(names.index, "t", as_columns(rows[3:]), buckets, TIMEOUT)
            await shard.search(names.index, [ShardQuery(rows[0].vector, 3, "t")], TIMEOUT)
            await shard.batch_get(names.index, [key("e00"), key("e01")], True, TIMEOUT)
            await shard.delete(names.index, [key("e05")], 2, TIMEOUT)
            feature_rows = [GroupRow(key("u1", "t")._replace(entity_type="user"), T0, T0,
                                     {label: "gold", ctr: 0.5})]  # fmt: skip
            await shard.put_features(names.group, rows_to_batch(schema, feature_rows), TIMEOUT)
            fetch = GroupFetch(names.group, (label, ctr), ["u1", "u2"])
            await shard.get_feature_columns("t", [fetch], T0, True, TIMEOUT)
            await remote.describe()
            await remote.check_recall(names.index, 3, 4, 1, TIMEOUT)
        finally:
            await shard.close()

    asyncio.run(record())
    assert {n for n, _, _ in seen} >= {
        "Upsert", "UpsertColumns", "SearchPacked", "BatchGet", "Delete", "PutFeatures",
        "GetFeatureColumns",
    }, sorted({n for n, _, _ in seen})  # fmt: skip
    rng = random.Random(3)
    refused: set[str] = set()
    wrong: list[str] = []
    with grpc.secure_channel(address, cluster.peer_credentials(), serving.grpc_options()) as ch:
        shard_stub = shard_pb2_grpc.ShardServiceStub(ch)
        stubs: list[Any] = [shard_stub, features_pb2_grpc.FeatureShardServiceStub(ch)]
        for name, valid, metadata in seen:
            call = next(getattr(s, name) for s in stubs if hasattr(s, name))
            streamed = name in ("Upsert", "UpsertColumns", "PutFeatures")
            codes, bad = send_mutated(call, valid, metadata, streamed, rng)
            wrong += [f"{name} {b}" for b in bad]
            refused |= {name} if codes - {"OK"} else set()
        assert not wrong, "\n".join(wrong)
        # Each RPC refused some mutation, and the shard still answers.
        assert refused == {n for n, _, _ in seen}
        name, valid, metadata = next(r for r in seen if r[0] == "SearchPacked")
        assert shard_stub.SearchPacked(valid, timeout=20, metadata=metadata).counts


def test_a_summary_lease_past_its_bound_is_refused(cluster: Any, registry: SnapshotCache) -> None:
    """A write a live summary misses is acknowledged when the summary's lease
    has expired: a lease of an hour held writes (and RPC threads) for an hour;
    one of 1e308 or inf failed every such write until the shard restarted
    (past `time.sleep`'s range). Found by the test above (Describe's
    mutations were all served)."""
    address = registry.snapshot.shards[SHARD].address
    with grpc.secure_channel(address, cluster.peer_credentials(), serving.grpc_options()) as ch:
        stub = shard_pb2_grpc.ShardServiceStub(ch)
        for lease in (float("inf"), 1e308, float("nan"), -1.0, 10.5):
            request = spb.DescribeRequest(include_summaries=True, summary_lease_seconds=lease)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Describe(request, timeout=TIMEOUT)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "expected more than 0 and at most 10 s" in (refused.value.details() or "")
        request = spb.DescribeRequest(include_summaries=True, summary_lease_seconds=10.0)
        assert stub.Describe(request, timeout=TIMEOUT).indexes
