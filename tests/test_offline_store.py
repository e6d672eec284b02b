"""The Parquet offline store: schemas from the definitions, hive partitions
by group/version/date and name/version, pruning filters, the same value
checks as online, and embeddings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from core.domain import EntityKey, Metric
from core.errors import InvalidArgument, NotFound
from offline.parquet_store import (
    TIMESTAMP,
    EmbeddingRow,
    OfflineStore,
    feature_schema,
    table_to_rows,
    vectors,
)
from registry.model import EmbeddingFamily
from tests.feature_catalog import ACTIVITY, CATALOG, DAY, PROFILE, T0, item, row, user

PROFILE_S = CATALOG.schema(PROFILE)
ACTIVITY_S = CATALOG.schema(ACTIVITY)
FAMILY = EmbeddingFamily("item_vec", "item", 3, Metric.COSINE)


def test_schema_follows_the_definitions() -> None:
    schema = feature_schema(ACTIVITY_S)
    assert schema.names == [
        "tenant_id", "entity_type", "entity_id", "feature_timestamp", "generated_at", "ctr_7d", "taste",
    ]  # fmt: skip
    assert schema.field("ctr_7d").type == pa.float64()
    assert schema.field("taste").type == pa.list_(pa.float64())
    assert schema.field("feature_timestamp").type == TIMESTAMP


def test_rows_round_trip_partitioned_by_group_version_and_day(tmp_path: Path) -> None:
    store = OfflineStore(tmp_path)
    rows = [
        row(user("a"), T0, ctr_7d=0.25, taste=[1, 2]),
        row(user("b"), T0 + DAY, gen=T0 + 2 * DAY, ctr_7d=None, taste=None),
        row(user("a"), T0 + 2 * DAY, ctr_7d=1e-300, taste=[]),
    ]
    assert store.write_features(ACTIVITY_S, rows) == 3
    back = table_to_rows(ACTIVITY_S, store.read_features(ACTIVITY_S))
    assert back == [ACTIVITY_S.check_row(r) for r in rows]
    days = [f.date for f in store.feature_files(ACTIVITY_S)]
    assert days == ["2023-11-14", "2023-11-15", "2023-11-16"]
    # Any hive-aware reader sees group, version and date as columns.
    whole = ds.dataset(tmp_path / "features", format="parquet", partitioning="hive").to_table()
    assert set(whole.column("group").to_pylist()) == {"user_activity"}
    assert set(whole.column("version").to_pylist()) == {"v1"}
    assert whole.num_rows == 3


def test_filters_prune_days_times_and_late_generations(tmp_path: Path) -> None:
    store = OfflineStore(tmp_path)
    store.write_features(
        PROFILE_S,
        [row(user(f"u{d}"), T0 + d * DAY, gen=T0 + d * DAY + 5, account_days=d) for d in range(5)],
    )
    ids = lambda t: t.column("entity_id").to_pylist()  # noqa: E731
    assert ids(store.read_features(PROFILE_S, start_date="2023-11-15", end_date="2023-11-17")) == [
        "u1", "u2", "u3",
    ]  # fmt: skip
    assert len(store.feature_files(PROFILE_S, end_date="2023-11-15")) == 2
    assert ids(store.read_features(PROFILE_S, min_timestamp=T0 + DAY + 1, max_timestamp=T0 + 3 * DAY)) == [
        "u2", "u3",
    ]  # fmt: skip
    assert ids(store.read_features(PROFILE_S, generated_cutoff=T0 + DAY + 4)) == ["u0"]


def test_appends_are_read_in_write_order(tmp_path: Path) -> None:
    """Found in review: files were named part-{uuid4}, so which of two equal
    (feature_timestamp, generated_at) rows a join took was a coin flip, while
    online the last write wins."""
    store = OfflineStore(tmp_path)
    for n in range(8):
        store.write_features(PROFILE_S, [row(user("a"), T0, account_days=n)])
        store.write_embeddings(FAMILY, "v1", [EmbeddingRow(item(f"i{n}"), np.ones(3), T0)])
    assert store.read_features(PROFILE_S).column("account_days").to_pylist() == list(range(8))
    ids = store.read_embeddings(FAMILY, "v1").column("entity_id").to_pylist()
    assert ids == [f"i{n}" for n in range(8)]
    files = store.feature_files(PROFILE_S)
    assert [str(f.path) for f in files] == sorted(str(f.path) for f in files)
    assert sum(f.num_rows for f in files) == 8


def test_files_named_by_earlier_releases_are_read_first(tmp_path: Path) -> None:
    store = OfflineStore(tmp_path)
    store.write_features(PROFILE_S, [row(user("a"), T0, account_days=1)])
    (old,) = store.feature_dir(PROFILE).rglob("*.parquet")
    old.rename(old.with_name(f"part-{'f' * 32}-0.parquet"))  # the uuid4 naming
    store.write_features(PROFILE_S, [row(user("a"), T0, account_days=2)])
    assert store.read_features(PROFILE_S).column("account_days").to_pylist() == [1, 2]


_FULL_DISK_CHILD = """
import resource, signal, sys
from pathlib import Path
import numpy as np
import pyarrow as pa
from offline.parquet_store import OfflineStore, EmbeddingRow
from registry.model import EmbeddingFamily
from core.domain import Metric
from tests.feature_catalog import CATALOG, PROFILE, T0, item
n = 200_000
features = pa.table({
    "tenant_id": ["acme"] * n, "entity_type": ["user"] * n,
    "entity_id": [f"u{i}" for i in range(n)],
    "feature_timestamp": pa.array([T0] * n, pa.int64()),
    "generated_at": pa.array([T0] * n, pa.int64()),
    "age_bucket": [f"bucket-{i}" for i in range(n)],
})
family = EmbeddingFamily("item_vec", "item", 3, Metric.COSINE)
vecs = [EmbeddingRow(item(f"i{i}"), np.array([1.0, i, 0]), T0) for i in range(20_000)]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG: a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
store = OfflineStore(Path(sys.argv[1]))
if sys.argv[2] == "features":
    store.write_features(CATALOG.schema(PROFILE), features)
