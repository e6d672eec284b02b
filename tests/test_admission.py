"""Load shedding (found in review): lookups were never shed — 10,000-key
BatchGetEmbeddings were all taken past the coordinator's in-flight limit —
and a batch heavier than the limit was shed for good, even on an idle
coordinator. And every shed, whatever refused it, is counted by its reason in
vecshard_shed_total (VecshardShedding): the audit backlog's and the per-shard
bound's were not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from coordinator.admission import Admission
from coordinator.audit import AuditTrail
from coordinator.config import Limits
from coordinator.replicas import ReplicaTracker
from coordinator.service import RetrievalEngine
from coordinator.servicer import RetrievalServicer
from core.audit_chain import ChainWriter
from core.errors import ResourceExhausted
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb
from tests.inmemory import InMemoryShard
from tests.static_registry import FAMILY, registry_for
from tests.test_coordinator_writes import ME, RECORDS


class _Context:
    def time_remaining(self) -> float:
        return 5.0


def test_lookups_are_shed_when_the_coordinator_is_full() -> None:
    reg = registry_for(["a"], [("a",)])
    shard = InMemoryShard("a", registry=reg)
    engine = RetrievalEngine(reg, lambda s, a: shard, limits=Limits(max_in_flight_requests=1))
    servicer = RetrievalServicer(engine, None, 5.0)  # type: ignore[arg-type]  # no feature engine asked
    req = pb.BatchGetEmbeddingsRequest(
        access=cpb.AccessContext(tenant_id=ME.tenant_id, purpose=ME.purpose),
        embedding_name=FAMILY.name,
        embedding_version=FAMILY.version,
        entity_ids=[r.key.entity_id for r in RECORDS],
        columnar=True,
    )

    async def lookups() -> None:
        await engine.upsert(ME, FAMILY, RECORDS, 5.0)
        async with engine.admission():  # the coordinator is full
            with pytest.raises(ResourceExhausted):
                await servicer.BatchGetEmbeddings(req, _Context())  # type: ignore[arg-type]
        answer = await servicer.BatchGetEmbeddings(req, _Context())  # type: ignore[arg-type]
        assert answer.columns.status == bytes([1]) * len(RECORDS)  # found, once admitted

    asyncio.run(lookups())


def test_a_batch_heavier_than_the_limit_runs_alone() -> None:
    admission = Admission(Limits(max_in_flight_requests=100))

    async def batches() -> None:
        async with admission.admit(128):  # idle: admitted alone
            assert admission.in_flight == 128
            with pytest.raises(ResourceExhausted):
                async with admission.admit(1):
                    pass
        async with admission.admit(60), admission.admit(40):
            with pytest.raises(ResourceExhausted):
                async with admission.admit(128):
                    pass
        assert admission.in_flight == 0

    asyncio.run(batches())


def _full_admission(tmp_path: Path) -> Callable[[], None]:
    admission = Admission(Limits(max_in_flight_requests=1))

    async def shed() -> None:
        async with admission.admit(1), admission.admit(1):
            pass

    return lambda: asyncio.run(shed())


def _audit_backlog(tmp_path: Path) -> Callable[[], None]:
    trail = AuditTrail(ChainWriter(tmp_path, b"k" * 32), max_backlog=0)

    def shed() -> None:
        try:
            trail.ready()
        finally:
            trail.close()

    return shed


def _busy_shard(tmp_path: Path) -> Callable[[], None]:
    tracker = ReplicaTracker(max_in_flight_per_shard=1)
    tracker.acquire("s0")
    return lambda: tracker.acquire("s0")


@pytest.mark.parametrize(
    ("reason", "shedder"),
    [
        ("coordinator_in_flight", _full_admission),
        ("audit_backlog", _audit_backlog),
        ("shard_in_flight", _busy_shard),
    ],
)
def test_every_shed_is_counted_by_its_reason(
    tmp_path: Path, reason: str, shedder: Callable[[Path], Callable[[], None]]
) -> None:
    def counted() -> float:
        return REGISTRY.get_sample_value("vecshard_shed_total", {"reason": reason}) or 0.0

    shed = shedder(tmp_path)
    before = counted()
    with pytest.raises(ResourceExhausted):
        shed()
    assert counted() - before == 1
