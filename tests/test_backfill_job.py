"""The backfill job's logic on plain data and real Parquet files: every
validation reason, duplicates by key, the rate limiter's arithmetic, and a
job interrupted mid-way that resumes without writing a row twice or skipping
one (the sink here records what it is given; the cluster path is in
tests/test_model_change_e2e.py)."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.domain import VersionRef
from core.errors import FailedPrecondition, InvalidArgument
from offline.backfill import BackfillJob, VectorRow, _rows, backfill, reference_from_file
from offline.rate_limit import RowRateLimiter
from offline.vector_checks import (
    CheckSettings,
    check_rows,
    duplicate_reasons,
    norm_reference,
    row_norms,
)

DIM = 4
TARGET = VersionRef("items", "v2")


def test_every_reason_is_found_in_order() -> None:
    vectors = np.array(
        [
            [1, 0, 0, 0],  # ok
            [1, 0, 0, 0],  # entity_type
            [0, 0, 0, 0],  # dimension (zero-filled: the row was 3 long)
            [np.nan, 1, 0, 0],  # non_finite
            [0, 0, 0, 0],  # zero_norm
            [1e-5, 0, 0, 0],  # near_zero_norm
            [1e4, 0, 0, 0],  # norm_outlier
        ],
        dtype=np.float32,
    )
    types = ["item", "user", "item", "item", "item", "item", "item"]
    lengths = np.array([4, 4, 3, 4, 4, 4, 4])
    ref = norm_reference(np.ones(100), "unit norms")
    reasons = check_rows(CheckSettings(DIM, "item"), types, lengths, vectors, ref)
    assert reasons.tolist() == [
        "",
        "entity_type",
        "dimension",
        "non_finite",
        "zero_norm",
        "near_zero_norm",
        "norm_outlier",
    ]
    # Without a reference only the absolute checks apply.
    assert check_rows(CheckSettings(DIM, "item"), types, lengths, vectors, None)[5:].tolist() == [
        "",
        "",
    ]


def test_duplicates_keep_the_highest_source_version_and_the_last_on_a_tie() -> None:
    keys = [("t", "item", "a"), ("t", "item", "b"), ("t", "item", "a"), ("t", "item", "b")]
    dup = duplicate_reasons(keys, np.array([5, 1, 3, 1]))
    assert dup.tolist() == [False, True, True, False]


def test_norm_reference_is_robust_and_never_zero_width() -> None:
    norms = np.concatenate([np.full(99, 2.0), [1e6]])
    ref = norm_reference(norms, "x")
    assert ref.median == pytest.approx(2.0)
    assert ref.sigma_log >= 0.05
    assert row_norms(np.array([[3.0, 4.0]])).tolist() == [5.0]


def test_rate_limiter_keeps_the_average_and_never_waits_for_the_first_batch() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    lim = RowRateLimiter(100.0, clock=lambda: now[0], sleep=sleep)
    assert lim.acquire(50) == 0.0
    assert lim.acquire(50) == pytest.approx(0.5)
    now[0] += 5.0  # idle: no credit hoarded beyond the present
    assert lim.acquire(100) == 0.0
    assert lim.acquire(10) == pytest.approx(1.0)
    assert sum(slept) == pytest.approx(1.5)


def write_file(
    path: Path, ids: Sequence[str], vectors: np.ndarray, versions: Sequence[int]
) -> None:
    n = len(ids)
    table = pa.table(
        {
            "tenant_id": ["t"] * n,
            "entity_type": ["item"] * n,
            "entity_id": list(ids),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.astype(np.float32).reshape(-1)), DIM
            ),
            "source_version": pa.array(list(versions), pa.int64()),
            "model_version": ["m2"] * n,
            "attributes": [json.dumps({"cat": f"c{i % 3}"}) for i in range(n)],
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


class Recording:
    """A VectorSink that keeps what it was given; fails after `fail_after` batches."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.rows: list[VectorRow] = []
        self.batches = 0
        self.fail_after = fail_after

    def write(self, embedding: VersionRef, rows: Sequence[VectorRow]) -> tuple[int, int]:
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise ConnectionError("killed")
        self.batches += 1
        self.rows.extend(rows)
        return len(rows), 0


