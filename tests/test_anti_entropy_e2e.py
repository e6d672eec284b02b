"""Anti-entropy between live replicas, through real processes: writes that
reached one replica only — sent straight to one shard, as a coordinator
killed mid-write leaves them — are copied to the other replica of their
bucket by the shards themselves, both ways, with nobody restarting: records,
deletes and feature rows; the replicas' digests then agree, and each shard
alone answers what the other was written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import Record
from coordinator.model import WriteRecord
from coordinator.remote_shard import RemoteShard
from core.domain import EntityKey, VersionRef
from core.embedding_columns import EmbeddingColumns
from core.identity import ComponentRole
from protos.vecshard.v1.internal import replication_pb2 as rpb
from protos.vecshard.v1.internal import replication_pb2_grpc
from registry.feature_batches import rows_to_batch
from registry.features import GroupRow
from registry.placement import bucket_of
from registry.registry import Registry
from registry.watcher import SnapshotCache
from tests.conftest import ClusterFactory
from tests.polling import poll
from tests.shard_contract_support import Vouching
from tests.specs import route_spec, tenant_docs
from tests.test_feature_replicas_e2e import REPLICATED, client, metric, values

pytestmark = pytest.mark.integration
S = 1_000_000
T0 = 1_800_000_000 * S
DIM, BUCKETS = 4, 4
INDEX = VersionRef("ix", "v1")
GROUP = VersionRef("stats", "v1")


def digests(cluster: LocalCluster, shard_id: str) -> list[tuple[int, int, int]]:
    """The shard's digests of every bucket, index then feature group."""
    address = str(cluster.shards[shard_id].ready["grpc"])  # type: ignore[index]  # started
    creds = cluster.peer_credentials(ComponentRole.SHARD)
    asks = [
        rpb.DigestRequest(index_name="ix", index_version="v1", buckets=range(BUCKETS)),
        rpb.DigestRequest(group_name="stats", group_version="v1", buckets=range(64)),
    ]
    with grpc.secure_channel(address, creds) as ch:
        stub = replication_pb2_grpc.ReplicationServiceStub(ch)
        return [
            (d.bucket, d.digest, d.rows)
            for ask in asks
            for d in stub.BucketDigests(ask, timeout=10).buckets
        ]


async def on_one_shard(
    cluster: LocalCluster,
    shard_id: str,
    upserts: Sequence[tuple[str, float, int]] = (),
    delete: tuple[str, int] | None = None,
    feature: tuple[str, float, str] | None = None,
    created_at: int = 0,
) -> None:
    """Writes to one replica only, as a coordinator would send them."""
    address = str(cluster.shards[shard_id].ready["grpc"])  # type: ignore[index]  # started
    shard = Vouching(RemoteShard(shard_id, address, credentials=cluster.peer_credentials()))
    records = [
        (WriteRecord(EntityKey("t", "item", i), np.full(DIM, x, np.float32), v, "", created_at), b)
        for i, x, v in upserts
        for b in [bucket_of("t", i, BUCKETS)]
    ]
    if records:
        assert await shard.upsert(INDEX, records, 10) == (len(records), 0)
    if delete is not None:
        assert await shard.delete(INDEX, [EntityKey("t", "item", delete[0])], delete[1], 10) == 1
    if feature is not None:
        store = cluster.etcd_store()
        schema = SnapshotCache(Registry(store, cluster.etcd_prefix)).refresh().feature_catalog
        store.close()
        entity, ctr, label = feature
        row = GroupRow(
            EntityKey("t", "item", entity), T0 + 2 * S, T0 + 2 * S, {"ctr": ctr, "label": label}
        )
        assert (await shard.put_features(GROUP, rows_to_batch(schema.schema(GROUP), [row]), 10))[
            0
        ] == 1
    await shard.close()


async def read_records(cluster: LocalCluster, shard_id: str, ids: list[str]) -> EmbeddingColumns:
    address = str(cluster.shards[shard_id].ready["grpc"])  # type: ignore[index]  # started
    shard = Vouching(RemoteShard(shard_id, address, credentials=cluster.peer_credentials()))
    try:
        return await shard.batch_get(INDEX, [EntityKey("t", "item", i) for i in ids], True, 10)
    finally:
        await shard.close()


