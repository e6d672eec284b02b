"""Crash test through a real shard process: SIGKILL it repeatedly while a
writer streams upserts (per record and as columns), overwrites and deletes (with seals and compactions
running underneath: tiny thresholds), restart it each time, and check that
every acknowledged write is present exactly once and every acknowledged
delete absent. A write in flight when the shard died may have landed or not;
both outcomes are accepted for it, nothing else."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from core.columns_wire import record_columns_to_pb
from core.domain import Metric
from core.record_columns import PackedStrings, RecordColumns
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1.internal import shard_pb2 as pb
from protos.vecshard.v1.internal import shard_pb2_grpc
from registry.model import IndexKind
from registry.placement import bucket_of
from tests.conftest import ClusterFactory
from tests.test_shard_recall import (
    BUCKETS,
    TENANT,
    ref,
    register,
    search,
    shard_address,
    stub,
    upsert_batch,
)

pytestmark = pytest.mark.integration

DIM = 16
KILLS = 5
OPS_BETWEEN_KILLS = 25
ABSENT = b""  # the state of a key that is deleted or was never written


def upsert_columns_batch(
    s: shard_pb2_grpc.ShardServiceStub,
    index: str,
    ids: list[str],
    vectors: np.ndarray,
    source_version: int,
) -> pb.UpsertAck:
    records = RecordColumns(
        PackedStrings.of(ids),
        vectors,
        np.full(len(ids), source_version, np.int64),
        np.zeros(len(ids), np.int64),
        entity_type="item",
    )
    batch = pb.UpsertColumnsBatch(
        index=ref(index),
        tenant_id=TENANT,
        records=record_columns_to_pb(records),
        buckets=np.array([bucket_of(TENANT, i, BUCKETS) for i in ids], "<u4").tobytes(),
    )
    return s.UpsertColumns(iter([batch]), timeout=30)


@dataclass
class Model:
    """Per key, the states a correct shard may show: the last acknowledged
    one, plus those of writes that were in flight when the shard died."""

    states: dict[str, set[bytes]] = field(default_factory=dict)
    acked_ops: int = 0
    in_doubt: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def acked(self, changes: dict[str, bytes]) -> None:
        with self.cond:
            for key, state in changes.items():
                self.states[key] = {state}
            self.acked_ops += 1
            self.cond.notify_all()

    def doubtful(self, changes: dict[str, bytes]) -> None:
        with self.cond:
            for key, state in changes.items():
                self.states[key] = self.states.get(key, {ABSENT}) | {state}
            self.in_doubt += 1


class Writer(threading.Thread):
    def __init__(self, cluster: LocalCluster, model: Model) -> None:
        super().__init__(name="writer", daemon=True)
        self.cluster, self.model = cluster, model
        self.stop = threading.Event()
        # Set while the shard is up at `address`; cleared before every kill.
        self.up = threading.Event()
        self.address = shard_address(cluster)
        self.up.set()
        self.error: BaseException | None = None
        self.rng = np.random.default_rng(2024)
        self.next_id = 0
        self.version = 0

    def run(self) -> None:
        current = (self.address, stub(self.cluster, self.address))
        try:
            while not self.stop.is_set():
                self.up.wait()
                if current[0] != self.address:
                    current = (self.address, stub(self.cluster, self.address))
                self.one_op(current[1])
        except BaseException as exc:  # reported by the test
            self.error = exc

    def one_op(self, s) -> None:
        self.version += 1
        known = list(self.model.states)
        if known and self.rng.random() < 0.3:
            keys = list(dict.fromkeys(self.rng.choice(known, size=20).tolist()))
            changes = dict.fromkeys(keys, ABSENT)
            call = lambda: s.Delete(  # noqa: E731
                pb.DeleteRequest(
                    index=ref("ix"),
                    keys=[
                        cpb.EntityKey(tenant_id=TENANT, entity_type="item", entity_id=k)
                        for k in keys
                    ],
                    source_version=self.version,
                ),
                timeout=30,
            )
        else:
            fresh = [f"k{self.next_id + i:05d}" for i in range(35)]
            self.next_id += 35
            again = self.rng.choice(known, size=15).tolist() if known else []
            keys = list(dict.fromkeys(fresh + again))
            vectors = self.rng.normal(size=(len(keys), DIM)).astype(np.float32)
            changes = {k: v.tobytes() for k, v in zip(keys, vectors, strict=True)}
            # Half the writes per record (Upsert), half as columns (UpsertColumns).
            write = upsert_batch if self.rng.random() < 0.5 else upsert_columns_batch
            call = lambda: write(s, "ix", keys, vectors, self.version)  # noqa: E731
        try:
            call()
        except grpc.RpcError:
            if self.up.is_set():  # the shard was not being killed: a real failure
                raise
            self.model.doubtful(changes)  # killed mid-call: it may or may not have landed
            return
        self.model.acked(changes)


def test_every_acknowledged_write_survives_repeated_sigkills(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(
        num_shards=1,
        extra_env={
            "VECSHARD__SHARD__SEAL_ROWS": "300",
            "VECSHARD__SHARD__SEAL_AGE_SECONDS": "3600",
            "VECSHARD__SHARD__MIN_INDEX_ROWS": "100",
            "VECSHARD__SHARD__COMPACT_MIN_SEGMENTS": "2",
            "VECSHARD__SHARD__COMPACT_SMALL_ROWS": "1500",
            "VECSHARD__SHARD__MAINTENANCE_INTERVAL_SECONDS": "0.2",
        },
    )
    register(cluster, {"ix": (IndexKind.HNSW, {"M": 8, "ef_construction": 40})}, DIM, Metric.L2, {})
    model = Model()
    writer = Writer(cluster, model)
    writer.start()
    try:
        for _ in range(KILLS):
            with model.cond:
                target = model.acked_ops + OPS_BETWEEN_KILLS
                assert model.cond.wait_for(
                    lambda t=target: model.acked_ops >= t or writer.error is not None,  # type: ignore[misc]  # mypy cannot type a default-argument lambda
                    120,
                ), "the writer stalled"
            assert writer.error is None, writer.error
            writer.up.clear()
            cluster.kill_shard("shard-0")
            cluster.restart_shard("shard-0")
            writer.address = shard_address(cluster)
            writer.up.set()
        with model.cond:
            target = model.acked_ops + 5
            assert model.cond.wait_for(lambda: model.acked_ops >= target, 120)
    finally:
        writer.stop.set()
        writer.up.set()
        writer.join(60)
    assert writer.error is None, writer.error
    # One last crash right after the last acknowledgement.
    cluster.kill_shard("shard-0")
    cluster.restart_shard("shard-0")
    verify(cluster, model)


def verify(cluster: LocalCluster, model: Model) -> None:
    s = stub(cluster, shard_address(cluster))
    keys = sorted(model.states)
    got = s.BatchGet(
        pb.BatchGetRequest(
            index=ref("ix"),
            keys=[cpb.EntityKey(tenant_id=TENANT, entity_type="item", entity_id=k) for k in keys],
            include_vectors=True,
        ),
        timeout=60,
    ).records
    present: dict[str, np.ndarray] = {}
    for key, lookup in zip(keys, got, strict=True):
        state = lookup.record.vector if lookup.status == cpb.FOUND else ABSENT
        assert state in model.states[key], f"{key}: state after the crashes was never written"
        if state:
            present[key] = np.frombuffer(state, dtype="<f4")
    print(f"\nacked {model.acked_ops} ops, {model.in_doubt} in doubt, {len(present)} keys present")
    assert len(present) > 500 and model.acked_ops > KILLS * OPS_BETWEEN_KILLS
    stats = s.Describe(pb.DescribeRequest(), timeout=60).indexes[0]
    assert stats.live_count == len(present)
    print([(g.kind, g.state, g.rows, g.deleted_rows) for g in stats.segments])
    assert any(g.kind == "hnsw" for g in stats.segments), "nothing was ever sealed"
    # Present exactly once: each present key finds itself first, once; an
    # exhaustive search returns every present key once and nothing else.
    names = list(present)
    sample = names[:: max(1, len(names) // 150)]
    for exact in (True, False):
        results = search(s, "ix", np.stack([present[k] for k in sample]), k=5, exact=exact)
        for key, res in zip(sample, results, strict=True):
            ids = [h.key.entity_id for h in res.hits]
            assert len(ids) == len(set(ids))
            assert all(i in present for i in ids), "a deleted key came back"
            if exact:
                assert ids[0] == key and res.hits[0].score == 0.0
    rng = np.random.default_rng(1)
    for q in rng.normal(size=(3, DIM)).astype(np.float32):
        seen: list[str] = []
        (res,) = search(s, "ix", q[None], k=100, exact=True)
        seen = [h.key.entity_id for h in res.hits]
        assert len(seen) == len(set(seen)) == min(100, len(present))
        assert set(seen) <= set(present)
