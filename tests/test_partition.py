"""Write semantics on a real RocksDB: replace, stale versions, idempotent
retries, tombstones that survive reopening, and all-or-nothing validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.domain import AttrType, EntityKey, Metric, VersionRef
from core.errors import InvalidArgument
from registry.model import EmbeddingFamily, IndexVersion
from shard_server.model import LookupStatus, Query
from shard_server.partition import IndexPartition
from shard_server.records import Record
from shard_server.storage import ShardStore

FAMILY = EmbeddingFamily("f", "item", 4, Metric.COSINE)
INDEX = IndexVersion(
    "ix", "v1", VersionRef("f", "v1"), num_buckets=4, attributes={"c": AttrType.STRING}
)


def rec(
    eid: str, vec: list[float], sv: int = 1, tenant: str = "t", bucket: int = 0, **attrs: object
) -> Record:
    return Record(
        EntityKey(tenant, "item", eid),
        np.array(vec, np.float32),
        sv,
        attributes=dict(attrs),
        bucket=bucket,
    )


def open_partition(path: Path) -> tuple[ShardStore, IndexPartition]:
    store = ShardStore(path / "rocksdb")
    part = IndexPartition(INDEX, FAMILY, store, path / "segments")
    part.load()
    return store, part


def ids(part: IndexPartition, vec: list[float], k: int = 10, tenant: str = "t") -> list[str]:
    (res,) = part.search([Query(np.array(vec, np.float32), k, tenant)])
    return [h.key.entity_id for h in res.hits]


def test_versions_retries_and_tombstones_survive_reopen(tmp_path: Path) -> None:
    store, part = open_partition(tmp_path)
    assert part.upsert([rec("a", [1, 0, 0, 0], sv=5), rec("b", [0, 1, 0, 0], sv=5)]).written == 2
    # older version ignored and counted; same version replaces (idempotent retry)
    r = part.upsert([rec("a", [0, 0, 1, 0], sv=4)])
    assert (r.written, r.ignored_stale) == (0, 1)
    assert part.upsert([rec("a", [1, 0, 0, 0], sv=5)]).written == 1
    assert ids(part, [1, 0, 0, 0], k=1) == ["a"]
    # delete, then a retried old upsert cannot bring it back
    assert part.delete([EntityKey("t", "item", "b")], source_version=0).written == 1
    assert part.upsert([rec("b", [0, 1, 0, 0], sv=5)]).ignored_stale == 1
    assert "b" not in ids(part, [0, 1, 0, 0])
    store.close()

    store, part = open_partition(tmp_path)
    assert ids(part, [0, 1, 0, 0]) == ["a"]
    (lk_a, lk_b, lk_c) = part.get([EntityKey("t", "item", x) for x in "abc"])
    assert (lk_a.status, lk_b.status, lk_c.status) == (
        LookupStatus.FOUND,
        LookupStatus.DELETED,
        LookupStatus.MISSING,
    )
    # cosine family: stored normalized, with the original norm kept
    assert lk_a.record is not None and lk_a.record.norm == pytest.approx(1.0)
    # a newer write after the delete is a real re-insert
    assert part.upsert([rec("b", [0, 2, 0, 0], sv=6)]).written == 1
    assert sorted(ids(part, [0, 1, 0, 0])) == ["a", "b"]
    store.close()


def test_within_a_batch_the_newest_version_wins(tmp_path: Path) -> None:
    store, part = open_partition(tmp_path)
    part.upsert([rec("a", [0, 1, 0, 0], sv=9), rec("a", [1, 0, 0, 0], sv=3)])
    (lk,) = part.get([EntityKey("t", "item", "a")])
    assert lk.record is not None and lk.record.source_version == 9
    store.close()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (rec("bad", [1, 0, 0]), "dimension 3 does not match, expected 4"),
        (rec("bad", [1, float("nan"), 0, 0]), "NaN or Inf"),
        (rec("bad", [1, float("inf"), 0, 0]), "NaN or Inf"),
        (rec("bad", [0, 0, 0, 0]), "zero vector"),
        (rec("bad", [1, 0, 0, 0], c=3), "attribute 'c'"),
        (rec("bad", [1, 0, 0, 0], bucket=9), "bucket 9 out of range"),
    ],
)
def test_a_bad_record_rejects_the_whole_batch_naming_its_key(
    tmp_path: Path, bad: Record, message: str
) -> None:
    store, part = open_partition(tmp_path)
    with pytest.raises(InvalidArgument, match=message) as err:
        part.upsert([rec("good", [1, 0, 0, 0]), bad])
    assert "'bad'" in str(err.value)
    assert [lk.status for lk in part.get([EntityKey("t", "item", "good")])] == [
        LookupStatus.MISSING
    ]
    store.close()


def test_tenants_never_mix(tmp_path: Path) -> None:
    store, part = open_partition(tmp_path)
    part.upsert([rec("a", [1, 0, 0, 0], tenant="t1"), rec("a", [1, 0, 0, 0], tenant="t2")])
    (res,) = part.search([Query(np.array([1, 0, 0, 0], np.float32), 10, "t1")])
    assert [h.key for h in res.hits] == [EntityKey("t1", "item", "a")]
    assert ids(part, [1, 0, 0, 0], tenant="nobody") == []
    store.close()
