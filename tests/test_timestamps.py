"""The time range every incoming time is held to (`core.timestamps`): the
rule itself on plain data, and each place a time comes in — a feature row
and a batch of them, the offline store's tables, an embedding's created_at
(per record and as columns)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.model import Access, WriteRecord
from coordinator.packed_records import checked_columns
from coordinator.records import checked_records
from core.domain import EntityKey, Metric, VersionRef
from core.errors import InvalidArgument
from core.limits import DEFAULT_LIMITS
from core.record_columns import PackedStrings, RecordColumns
from core.timestamps import MAX_US, MIN_US, check_time, check_times
from offline.parquet_store import OfflineStore
from registry.feature_batches import RowBatch, check_batch
from registry.features import GroupRow
from registry.model import EmbeddingFamily, IndexVersion
from tests.feature_catalog import CATALOG, PROFILE, T0, row, user

INT64 = st.integers(-(2**63), 2**63 - 1)
FAMILY = EmbeddingFamily("f", "item", 3, Metric.COSINE)
INDEX = IndexVersion("ix", "v1", VersionRef("f", "v1"))
ME = Access("acme", "indexing")


def test_the_range_is_1970_through_9999_in_microseconds() -> None:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    last = dt.datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)
    assert (0, (last - epoch) // dt.timedelta(microseconds=1)) == (MIN_US, MAX_US)
    check_time("t", MIN_US, "row 0")
    check_time("t", MAX_US, "row 0")
    for bad in (MIN_US - 1, MAX_US + 1):
        with pytest.raises(InvalidArgument, match=re.escape(f"row 0: t {bad}; expected micro")):
            check_time("t", bad, "row 0")
    for wrong in (1.5, True, "1", None):  # not an int at all
        with pytest.raises(InvalidArgument, match=re.escape(f"t {wrong!r}; expected int64 micro")):
            check_time("t", wrong, "row 0")


def test_nanoseconds_are_named_as_the_likely_mistake() -> None:
    now_ns = 1_764_300_000 * 10**9
    with pytest.raises(InvalidArgument, match="reads as nanoseconds"):
        check_time("t", now_ns, "row 3")
    with pytest.raises(InvalidArgument) as refused:  # not a unit mistake: no guess
        check_time("t", -5, "row 3")
    assert "nanoseconds" not in str(refused.value)


@given(st.lists(INT64, max_size=20))
def test_a_column_is_refused_exactly_when_a_row_is_out_of_range(times: list[int]) -> None:
    column = np.array(times, dtype=np.int64)
    bad = [i for i, t in enumerate(times) if not MIN_US <= t <= MAX_US]
    if not bad:
        check_times("t", column, lambda i: f"row {i}")
        return
    with pytest.raises(InvalidArgument, match=re.escape(f"row {bad[0]}: t {times[bad[0]]};")):
        check_times("t", column, lambda i: f"row {i}")


def test_feature_rows_and_batches_are_held_to_it() -> None:
    schema = CATALOG.schema(PROFILE)
    u = user("u1")
    schema.check_row(row(u, MAX_US, MIN_US, age_bucket="a"))
    with pytest.raises(InvalidArgument, match=re.escape("'u1'): feature_timestamp -1;")):
        schema.check_row(row(u, -1, T0, age_bucket="a"))
    with pytest.raises(InvalidArgument, match=re.escape(f"'u1'): generated_at {MAX_US + 1};")):
        schema.check_row(GroupRow(u, T0, MAX_US + 1, {}))
    keys = [user("u1"), user("u2")]
    ok = np.array([T0, T0], dtype=np.int64)
    check_batch(schema, RowBatch(keys, ok, ok, {}))
    late = np.array([T0, T0 * 1000], dtype=np.int64)
    with pytest.raises(InvalidArgument, match=r"row 1 \('acme', 'user', 'u2'\): feature_timest"):
        check_batch(schema, RowBatch(keys, late, ok, {}))
    with pytest.raises(InvalidArgument, match=r"row 1 .*generated_at .*reads as nanoseconds"):
        check_batch(schema, RowBatch(keys, ok, late, {}))


def test_the_offline_store_refuses_out_of_range_rows_and_writes_nothing(tmp_path: Path) -> None:
    store = OfflineStore(tmp_path)
    schema = CATALOG.schema(PROFILE)
    good = {
        "tenant_id": ["acme", "acme"],
        "entity_type": ["user", "user"],
        "entity_id": ["u1", "u2"],
        "feature_timestamp": pa.array([T0, T0], pa.int64()),
        "generated_at": pa.array([T0, -1], pa.int64()),
        "age_bucket": ["a", "b"],
    }
    with pytest.raises(InvalidArgument, match=r"row 1: generated_at -1; expected"):
        store.write_features(schema, pa.table(good))
    with pytest.raises(InvalidArgument, match=r"feature_timestamp -1; expected"):
        store.write_features(schema, [row(user("u1"), -1, age_bucket="a")])
    assert not list(tmp_path.rglob("*.parquet"))


def test_an_embeddings_created_at_is_held_to_it_unless_unset() -> None:
    vector = np.ones(FAMILY.dimension, dtype=np.float32)

    def record(created_at: int) -> WriteRecord:
        return WriteRecord(EntityKey("acme", "item", "e1"), vector, 1, "m", created_at)

    [kept] = checked_records(ME, FAMILY, [INDEX], [record(0)], DEFAULT_LIMITS, T0)
    assert kept.created_at == T0  # 0 is "now"
    with pytest.raises(
        InvalidArgument, match=r"\('acme', 'item', 'e1'\): created_at_unix_micros -7;"
    ):
        checked_records(ME, FAMILY, [INDEX], [record(-7)], DEFAULT_LIMITS, T0)

    def columns(created_at: list[int]) -> RecordColumns:
        n = len(created_at)
        return RecordColumns(
            PackedStrings.of([f"e{i}" for i in range(n)]),
            np.ones((n, FAMILY.dimension), dtype=np.float32),
            np.ones(n, dtype=np.int64),
            np.array(created_at, dtype=np.int64),
        )

    done = checked_columns(ME, FAMILY, [INDEX], columns([0, T0 + 1]), DEFAULT_LIMITS, 10, T0)
    assert done.created_at.tolist() == [T0, T0 + 1]
    with pytest.raises(InvalidArgument, match=r"records\[1\] .*created_at_unix_micros .*nanosec"):
        checked_columns(ME, FAMILY, [INDEX], columns([0, T0 * 1000]), DEFAULT_LIMITS, 10, T0)