else:
    store.write_embeddings(family, "v1", vecs)
"""


@pytest.mark.parametrize("what", ["features", "embeddings"])
def test_a_write_that_dies_midway_leaves_what_was_there_readable(tmp_path: Path, what: str) -> None:
    """Found in review: files were written straight under their final names,
    so a full disk or a kill left a torn Parquet file and every later read of
    the group failed on it."""
    store = OfflineStore(tmp_path)
    store.write_features(PROFILE_S, [row(user("ok"), T0, account_days=1)])
    store.write_embeddings(FAMILY, "v1", [EmbeddingRow(item("ok"), np.ones(3), T0)])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    child = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, str(tmp_path), what],
        capture_output=True,
        text=True,
        env=env,
    )
    assert child.returncode != 0 and "File too large" in child.stderr, child.stderr[-2000:]
    assert store.read_features(PROFILE_S).column("entity_id").to_pylist() == ["ok"]
    assert store.read_embeddings(FAMILY, "v1").column("entity_id").to_pylist() == ["ok"]
    assert not [p.name for p in tmp_path.rglob("*") if p.name.startswith(".")]


def _good() -> dict:
    return {
        "tenant_id": ["acme"], "entity_type": ["user"], "entity_id": ["a"],
        "feature_timestamp": [T0], "generated_at": [T0], "ctr_7d": [0.5], "taste": [[1.0]],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"ctr_7d": [float("nan")]}, "non-finite"),
        ({"taste": [[1.0, None]]}, "null inside a float_list"),
        ({"ctr_7d": ["high"]}, "'ctr_7d' is not double"),
        ({"entity_type": ["item"]}, "entity type other than 'user'"),
        ({"entity_id": [""]}, "entity_id is empty"),
        ({"generated_at": [None]}, "'generated_at' has nulls"),
        ({"color": ["red"]}, "unknown"),
    ],
)
def test_bulk_tables_get_the_same_checks_as_online_puts(
    tmp_path: Path, table: dict, message: str
) -> None:
    cols = _good()
    cols.update(table)
    assert OfflineStore(tmp_path / "ok").write_features(ACTIVITY_S, pa.table(_good())) == 1
    with pytest.raises(InvalidArgument, match=message):
        OfflineStore(tmp_path).write_features(ACTIVITY_S, pa.table(cols))
    assert not OfflineStore(tmp_path).has_features(ACTIVITY)


def test_integer_microseconds_are_accepted_for_times(tmp_path: Path) -> None:
    store = OfflineStore(tmp_path)
    t = pa.table(
        {
            "tenant_id": ["acme"], "entity_type": ["user"], "entity_id": ["a"],
            "feature_timestamp": pa.array([T0], pa.int64()), "generated_at": pa.array([T0], pa.int64()),
            "premium": [True],
        }
    )  # fmt: skip
    store.write_features(PROFILE_S, t)
    (r,) = table_to_rows(PROFILE_S, store.read_features(PROFILE_S))
    assert (r.feature_timestamp, r.values) == (
        T0,
        {"age_bucket": None, "account_days": None, "premium": True},
    )


def test_unknown_groups_are_not_found(tmp_path: Path) -> None:
    store = OfflineStore(tmp_path)
    assert not store.has_features(PROFILE)
    with pytest.raises(NotFound, match="no offline data for feature group user_profile@v1"):
        store.read_features(PROFILE_S)


def test_embeddings_partitioned_by_name_and_version(tmp_path: Path) -> None:
    store = OfflineStore(tmp_path)
    rows = [
        EmbeddingRow(
            item("i1"), np.array([3, 4, 0]), T0, 7, "m1", {"tags": ("a", "b"), "price": 2.5}
        ),
        EmbeddingRow(item("i2"), np.array([0, 0, 1]), T0 + 1),
    ]
    assert store.write_embeddings(FAMILY, "v2", rows) == 2
    table = store.read_embeddings(FAMILY, "v2")
    np.testing.assert_array_equal(vectors(table), np.array([[3, 4, 0], [0, 0, 1]], np.float32))
    assert table.column("norm").to_pylist() == [5.0, 1.0]
    assert table.column("attributes").to_pylist()[0] == '{"price": 2.5, "tags": ["a", "b"]}'
    assert table.column("created_at").cast(pa.int64()).to_pylist() == [T0, T0 + 1]
    assert (tmp_path / "embeddings" / "name=item_vec" / "version=v2").is_dir()
    only = store.read_embeddings(FAMILY, "v2", filter=ds.field("entity_id") == "i2")
    assert only.column("entity_id").to_pylist() == ["i2"]
    with pytest.raises(NotFound):
        store.read_embeddings(FAMILY, "v3")


def test_embeddings_are_checked_like_online_upserts(tmp_path: Path) -> None:
    store = OfflineStore(tmp_path)
    with pytest.raises(InvalidArgument, match=r"expected \(3,\)"):
        store.write_embeddings(FAMILY, "v1", [EmbeddingRow(item("i"), np.zeros(4), T0)])
    with pytest.raises(InvalidArgument, match="NaN or Inf"):
        store.write_embeddings(
            FAMILY, "v1", [EmbeddingRow(item("i"), np.array([1, np.nan, 0]), T0)]
        )
    with pytest.raises(InvalidArgument, match="entity type other than 'item'"):
        store.write_embeddings(
            FAMILY, "v1", [EmbeddingRow(EntityKey("t", "user", "u"), np.zeros(3), T0)]
        )


def _embedding_table(created_at: pa.Array, norm: float) -> pa.Table:
    return pa.table(
        {
            "tenant_id": ["t"], "entity_type": ["item"], "entity_id": ["a"],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array([3.0, 4.0, 0.0], pa.float32()), 3),
            "created_at": created_at, "source_version": pa.array([1], pa.int64()),
            "model_version": ["m"], "norm": pa.array([norm], pa.float32()), "attributes": ["{}"],
        }
    )  # fmt: skip


def test_embedding_tables_get_their_times_checked_and_their_norm_computed(
    tmp_path: Path,
) -> None:
    """Found in review: a table's created_at in nanoseconds was stored as the
    year ~55,800, and its norm column was stored as given."""
    store = OfflineStore(tmp_path)
    as_ns = pa.array([T0 * 1000], pa.int64())
    with pytest.raises(InvalidArgument, match="row 0: created_at .* reads as nanoseconds"):
        store.write_embeddings(FAMILY, "v1", _embedding_table(as_ns, 5.0))
    below_us = pa.array([T0 * 1000 + 1], pa.timestamp("ns", tz="UTC"))
    with pytest.raises(InvalidArgument, match="expected columns"):
        store.write_embeddings(FAMILY, "v1", _embedding_table(below_us, 5.0))
    assert not store.embedding_dir("item_vec", "v1").exists()

    store.write_embeddings(FAMILY, "v1", _embedding_table(pa.array([T0], pa.int64()), 123.0))
    store.write_embeddings(
        FAMILY, "v1", _embedding_table(pa.array([T0], pa.int64()), 5.0).drop_columns(["norm"])
    )
    assert store.read_embeddings(FAMILY, "v1").column("norm").to_pylist() == [5.0, 5.0]
