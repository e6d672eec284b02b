"""An index version archived while a replica copy streams into it
(anti-entropy or catch-up): `ShardNode.drop_archived` retires the partition
before deleting its data, so a copy in progress lands first (and is
deleted with the rest) and every later chunk is refused — before, the
stream's next chunk wrote rows through the old partition object after the
delete, and nothing ever deleted them again (found in review). Its recall
estimate goes with it: the gauge kept its last value for good."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.domain import EntityKey, Metric, VersionRef
from core.errors import FailedPrecondition
from registry.model import EmbeddingFamily, IndexVersion
from shard_server import records as rec
from shard_server.partition import IndexPartition
from shard_server.replication import export_records
from shard_server.retention import drop_index_data
from shard_server.storage import RECORDS, SEQUENCES, TOMBSTONES, ShardStore

FAMILY = EmbeddingFamily("f", "item", 4, Metric.L2)
INDEX = IndexVersion("ix", "v1", VersionRef("f", "v1"), num_buckets=4)


def _copy(i: int) -> tuple[bytes, bytes]:
    key = EntityKey("t", "item", f"k{i}")
    record = rec.Record(key, np.full(4, i, np.float32), 1, bucket=i % 4)
    return rec.record_key(INDEX.ref, key), rec.encode_record(record)


def test_a_copy_after_the_archive_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    store = ShardStore(tmp_path / "rocksdb")
    segments = tmp_path / "segments" / "ix"
    part = IndexPartition(INDEX, FAMILY, store, segments)
    part.load()
    assert part.apply_replicated([_copy(1)], []) == 1  # a chunk before the archive
    assert [k for k, _ in next(export_records(store, INDEX.ref, {1}))[0]] == [_copy(1)[0]]
    part.retire()  # drop_archived: retire, then delete
    drop_index_data(store, INDEX.ref, segments)
    with pytest.raises(FailedPrecondition, match="archived"):
        part.apply_replicated([_copy(2)], [])  # the stream's next chunk
    assert not list(store.iter_prefix(RECORDS, rec.index_prefix(INDEX.ref)))
    store.close()


def test_writes_seals_and_compactions_after_the_archive_leave_nothing(tmp_path: Path) -> None:
    """A caller holding the partition when it was archived could still write
    and delete through it (only copies were refused), and a seal held over
    the drop recreated the dropped directory with its files: rows and files
    nothing deletes again, since a restart skips a version whose directory is
    gone (found in review)."""
    from shard_server.records import Record

    store = ShardStore(tmp_path / "rocksdb")
    segments = tmp_path / "segments" / "ix"
    part = IndexPartition(INDEX, FAMILY, store, segments)
    part.load()
    key = EntityKey("t", "item", "a")
    part.upsert([Record(key, np.ones(4, np.float32), 1, bucket=0)])
    part.retire()
    drop_index_data(store, INDEX.ref, segments)
    with pytest.raises(FailedPrecondition, match="archived"):
        part.upsert([Record(EntityKey("t", "item", "b"), np.ones(4, np.float32), 1, bucket=0)])
    with pytest.raises(FailedPrecondition, match="archived"):
        part.delete([key], 2)
    assert not part.lifecycle.seal(force=True) and not part.lifecycle.compact(force=True)
    assert not segments.exists()
    for family in (RECORDS, TOMBSTONES, SEQUENCES):
        assert not list(store.iter_prefix(family, rec.index_prefix(INDEX.ref)))
    store.close()


def test_a_replicated_copy_that_revives_a_deleted_key_lowers_the_tombstone_count(
    tmp_path: Path,
) -> None:
    """`IndexStats` counts tombstones: a copy replacing one removed it on
    disk but not from the count (a client write did)."""
    from shard_server.records import Record

    store = ShardStore(tmp_path / "rocksdb")
    part = IndexPartition(INDEX, FAMILY, store, tmp_path / "segments" / "ix")
    part.load()
    key = EntityKey("t", "item", "k1")
    part.upsert([Record(key, np.ones(4, np.float32), 1, bucket=1)])
    part.delete([key], 3)
    assert part.tombstones == 1
    newer = rec.Record(key, np.full(4, 5, np.float32), 5, bucket=1)
    assert (
        part.apply_replicated([(rec.record_key(INDEX.ref, key), rec.encode_record(newer))], []) == 1
    )
    assert (
        part.tombstones
        == 0
        == len(list(store.iter_prefix(TOMBSTONES, rec.index_prefix(INDEX.ref))))
    )
    store.close()


def test_an_archived_index_version_exports_no_recall_estimate(tmp_path: Path) -> None:
    """`vecshard_recall_estimate{index}` stayed at an archived version's last
    value: VecshardRecallEstimateLow kept firing on data already deleted."""
    import dataclasses
    import threading
    from types import SimpleNamespace

    from prometheus_client import REGISTRY

    from registry.model import EmbeddingVersion, Placement, Status
    from registry.snapshot import Snapshot
    from shard_server.feature_store import FeatureShardStore
    from shard_server.model import Query
    from shard_server.records import Record
    from shard_server.service import ShardNode

    live = Snapshot(
        families={"f": FAMILY},
        embedding_versions={VersionRef("f", "v1"): EmbeddingVersion("f", "v1")},
        indexes={INDEX.ref: INDEX},
        placements={INDEX.ref: Placement(INDEX.ref, (("s1",),) * INDEX.num_buckets)},
    )
    registry = SimpleNamespace(snapshot=live, refresh=lambda: live, reread=lambda: live)
    store = FeatureShardStore(tmp_path / "db")
    node = ShardNode("s1", store, registry, tmp_path / "segments", recall_sample_rate=1.0)  # type: ignore[arg-type]
    measured = threading.Event()
    node.sampler.on_measured = lambda ref, value: measured.set()
    node.sampler.start()
    labels = {"index": str(INDEX.ref)}
    try:
        vectors = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
        node.upsert(
            INDEX.ref,
            [
                Record(EntityKey("t", "item", f"k{i}"), v, 1, bucket=i % INDEX.num_buckets)
                for i, v in enumerate(vectors)
            ],
        )
        node.search(INDEX.ref, [Query(vectors[0], 3, "t")])
        assert measured.wait(10)
        assert REGISTRY.get_sample_value("vecshard_recall_estimate", labels) == 1.0
        archived = dataclasses.replace(INDEX, status=Status.ARCHIVED)
        assert node.drop_archived(dataclasses.replace(live, indexes={INDEX.ref: archived})) == [
            INDEX.ref
        ]
        assert REGISTRY.get_sample_value("vecshard_recall_estimate", labels) is None
        assert node.sampler.estimate(INDEX.ref) is None
    finally:
        node.close()
