"""Where a sealed segment keeps its rows: keys in a `KeyTable` (arrays, found
by hash, the same answers a dict of keys gives), vectors in the segment's own
float32 file mapped read-only once written, and segments written before
either (keys and vectors inside the `.npz`) still load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domain import EntityKey, Metric
from registry.index_params import parse_index_params
from registry.model import IndexKind
from shard_server.columns import AttributeColumns
from shard_server.key_table import KeyTable
from shard_server.manifest import SegmentEntry
from shard_server.planner import PlannerPolicy
from shard_server.sealed_segment import BuildSettings, build_sealed
from shard_server.segment import DEFAULT_OPTIONS
from shard_server.segment_files import load_segment, save_segment
from shard_server.segment_rows import SegmentRows, file_mapped

KEYS = st.builds(
    EntityKey,
    st.sampled_from(["t", "u", ""]),
    st.sampled_from(["item", "user"]),
    st.text(alphabet="ab\u00e9\U0001f600", max_size=4),
)


@given(st.lists(KEYS, unique=True, max_size=40), st.lists(KEYS, max_size=20))
def test_a_key_table_finds_the_rows_a_dict_would(
    keys: list[EntityKey], probes: list[EntityKey]
) -> None:
    table = KeyTable.of(keys)
    row_of = {k: i for i, k in enumerate(keys)}
    assert list(table) == keys and [table[i] for i in range(len(keys))] == keys
    asked = probes + keys[::2]
    assert table.rows_of(asked).tolist() == [row_of.get(k, -1) for k in asked]
    assert not table.has_duplicates()
    if keys:
        assert table.row_of(keys[-1]) == len(keys) - 1
        rows = np.arange(len(keys))[::-1]
        assert list(table.take(rows)) == keys[::-1]
        halves = KeyTable.concat(
            [
                table.take(np.arange(len(keys) // 2)),
                table.take(np.arange(len(keys) // 2, len(keys))),
            ]
        )
        assert list(halves) == keys and halves.rows_of(keys).tolist() == list(range(len(keys)))
        assert KeyTable.of(keys + keys[:1]).has_duplicates()


def test_a_key_table_costs_tens_of_bytes_a_row() -> None:
    table = KeyTable.of([EntityKey("acme", "item", f"item-{i:07d}") for i in range(10_000)])
    assert table.nbytes() / len(table) < 48


def _rows(n: int, dim: int = 8) -> SegmentRows:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return SegmentRows(
        keys=KeyTable.of([EntityKey("t" if i % 3 else "u", "item", f"k{i}") for i in range(n)]),
        vectors=vectors,
        sq_norms=(vectors * vectors).sum(1).astype(np.float32),
        tenants=np.array([0 if i % 3 else 1 for i in range(n)], np.int32),
        tenant_names=("t", "u"),
        buckets=np.zeros(n, np.int32),
        seqs=np.arange(n, dtype=np.int64),
        columns=AttributeColumns({}, n),
    )


@pytest.mark.parametrize("kind", [IndexKind.FLAT, IndexKind.HNSW])
def test_a_saved_segment_reads_its_vectors_from_its_file(tmp_path: Path, kind: IndexKind) -> None:
    rows = _rows(1500)
    params = parse_index_params(kind, {}, 8)
    seg = build_sealed("seg-1", rows, Metric.L2, params, None, BuildSettings(), PlannerPolicy())
    before = [seg.search(q, 5, "t", None, DEFAULT_OPTIONS).hits for q in rows.vectors[:20]]
    in_memory = seg.nbytes()
    files = save_segment(tmp_path, seg)
    assert "seg-1.vectors.npy" in files and file_mapped(seg.rows.vectors)
    # A plain view of the mapping: indexing a np.memmap builds a memmap per result.
    assert type(seg.rows.vectors) is np.ndarray and not file_mapped(rows.vectors)
    assert seg.mapped_bytes() == rows.vectors.nbytes
    assert seg.nbytes() == in_memory - rows.vectors.nbytes  # no second copy in memory
    assert [seg.search(q, 5, "t", None, DEFAULT_OPTIONS).hits for q in rows.vectors[:20]] == before
    entry = SegmentEntry("seg-1", seg.kind, len(rows), seg.max_seq, files)
    loaded = load_segment(tmp_path, entry, 8, Metric.L2, params, PlannerPolicy(), False)
    assert file_mapped(loaded.rows.vectors)
    assert loaded.rows.vectors.tobytes() == rows.vectors.tobytes()
    assert list(loaded.rows.keys) == list(rows.keys)
    assert [
        loaded.search(q, 5, "t", None, DEFAULT_OPTIONS).hits for q in rows.vectors[:20]
    ] == before
    assert loaded.delete_many([EntityKey("t", "item", "k1"), EntityKey("t", "item", "nope")]) == 1


def test_a_segment_written_before_vector_files_still_loads(tmp_path: Path) -> None:
    """Keys as JSON and vectors inside the .npz: the layout of earlier releases."""
    rows = _rows(50)
    params = parse_index_params(IndexKind.FLAT, {}, 8)
    seg = build_sealed("seg-9", rows, Metric.L2, params, None, BuildSettings(), PlannerPolicy())
    summary = seg.summary()

    def blob(doc: object) -> np.ndarray:
        return np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)

    _, attrs = rows.columns.to_payload()
    with open(tmp_path / "seg-9.npz", "wb") as f:
        np.savez(
            f,
            vectors=rows.vectors,
            sq_norms=rows.sq_norms,
            tenants=rows.tenants,
            buckets=rows.buckets,
            seqs=rows.seqs,
            centroids=summary.centroids,
            radii=summary.radii,
            keys_json=blob([list(k) for k in rows.keys]),
            tenant_names_json=blob(list(rows.tenant_names)),
            attrs_json=np.frombuffer(attrs, dtype=np.uint8),
            bucket_stats_json=blob({}),
        )
    digest = hashlib.sha256((tmp_path / "seg-9.npz").read_bytes()).hexdigest()
    entry = SegmentEntry("seg-9", "flat", 50, 49, {"seg-9.npz": digest})
    loaded = load_segment(tmp_path, entry, 8, Metric.L2, params, PlannerPolicy(), False)
    assert not file_mapped(loaded.rows.vectors)
    assert loaded.rows.vectors.tobytes() == rows.vectors.tobytes()
    assert list(loaded.rows.keys) == list(rows.keys)
    assert loaded.rows.row_of(EntityKey("u", "item", "k3")) == 3
