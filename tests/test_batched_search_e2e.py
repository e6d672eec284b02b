"""Adaptive batching through real processes (issue 12): a batch mixing routes,
tenants, filters, k and cursors answers exactly what the same queries answer
one by one; cancelling one caller leaves its batch-mates' answers intact;
with one shard delayed, queries for the other shards keep their latency."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import grpc.aio
import numpy as np
import pytest

from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.filters import Range
from core.hits_wire import packed_hits_from_pb
from core.wire import filter_to_pb, key_to_pb
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1 import retrieval_pb2_grpc
from tests.conftest import ClusterFactory
from tests.specs import route_spec

pytestmark = pytest.mark.integration
DIM = 8
TENANTS = ("t1", "t2")


def spec(name: str, shards: list[str] | None = None) -> str:
    """Family, index, bundle and route `name`; the index on `shards` (all if None)."""
    docs = [
        json.loads(d)
        for d in route_spec(
            dim=DIM,
            family=f"{name}_f",
            index=f"{name}_ix",
            route=name,
            num_buckets=4,
            attributes={"price": "float"},
        ).split("\n---\n")
    ]
    if shards is not None:
        for d in docs:
            if d["kind"] == "IndexVersion":
                d["shards"] = shards
    return "\n---\n".join(json.dumps(d) for d in docs)


def load(address: str, family: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for tenant in TENANTS:
        with RetrievalClient(address, tenant_id=tenant, purpose="test") as c:
            grid = rng.integers(-2, 3, size=(n, DIM)).astype(np.float32)  # ties on purpose
            c.upsert(
                family,
                "v1",
                [
                    Record(f"{tenant}-{i}", grid[i], attributes={"price": float(i % 10)})
                    for i in range(n)
                ],
            )


def request(
    route: str, tenant: str, q: np.ndarray, k: int, flt: Range | None = None, cursor: str = ""
) -> pb.SearchRequest:
    return pb.SearchRequest(
        route=route,
        access=cpb.AccessContext(tenant_id=tenant, purpose="test"),
        query_vector=q.astype("<f4").tobytes(),
        k=k,
        filter=filter_to_pb(flt),
        cursor=cursor,
    )


def answer(resp: pb.SearchResponse) -> list[bytes]:
    """The hits, byte for byte, and whether a page follows. (A cursor's bytes
    may differ: it pins the shards a search skipped by bound, which depends
    on how fresh the coordinator's summaries were.)"""
    return [h.SerializeToString(deterministic=True) for h in resp.hits] + [
        bytes([bool(resp.next_cursor), resp.partial])
    ]


def unpacked(resp: pb.SearchResponse) -> pb.SearchResponse:
    """A packed answer with its hits as Hit messages again (rank = position)."""
    hits = packed_hits_from_pb(resp.packed_hits)
    out = pb.SearchResponse()
    out.CopyFrom(resp)
    out.ClearField("packed_hits")
    for i, (key, score, shard) in enumerate(
        zip(hits.keys, hits.scores.tolist(), hits.shard_ids, strict=True)
    ):
        out.hits.add(key=key_to_pb(key), score=score, rank=i, shard_id=shard)
    return out


def test_a_mixed_batch_answers_exactly_what_one_by_one_does(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(num_shards=2)
    with RegistryClient(cluster.coordinator_address) as reg:
        reg.apply(spec("ra"))
        reg.apply(spec("rb"))
    load(cluster.coordinator_address, "ra_f", 60, 1)
    load(cluster.coordinator_address, "rb_f", 60, 2)
    rng = np.random.default_rng(3)
    requests = []
    with cluster.channel() as ch:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(ch)
        for i in range(48):
            route, tenant = ("ra", "rb")[i % 2], TENANTS[(i // 2) % 2]
            q = rng.integers(-2, 3, size=DIM).astype(np.float32)
            flt = Range("price", lt=float(rng.integers(3, 10))) if i % 3 == 0 else None
            first = request(route, tenant, q, int(rng.integers(1, 12)), flt)
            requests.append(first)
            if i % 4 == 0:  # a later page of the same search
                cursor = stub.Search(first).next_cursor
                if cursor:
                    requests.append(request(route, tenant, q, first.k, flt, cursor))
        one_by_one = [answer(stub.Search(r)) for r in requests]
        batched = stub.SearchBatch(pb.SearchBatchRequest(requests=requests))
        assert [answer(r) for r in batched.responses] == one_by_one
        # Packed hits (what the SDK's search_batch asks for): the same hits as arrays.
        packed = stub.SearchBatch(pb.SearchBatchRequest(requests=requests, packed_hits=True))
        assert all(not r.hits and r.HasField("packed_hits") for r in packed.responses)
        assert [answer(unpacked(r)) for r in packed.responses] == one_by_one

        async def concurrently(order: list[int]) -> dict[int, list[bytes]]:
            async with cluster.aio_channel() as ach:
                astub = retrieval_pb2_grpc.RetrievalServiceStub(ach)
                got = await asyncio.gather(*(astub.Search(requests[i]) for i in order))
            return {i: answer(r) for i, r in zip(order, got, strict=True)}

        for seed in range(3):  # any arrival order: the same answers
            order = list(np.random.default_rng(seed).permutation(len(requests)))
            got = asyncio.run(concurrently([int(i) for i in order]))
            assert [got[i] for i in range(len(requests))] == one_by_one


def test_cancelling_one_caller_leaves_its_batch_mates_intact(make_cluster: ClusterFactory) -> None:
    # Every shard call takes 0.3 s: while one is out, the others queue and
    # leave together, so the callers below share batches.
    cluster = make_cluster(
        num_shards=2,
        shard_env={s: {"VECSHARD_FAULTS": "Search=delay:0.3"} for s in ("shard-0", "shard-1")},
    )
    with RegistryClient(cluster.coordinator_address) as reg:
        reg.apply(spec("ra"))
    load(cluster.coordinator_address, "ra_f", 40, 5)
    rng = np.random.default_rng(6)
    requests = [
        request("ra", TENANTS[i % 2], rng.integers(-2, 3, size=DIM).astype(np.float32), 5)
        for i in range(12)
    ]

    async def scenario() -> tuple[list[list[bytes]], list[object]]:
        async with cluster.aio_channel() as ch:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(ch)
            alone = [answer(await stub.Search(r, timeout=10)) for r in requests]
            calls = [stub.Search(r, timeout=10) for r in requests]
            await asyncio.sleep(0.05)  # the first went out; the rest wait in the batch queue
            calls[3].cancel()
            calls[7].cancel()
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        return alone, outcomes

    alone, outcomes = asyncio.run(scenario())
    for i, (want, got) in enumerate(zip(alone, outcomes, strict=True)):
        if i in (3, 7):
            assert isinstance(got, asyncio.CancelledError | grpc.aio.AioRpcError)
        else:
            assert isinstance(got, pb.SearchResponse), got
            assert not got.partial and answer(got) == want


def test_a_delayed_shard_does_not_hold_queries_for_the_other_shards(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(
        num_shards=3, shard_env={"shard-0": {"VECSHARD_FAULTS": "Search=delay:2.0"}}
    )
    with RegistryClient(cluster.coordinator_address) as reg:
        reg.apply(spec("slow", ["shard-0"]))
        reg.apply(spec("fast", ["shard-1", "shard-2"]))
    load(cluster.coordinator_address, "slow_f", 20, 7)
    load(cluster.coordinator_address, "fast_f", 20, 8)
    q = np.ones(DIM, np.float32)
    with RetrievalClient(cluster.coordinator_address, tenant_id="t1", purpose="test") as c:
        for _ in range(5):  # warm channels; the normal latency of the fast route
            c.search("fast", q, 5)
        t0 = time.monotonic()
        for _ in range(5):
            c.search("fast", q, 5)
        normal = (time.monotonic() - t0) / 5

    async def scenario() -> tuple[list[float], int]:
        async with cluster.aio_channel() as ch:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(ch)
            slow = [
                asyncio.ensure_future(stub.Search(request("slow", "t1", q, 5), timeout=10))
                for _ in range(8)
            ]
            await asyncio.sleep(0.1)  # the slow shard's calls are out, more queued behind them
            latencies = []
            for _ in range(10):
                t = time.monotonic()
                resp = await stub.Search(request("fast", "t1", q, 5), timeout=10)
                latencies.append(time.monotonic() - t)
                assert len(resp.hits) == 5 and not resp.partial
            done = sum(f.done() for f in slow)
            await asyncio.gather(*slow)
        return latencies, done

    latencies, slow_done = asyncio.run(scenario())
    assert slow_done == 0, "the delayed shard answered early: the test proves nothing"
    # Normal latency is milliseconds; waiting on the delayed shard would be seconds.
    assert max(latencies) < max(0.5, 20 * normal), (latencies, normal)
