"""`offline.evaluation.source_sample` on real Parquet files: the coverage
sample reads only the row groups that hold its rows. Found in review: it
turned the whole source dataset (the backfill's, of any size) into Python
dicts to keep a few thousand."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from offline.evaluation import source_sample


def _write(path: Path, first: int, n: int) -> None:
    ids = [f"i{i}" for i in range(first, first + n)]
    table = pa.table(
        {
            "tenant_id": ["t"] * n,
            "entity_type": ["item"] * n,
            "entity_id": ids,
            "attributes": ['{"cat": "c"}'] * n,
            "vector": pa.array([[0.5, 0.5]] * n, pa.list_(pa.float32(), 2)),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=10_000)


def test_a_sample_is_the_same_for_a_seed_and_spans_every_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src / "a.parquet", 0, 25_000)
    _write(src / "b" / "c.parquet", 25_000, 5_000)

    rows = source_sample(src, 2_000, seed=3)

    assert rows == source_sample(src, 2_000, seed=3) != source_sample(src, 2_000, seed=4)
    numbers = [int(r["entity_id"][1:]) for r in rows]
    assert len(set(numbers)) == 2_000 and numbers == sorted(numbers)
    assert min(numbers) < 10_000 and max(numbers) >= 25_000
    assert set(rows[0]) == {"tenant_id", "entity_type", "entity_id", "attributes"}
    everything = source_sample(src, 50_000, seed=0)
    assert [r["entity_id"] for r in everything] == [f"i{i}" for i in range(30_000)]


def test_memory_follows_the_sample_not_the_dataset(tmp_path: Path) -> None:
    _write(tmp_path / "src" / "a.parquet", 0, 300_000)
    tracemalloc.start()
    try:
        rows = source_sample(tmp_path / "src", 20, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(rows) == 20
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB of Python objects for 20 rows"
