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
from shard_server.storage import RECORDS, ShardStore

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