def test_replicas_that_disagree_while_both_serve_converge(make_cluster: ClusterFactory) -> None:
    cluster: LocalCluster = make_cluster(
        num_shards=2,
        num_coordinators=1,
        lease_ttl=4,
        extra_env={"VECSHARD__SHARD__ANTI_ENTROPY_INTERVAL_SECONDS": "1"},
    )
    ids = [f"i{n}" for n in range(12)]
    with RegistryClient(cluster.coordinator_address) as reg, client(cluster) as c:
        reg.apply(tenant_docs())
        reg.apply(route_spec(dim=DIM, num_buckets=BUCKETS, replicas=2, family="v", index="ix"))
        reg.apply(REPLICATED)
        c.upsert("v", "v1", [Record(i, np.ones(DIM), source_version=3) for i in ids])
        c.put_features("stats", "v1", [(("item", i), T0, {"ctr": 0.25, "label": "x"}) for i in ids])
        agreed = digests(cluster, "shard-0")
        assert agreed == digests(cluster, "shard-1")

        # Each replica gets writes the other never sees.
        asyncio.run(on_one_shard(cluster, "shard-0", [("i1", 5.0, 7), ("new", 2.0, 1)]))
        asyncio.run(on_one_shard(cluster, "shard-0", feature=("i3", 0.75, "late")))
        asyncio.run(on_one_shard(cluster, "shard-1", delete=("i2", 9)))
        # Two writes of one version: shard-0 kept the later (created_at +256),
        # shard-1 the earlier (+255), whose little-endian header bytes are
        # the greater — they won, rolling shard-0 back (found in review).
        asyncio.run(on_one_shard(cluster, "shard-0", [("tie", 4.0, 3)], created_at=T0 + 256))
        asyncio.run(on_one_shard(cluster, "shard-1", [("tie", 6.0, 3)], created_at=T0 + 255))
        assert digests(cluster, "shard-0") != agreed or digests(cluster, "shard-1") != agreed

        both = poll(
            lambda: (digests(cluster, "shard-0"), digests(cluster, "shard-1")),
            lambda d: d[0] == d[1],
            timeout=30,
        )
        assert both[0] == both[1], "the replicas never agreed"
        assert both[0] != agreed

        # shard-0 copied the delete; shard-1 the three records and the row
        # (counted just after the copy the digests saw).
        def copied() -> dict[tuple[str, str], float]:
            return {
                (sid, kind): metric(
                    cluster.shards[sid].ready["metrics"],  # type: ignore[index]  # started
                    "vecshard_shard_anti_entropy_rows_total",
                    f'kind="{kind}"',
                )
                for sid in ("shard-0", "shard-1")
                for kind in ("records", "feature_rows")
            }

        want = {
            ("shard-0", "records"): 1,
            ("shard-1", "records"): 3,
            ("shard-1", "feature_rows"): 1,
        }
        counts = poll(copied, lambda got: all(got[k] >= n for k, n in want.items()), timeout=10)
        assert all(counts[k] >= n for k, n in want.items()), counts

        # Each replica now holds what only the other was written.
        for sid in ("shard-0", "shard-1"):
            got = asyncio.run(read_records(cluster, sid, ["i1", "new", "i2", "i4", "tie"]))
            assert got.statuses() == ["found", "found", "deleted", "found", "found"], sid
            assert got.vectors[0].tolist() == [5.0] * DIM, sid
            assert got.vectors[4].tolist() == [4.0] * DIM, f"{sid}: the earlier write won"
        # shard-1 alone answers the feature row only shard-0 was written.
        cluster.kill_shard("shard-0")
        assert values(c, ["i3", "i4"]) == [(0.75, None, "late"), (0.25, None, "x")]


def test_a_shard_restarts_after_a_replicated_index_version_was_archived(
    make_cluster: ClusterFactory,
) -> None:
    """Catch-up and anti-entropy copy live data only (`replica_peers`): a
    replicated index version whose rollback retention ended is archived and
    dropped, and a shard restarted after that starts (catch-up used to open
    the archived partition to copy into it, which refuses, and the shard
    failed to start) and runs its rounds without copying it back."""
    cluster: LocalCluster = make_cluster(
        num_shards=2,
        num_coordinators=1,
        lease_ttl=4,
        extra_env={
            "VECSHARD__COORDINATOR__RETENTION_SWEEP_SECONDS": "0.3",
            "VECSHARD__SHARD__ANTI_ENTROPY_INTERVAL_SECONDS": "1",
        },
    )
    family = {
        "kind": "EmbeddingFamily",
        "spec": {
            "name": "old",
            "entity_type": "item",
            "dimension": DIM,
            "metric": "l2",
            "rollback_retention_seconds": 1,
        },
    }
    index = {
        "kind": "IndexVersion",
        "replicas": 2,
        "spec": {
            "name": "oldix",
            "version": "v1",
            "embedding": {"name": "old", "version": "v1"},
            "kind": "flat",
            "num_buckets": BUCKETS,
        },
    }
    with RegistryClient(cluster.coordinator_address) as reg, client(cluster) as c:
        reg.apply(
            [
                *tenant_docs(),
                family,
                {"kind": "EmbeddingVersion", "spec": {"name": "old", "version": "v1"}},
                index,
            ]
        )
        c.upsert("old", "v1", [Record(f"i{n}", np.ones(DIM)) for n in range(8)])
        reg.promote("IndexVersion", "oldix", "v1", "production")
        reg.promote("IndexVersion", "oldix", "v1", "deprecated")
        status = poll(
            lambda: reg.get("IndexVersion", "oldix", "v1").spec["status"],
            lambda s: s == "archived",
            timeout=30,
        )
        assert status == "archived"
        cluster.kill_shard("shard-1")
        ready = cluster.restart_shard("shard-1")  # raised: the shard never got ready
        ports = [cluster.shards["shard-0"].ready["metrics"], ready["metrics"]]  # type: ignore[index]

        def rounds() -> list[float]:
            return [
                metric(p, "vecshard_shard_anti_entropy_rounds_total", 'outcome="done"')
                for p in ports
            ]

        # Two rounds done on the restarted shard (its peer ran as many or more).
        done = poll(rounds, lambda n: n[1] >= 2, timeout=15)
        assert done[1] >= 2, done
        for port in ports:
            assert metric(port, "vecshard_shard_anti_entropy_rows_total", 'kind="records"') == 0
