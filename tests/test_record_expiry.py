"""The expiry sweep over a shard's partitions, in process on a real RocksDB
(the sweep through real processes: tests/test_record_expiry_e2e.py)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from core.domain import EntityKey, Metric, VersionRef
from core.errors import FailedPrecondition
from registry.model import EmbeddingFamily, IndexVersion
from shard_server.model import LookupStatus
from shard_server.partition import IndexPartition
from shard_server.record_expiry import expire_records
from shard_server.records import Record
from shard_server.storage import ShardStore

FAMILY = EmbeddingFamily("f", "item", 4, Metric.L2, ttl_seconds=60)
DROPPED = IndexVersion("ix", "v0", VersionRef("f", "v1"), num_buckets=1)
KEPT = IndexVersion("ix", "v1", VersionRef("f", "v1"), num_buckets=1)
K = EntityKey("t", "item", "k")


def test_a_partition_dropped_during_the_sweep_does_not_end_it(tmp_path: Path) -> None:
    """An index version archived (and its partition retired) while the sweep
    ran raised FailedPrecondition out of it: no other partition was swept,
    nor the feature rows after it, until the next tick (found in review)."""
    store = ShardStore(tmp_path / "rocksdb")
    try:
        part = IndexPartition(KEPT, FAMILY, store, tmp_path / "segments")
        part.load()
        now = int(time.time() * 1_000_000)
        old = now - 120 * 1_000_000
        assert part.upsert([Record(K, np.ones(4, np.float32), 2, created_at=old)]).written == 1

        def partition(ref: VersionRef) -> IndexPartition:
            if ref == DROPPED.ref:
                raise FailedPrecondition(f"index version {ref} is archived")
            return part

        indexes = {DROPPED.ref: DROPPED, KEPT.ref: KEPT}
        node = SimpleNamespace(
            registry=SimpleNamespace(
                snapshot=SimpleNamespace(indexes=indexes, families={"f": FAMILY})
            ),
            open_partitions=lambda: [DROPPED.ref, KEPT.ref],
            partition=partition,
            store=store,
        )
        assert expire_records(node, now) == 1  # type: ignore[arg-type]
        (lookup,) = part.get([K])
        assert lookup.status is LookupStatus.MISSING
    finally:
        store.close()
