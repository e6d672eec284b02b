"""An index version archived while a replica copy streams into it
(anti-entropy or catch-up): `ShardNode.drop_archived` retires the partition
before deleting its data, so a copy in progress lands first (and is
deleted with the rest) and every later chunk is refused — before, the
stream's next chunk wrote rows through the old partition object after the
delete, and nothing ever deleted them again (found in review)."""

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