def dataset(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for f in range(3):
        vecs = rng.normal(size=(50, DIM))
        ids = [f"f{f}-{i}" for i in range(50)]
        versions = [1000 + i for i in range(50)]
        if f == 1:
            vecs[3] = 0.0  # zero_norm
            vecs[4, 0] = np.nan  # non_finite
            ids[5] = ids[6]  # duplicate: row 6 has the higher version and is kept
        write_file(src / f"part-{f}.parquet", ids, vecs, versions)
    return src


def test_a_job_killed_mid_way_resumes_without_duplicating_or_skipping(tmp_path: Path) -> None:
    src = dataset(tmp_path)
    ref = reference_from_file(src / "part-0.parquet", DIM)
    job = BackfillJob(src, TARGET, DIM, "item", batch_size=20, reference=ref)
    ckpt, dead = tmp_path / "ckpt.json", tmp_path / "dead"
    first = Recording(fail_after=4)  # file 0: 3 batches, file 1: dies in its 2nd
    with pytest.raises(ConnectionError):
        backfill(job, first, ckpt, dead, progress=None)
    second = Recording()
    out = io.StringIO()
    report = backfill(job, second, ckpt, dead, progress=out, min_interval=0.0)
    written = [r.key.entity_id for r in first.rows + second.rows]
    accepted = 150 - 3  # zero_norm, non_finite, one duplicate
    assert len(written) == len(set(written)) == accepted
    assert report.skipped_batches == 4 and report.written == accepted - len(first.rows)
    assert report.rejected == {"zero_norm": 1, "non_finite": 1, "duplicate_key": 1}
    assert "rejected duplicate_key=1, non_finite=1, zero_norm=1" in out.getvalue()
    kept = next(r for r in first.rows + second.rows if r.key.entity_id == "f1-6")
    assert kept.source_version == 1006 and kept.attributes == {"cat": "c0"}
    letters = pq.read_table(dead / "part-1.rejected.parquet").to_pylist()
    assert sorted(r["reason"] for r in letters) == ["duplicate_key", "non_finite", "zero_norm"]
    # A third run finds everything done and writes nothing.
    third = Recording()
    assert backfill(job, third, ckpt, dead, progress=None).written == 0 and not third.rows


def test_a_checkpoint_is_bound_to_its_destination(tmp_path: Path) -> None:
    """The same backfill into another cluster skipped every file as done."""
    src = dataset(tmp_path)
    ckpt, dead = tmp_path / "ckpt.json", tmp_path / "dead"
    job = BackfillJob(src, TARGET, DIM, "item", batch_size=20, destination="a:1")
    backfill(job, Recording(), ckpt, dead, progress=None)
    other = BackfillJob(src, TARGET, DIM, "item", batch_size=20, destination="b:1")
    with pytest.raises(FailedPrecondition, match="belongs to job"):
        backfill(other, Recording(), ckpt, dead, progress=None)


def test_a_dead_letter_directory_inside_the_source_is_refused(tmp_path: Path) -> None:
    """Its rejected-row files would be read as source by the next run."""
    src = dataset(tmp_path)
    job = BackfillJob(src, TARGET, DIM, "item", batch_size=20)
    sink = Recording()
    with pytest.raises(InvalidArgument, match="inside the source"):
        backfill(job, sink, tmp_path / "c.json", src / "rejected", progress=None)
    assert not sink.rows and not (src / "rejected").exists()


def test_a_file_mostly_rejected_stops_the_job_before_writing_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_file(src / "a.parquet", ["x", "y", "z"], np.zeros((3, DIM)), [1, 2, 3])
    sink = Recording()
    job = BackfillJob(src, TARGET, DIM, "item", reference=None)
    with pytest.raises(FailedPrecondition, match="3 of 3 rows rejected .*zero_norm=3"):
        backfill(job, sink, tmp_path / "c.json", tmp_path / "d", progress=None)
    assert not sink.rows


def test_a_source_file_that_changed_is_refused(tmp_path: Path) -> None:
    src = dataset(tmp_path)
    job = BackfillJob(src, TARGET, DIM, "item", batch_size=20)
    ckpt = tmp_path / "ckpt.json"
    with pytest.raises(ConnectionError):
        backfill(job, Recording(fail_after=1), ckpt, tmp_path / "d", progress=None)
    write_file(src / "part-0.parquet", ["a"], np.ones((1, DIM)), [1])
    with pytest.raises(FailedPrecondition, match="must not change during a backfill"):
        backfill(job, Recording(), ckpt, tmp_path / "d", progress=None)


T_US = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z


def _with_created_at(path: Path, created_at: pa.Array) -> None:
    """`write_file`'s rows without a source_version: created_at gives it."""
    write_file(path, ["a", "b"], np.ones((2, DIM)), [0, 0])
    table = pq.read_table(path).drop_columns(["source_version"])
    pq.write_table(table.append_column("created_at", created_at), path)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_created_at_is_a_microsecond_source_version_in_any_unit(tmp_path: Path, unit: str) -> None:
    """Found in review: created_at was cast to int64 in the file's own unit,
    so nanoseconds beat every later live write (µs) for good."""
    per_us = {"s": 1 / 1_000_000, "ms": 1 / 1000, "us": 1, "ns": 1000}[unit]
    raw = [int(T_US * per_us), int((T_US + 2_000_000) * per_us) + (7 if unit == "ns" else 0)]
    _with_created_at(tmp_path / "src" / "a.parquet", pa.array(raw, pa.timestamp(unit, "UTC")))
    sink = Recording()
    job = BackfillJob(tmp_path / "src", TARGET, DIM, "item")
    backfill(job, sink, tmp_path / "ck.json", tmp_path / "dead", progress=None)
    assert [r.source_version for r in sink.rows] == [T_US, T_US + 2_000_000]


def test_integer_created_at_in_another_unit_is_refused(tmp_path: Path) -> None:
    _with_created_at(tmp_path / "src" / "a.parquet", pa.array([T_US * 1000] * 2, pa.int64()))
    sink = Recording()
    job = BackfillJob(tmp_path / "src", TARGET, DIM, "item")
    with pytest.raises(InvalidArgument, match=r"a\.parquet: row 0: created_at .*nanoseconds"):
        backfill(job, sink, tmp_path / "ck.json", tmp_path / "dead", progress=None)
    assert not sink.rows


def test_rows_without_a_key_or_a_vector_are_dead_lettered(tmp_path: Path) -> None:
    """Found in review: a null vector crashed the job (flatten() skips null
    slots, so the matrix lost a row), and a null or empty entity_id was sent."""
    src = tmp_path / "src" / "a.parquet"
    write_file(src, [f"i{n}" for n in range(8)], np.ones((8, DIM)), range(1, 9))
    table = pq.read_table(src)
    vectors = table.column("vector").to_pylist()
    vectors[1] = None
    table = table.set_column(3, "vector", pa.array(vectors, table.schema.field("vector").type))
    ids = table.column("entity_id").to_pylist()
    ids[2], ids[3] = None, ""
    table = table.set_column(2, "entity_id", pa.array(ids, pa.string()))
    tenants = table.column("tenant_id").to_pylist()
    tenants[4] = None
    pq.write_table(table.set_column(0, "tenant_id", pa.array(tenants, pa.string())), src)
    sink, dead = Recording(), tmp_path / "dead"
    job = BackfillJob(src.parent, TARGET, DIM, "item", max_reject_share=0.9)

    report = backfill(job, sink, tmp_path / "ck.json", dead, progress=None)

    assert [r.key.entity_id for r in sink.rows] == ["i0", "i5", "i6", "i7"]
    assert all(np.array_equal(r.vector, np.ones(DIM)) for r in sink.rows)
    assert report.rejected == {"missing_vector": 1, "missing_key": 3}
    letters = pq.read_table(next(dead.rglob("*.parquet"))).column("reason").to_pylist()
    assert letters == ["missing_vector", "missing_key", "missing_key", "missing_key"]


def test_dead_letters_mirror_the_source_tree(tmp_path: Path) -> None:
    """Found in review: dead-letter names flattened directories with "__",
    so `a/b.parquet`'s rejected rows were overwritten by `a__b.parquet`'s."""
    src, dead = tmp_path / "src", tmp_path / "dead"
    vecs = np.ones((4, DIM))
    vecs[0] = 0.0  # zero_norm
    write_file(src / "a" / "b.parquet", ["x0", "x1", "x2", "x3"], vecs, [1, 2, 3, 4])
    write_file(src / "a__b.parquet", ["y0", "y1", "y2", "y3"], vecs, [1, 2, 3, 4])
    job = BackfillJob(src, TARGET, DIM, "item")
    assert backfill(job, Recording(), tmp_path / "ck.json", dead, progress=None).rejected == {
        "zero_norm": 2
    }
    assert pq.read_table(dead / "a" / "b.rejected.parquet")["entity_id"].to_pylist() == ["x0"]
    assert pq.read_table(dead / "a__b.rejected.parquet")["entity_id"].to_pylist() == ["y0"]


def test_a_batch_costs_the_same_in_a_small_and_a_large_file(tmp_path: Path) -> None:
    """Found in review: every batch converted the whole file's key and
    attribute columns to Python lists, so a file cost O(rows² / batch)."""

    def seconds_per_batch(n: int) -> float:
        path = tmp_path / f"{n}.parquet"
        write_file(path, [f"i{i}" for i in range(n)], np.ones((n, DIM)), range(1, n + 1))
        table = pq.read_table(path)
        vectors, versions = np.ones((n, DIM), np.float32), np.arange(1, n + 1)
        idx = np.arange(n // 2, n // 2 + 100)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            rows = _rows(table, idx, vectors, versions)
            best = min(best, time.perf_counter() - start)
        assert [r.key.entity_id for r in rows] == [f"i{i}" for i in idx]
        assert rows[0].attributes == {"cat": f"c{idx[0] % 3}"}
        return best

    small, large = seconds_per_batch(1_000), seconds_per_batch(200_000)
    # Linear: about 1x; the whole-file conversion made it ~100x.
    assert large < 10 * small, (small, large)


@pytest.mark.parametrize(
    ("limits", "says"),
    [
        ({"batch_size": -5}, "batch size -5; expected at least 1"),
        ({"batch_size": 0}, "batch size 0; expected at least 1"),
        ({"max_rows_per_s": -1.0}, "max rows per second -1.0"),
        ({"max_rows_per_s": float("nan")}, "max rows per second nan"),
        ({"max_reject_share": 1.5}, "max reject share 1.5"),
    ],
)
def test_a_job_with_impossible_limits_is_refused(
    tmp_path: Path, limits: dict[str, float], says: str
) -> None:
    """A negative batch size read no row and marked every file done (exit 0);
    0 crashed with a bare ValueError."""
    with pytest.raises(InvalidArgument, match=re.escape(says)):
        BackfillJob(tmp_path, TARGET, DIM, "item", **limits)  # type: ignore[arg-type]


def test_the_cli_refuses_a_batch_size_below_one_with_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    argv = ["embeddings", "backfill", "--from", str(tmp_path), "--to", "items@v2"]
    code = main([*argv, "--coordinator", "127.0.0.1:1", "--batch-size", "-5"])
    err = capsys.readouterr().err
    assert (code, err.strip()) == (
        1,
        "error (INVALID_ARGUMENT): backfill: batch size -5; expected at least 1",
    )
