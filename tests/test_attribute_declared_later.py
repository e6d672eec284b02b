"""An attribute stored as undeclared metadata (any type) and later declared
filterable with another type (the registry allows adding attributes to a
serving version): rows stored before come back from disk at the next open,
from a replica, or through a write racing the declaration with their own
type. Converted, "cheap" failed the shard's start, 1.9 was stored as 1 and
matched Eq(price, 1), and a replicated copy was durable but never
searchable (found in review). Such a row lacks the attribute, as rows of a
segment built before the declaration do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.domain import AttrType, EntityKey, Metric, VersionRef
from core.filters import Eq
from registry.model import EmbeddingFamily, IndexVersion
from shard_server import records as rec
from shard_server.model import Query
from shard_server.partition import IndexPartition
from shard_server.records import Record
from shard_server.segment import SearchOptions
from shard_server.storage import ShardStore

FAMILY = EmbeddingFamily("f", "item", 4, Metric.L2)
BEFORE = IndexVersion("ix", "v1", VersionRef("f", "v1"), num_buckets=4)
AFTER = IndexVersion(
    "ix", "v1", VersionRef("f", "v1"), num_buckets=4, attributes={"price": AttrType.INT}
)
KEY = EntityKey("t", "item", "a")


def _open(path: Path, index: IndexVersion) -> tuple[ShardStore, IndexPartition]:
    store = ShardStore(path / "rocksdb")
    part = IndexPartition(index, FAMILY, store, path / "segments")
    part.load()
    return store, part


def _found(part: IndexPartition, flt: Eq | None = None) -> list[str]:
    query = Query(np.ones(4, np.float32), 5, "t", flt, SearchOptions(exact=True))
    (res,) = part.search([query])
    return [h.key.entity_id for h in res.hits]


@pytest.mark.parametrize("stored", ["cheap", 1.9])
def test_rows_stored_before_the_declaration_reopen_without_it(
    tmp_path: Path, stored: str | float
) -> None:
    store, part = _open(tmp_path, BEFORE)
    part.upsert([Record(KEY, np.ones(4, np.float32), 1, attributes={"price": stored}, bucket=0)])
    part.extend_schema(AFTER)
    store.close()
    store, part = _open(tmp_path, AFTER)  # the growing tail, rebuilt from RocksDB
    try:
        assert _found(part) == ["a"]
        assert _found(part, Eq("price", 1)) == []
        found = part.get([KEY])[0].record
        assert found is not None and found.attributes == {"price": stored}  # kept as written
    finally:
        store.close()


def test_a_replicated_copy_of_another_type_is_searchable(tmp_path: Path) -> None:
    store, part = _open(tmp_path, AFTER)
    r = Record(KEY, np.ones(4, np.float32), 1, attributes={"price": "cheap"}, bucket=0)
    try:
        assert (
            part.apply_replicated([(rec.record_key(AFTER.ref, KEY), rec.encode_record(r))], []) == 1
        )
        assert _found(part) == ["a"] and _found(part, Eq("price", 1)) == []
    finally:
        store.close()
