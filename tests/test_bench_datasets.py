"""Benchmark data must be read faithfully and its ground truth must be exact, or recall lies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from benchmarks.datasets import (
    DATA_DIR_ENV,
    REPO_ROOT,
    Dataset,
    Metric,
    data_dir,
    load_file,
    load_real,
)
from benchmarks.ground_truth import (
    cached_ground_truth,
    exact_ground_truth,
    recall_at_k,
    with_ground_truth,
)
from benchmarks.hdf5_files import load_hdf5, write_hdf5
from benchmarks.synthetic_data import gaussian_mixture
from benchmarks.vecs_files import (
    read_bvecs,
    read_fvecs,
    read_ivecs,
    read_vecs,
    write_bvecs,
    write_fvecs,
    write_ivecs,
)

# --------------------------------------------------------------------------------------------
# vecs formats
# --------------------------------------------------------------------------------------------


def test_fvecs_round_trip_and_limit(tmp_path: Path) -> None:
    vectors = np.random.default_rng(0).normal(size=(37, 13)).astype(np.float32)
    path = tmp_path / "x.fvecs"
    write_fvecs(path, vectors)
    assert path.stat().st_size == 37 * (4 + 13 * 4)
    back = read_fvecs(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, vectors)
    np.testing.assert_array_equal(read_fvecs(path, limit=5), vectors[:5])
    np.testing.assert_array_equal(read_fvecs(path, limit=1000), vectors)
    assert read_fvecs(path, limit=0).shape == (0, 13)


def test_ivecs_round_trip_keeps_extreme_ids(tmp_path: Path) -> None:
    rows = np.array([[0, -1, 2**31 - 1], [-(2**31), 5, 6]], dtype=np.int64)
    path = tmp_path / "gt.ivecs"
    write_ivecs(path, rows)
    back = read_ivecs(path)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, rows)


def test_bvecs_round_trip_with_odd_dimension(tmp_path: Path) -> None:
    # Dimension 5 makes the row size (9 bytes) no multiple of 4, as real .bvecs files can be.
    vectors = np.random.default_rng(1).integers(0, 256, size=(11, 5)).astype(np.uint8)
    path = tmp_path / "x.bvecs"
    write_bvecs(path, vectors)
    np.testing.assert_array_equal(read_bvecs(path), vectors)
    np.testing.assert_array_equal(read_vecs(path, limit=3), vectors[:3])


def test_reader_rejects_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "x.fvecs"
    write_fvecs(path, np.ones((4, 8), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="not a multiple of the row size"):
        read_fvecs(path)


def test_reader_rejects_rows_with_different_dimensions(tmp_path: Path) -> None:
    # Same byte length per row, but row 2 claims another dimension: corrupt or not vecs at all.
    raw = np.array([[3, 1, 2, 3], [3, 4, 5, 6], [7, 7, 8, 9]], dtype="<i4")
    path = tmp_path / "x.ivecs"
    raw.tofile(path)
    with pytest.raises(ValueError, match="row 2 declares dimension 7, expected 3"):
        read_ivecs(path)


@pytest.mark.parametrize("payload", [b"", b"\x01\x00", np.array([0], "<i4").tobytes()])
def test_reader_rejects_missing_or_bad_header(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "x.fvecs"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="too short|dimension 0"):
        read_fvecs(path)


def test_reading_bvecs_as_fvecs_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "x.bvecs"
    write_bvecs(path, np.arange(30, dtype=np.uint8).reshape(3, 10))
    with pytest.raises(ValueError):
        read_fvecs(path)


@pytest.mark.parametrize(
    ("writer", "values", "message"),
    [
        (write_bvecs, [[0, 256]], "integers in"),
        (write_bvecs, [[0.5, 1.0]], "integers in"),
        (write_ivecs, [[2**31]], "integers in"),
        (write_fvecs, [[np.nan, 1.0]], "finite"),
        (write_fvecs, [[1e300]], "overflow"),
        (write_fvecs, np.zeros((0, 4)), "non-empty 2-D"),
        (write_fvecs, [1.0, 2.0], "non-empty 2-D"),
    ],
)
def test_writers_refuse_values_the_format_cannot_hold(
    tmp_path: Path, writer: Callable[[Path, Any], None], values: object, message: str
) -> None:
    path = tmp_path / "x.vecs"
    with pytest.raises(ValueError, match=message):
        writer(path, values)
    assert not path.exists()


def test_read_vecs_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown vector file suffix"):
        read_vecs(tmp_path / "x.npy")


# --------------------------------------------------------------------------------------------
# Real sets
# --------------------------------------------------------------------------------------------


def test_data_dir_defaults_next_to_repo_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert data_dir() == REPO_ROOT.parent / "shared" / "data"
    monkeypatch.setenv(DATA_DIR_ENV, "/somewhere/else")
    assert data_dir() == Path("/somewhere/else")


def test_missing_real_data_names_the_env_var(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=DATA_DIR_ENV):
        load_real("bigann10k", directory=tmp_path)
    with pytest.raises(ValueError, match="unknown real dataset"):
        load_real("sift1b")


@pytest.mark.parametrize(
    ("name", "n_base", "n_queries", "dim"),
    [("bigann10k", 10_000, 100, 128), ("fmnistsmall", 1_000, 500, 784)],
)
def test_real_sets_load_with_documented_shapes(
    name: str, n_base: int, n_queries: int, dim: int
) -> None:
    dataset = load_real(name)
    assert dataset.base.shape == (n_base, dim) and dataset.base.dtype == np.float32
    assert dataset.queries.shape == (n_queries, dim) and dataset.queries.dtype == np.float32
    assert dataset.ground_truth is not None
    assert dataset.ground_truth.shape == (n_queries, 100)
    assert dataset.metric == "l2"
    # uint8 pixels/SIFT bins: integral values in [0, 255] survive the float32 conversion.
    assert dataset.base.min() >= 0 and dataset.base.max() <= 255
    np.testing.assert_array_equal(dataset.base, np.round(dataset.base))


def test_bigann10k_queries_are_the_first_base_vectors() -> None:
    dataset = load_real("bigann10k")
    np.testing.assert_array_equal(dataset.queries, dataset.base[:100])


def squared_l2_of(dataset: Dataset, ids: np.ndarray) -> np.ndarray:
    diff = dataset.base[ids].astype(np.float64) - dataset.queries.astype(np.float64)[:, None, :]
    return (diff**2).sum(axis=2)


def test_exact_ground_truth_reproduces_third_party_bigann10k() -> None:
    dataset = load_real("bigann10k")
    assert dataset.ground_truth is not None
    ours = exact_ground_truth(dataset.base, dataset.queries, 100, "l2", chunk_size=32)
    # The first 10 neighbours agree id for id, in order, for every query.
    np.testing.assert_array_equal(ours[:, :10], dataset.ground_truth[:, :10])
    assert recall_at_k(ours, dataset.ground_truth, 10) == 1.0
    # Deeper down, 4 queries hold pairs at exactly equal (integer) distance that the third
    # party ordered differently from our lower-id rule, so compare the top 100 by distance.
    np.testing.assert_array_equal(
        squared_l2_of(dataset, ours), squared_l2_of(dataset, dataset.ground_truth)
    )


def test_exact_ground_truth_reproduces_third_party_fmnistsmall() -> None:
    dataset = load_real("fmnistsmall")
    ours = exact_ground_truth(dataset.base, dataset.queries, 100, "l2", base_chunk_size=300)
    np.testing.assert_array_equal(ours, dataset.ground_truth)


# --------------------------------------------------------------------------------------------
# Exact ground truth: chunked equals brute force
# --------------------------------------------------------------------------------------------


def brute_force_topk(base: np.ndarray, queries: np.ndarray, k: int, metric: Metric) -> np.ndarray:
    """Reference: the full distance matrix, then a full sort by (distance, id)."""
    b, q = base.astype(np.float64), queries.astype(np.float64)
    if metric == "l2":
        dist = ((q[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    else:
        if metric == "cosine":
            b = b / np.linalg.norm(b, axis=1, keepdims=True)
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
        dist = -(q[:, None, :] * b[None, :, :]).sum(axis=2)
    ids = np.broadcast_to(np.arange(len(base)), dist.shape)
    return np.lexsort((ids, dist), axis=-1)[:, :k]


def tie_heavy_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Small integers in few dimensions plus duplicated rows: many exactly equal distances, so
    # the lower-id tie-break is exercised (and float64 arithmetic on them is exact).
    rng = np.random.default_rng(seed)
    base = rng.integers(-2, 3, size=(120, 4)).astype(np.float32)
    base[60:90] = base[:30]
    queries = rng.integers(-2, 3, size=(17, 4)).astype(np.float32)
    return base, queries


@pytest.mark.parametrize("metric", ["l2", "inner_product", "cosine"])
@pytest.mark.parametrize(("chunk_size", "base_chunk_size"), [(1, 1), (3, 7), (5, 50), (512, 4096)])
def test_chunked_ground_truth_equals_brute_force(
    metric: Metric, chunk_size: int, base_chunk_size: int
) -> None:
    if metric == "cosine":
        # Normalizing rounds, so equal-direction ties are not exact; use continuous data.
        rng = np.random.default_rng(5)
        base = rng.normal(size=(120, 6)).astype(np.float32)
        queries = rng.normal(size=(17, 6)).astype(np.float32)
    else:
        base, queries = tie_heavy_data(seed=5)
    k = 25  # larger than several base chunk sizes above, so chunk winners really are merged
    got = exact_ground_truth(base, queries, k, metric, chunk_size, base_chunk_size)
    assert got.dtype == np.int32 and got.shape == (17, k)
    np.testing.assert_array_equal(got, brute_force_topk(base, queries, k, metric))


@settings(max_examples=60, deadline=None)
@given(
    base=arrays(np.int8, st.tuples(st.integers(1, 40), st.just(3)), elements=st.integers(-3, 3)),
    n_queries=st.integers(1, 6),
    metric=st.sampled_from(["l2", "inner_product"]),
    data=st.data(),
)
def test_chunked_ground_truth_equals_brute_force_on_any_tie_pattern(
    base: np.ndarray, n_queries: int, metric: Metric, data: st.DataObject
) -> None:
    queries = base[data.draw(st.lists(st.integers(0, len(base) - 1), min_size=n_queries))]
    queries = np.concatenate([queries, np.full((1, 3), 1, dtype=np.int8)])
    k = data.draw(st.integers(1, len(base)))
    base_chunk = data.draw(st.integers(1, 10))
    got = exact_ground_truth(base, queries, k, metric, chunk_size=2, base_chunk_size=base_chunk)
    np.testing.assert_array_equal(got, brute_force_topk(base, queries, k, metric))


def test_exact_ground_truth_refuses_bad_input() -> None:
    base = np.ones((5, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="k must be in"):
        exact_ground_truth(base, base, 6, "l2")
    with pytest.raises(ValueError, match="same dimension"):
        exact_ground_truth(base, np.ones((2, 4), dtype=np.float32), 1, "l2")
    with pytest.raises(ValueError, match="zero vectors"):
        exact_ground_truth(np.zeros((5, 3), dtype=np.float32), base, 1, "cosine")
    with pytest.raises(ValueError, match="unknown metric"):
        exact_ground_truth(base, base, 1, "hamming")  # type: ignore[arg-type]  # the wrong metric is the point


def test_cached_ground_truth_is_reused_and_keyed_by_k_and_metric(tmp_path: Path) -> None:
    dataset = gaussian_mixture(300, 8, 4, 20, seed=3)
    first = cached_ground_truth(dataset, 10, tmp_path)
    np.testing.assert_array_equal(
        first, exact_ground_truth(dataset.base, dataset.queries, 10, "l2")
    )
    (path,) = tmp_path.glob("*.ivecs")
    # Plant a different (valid) answer: a second call must return the file, proving reuse.
    write_ivecs(path, first[:, ::-1])
    np.testing.assert_array_equal(cached_ground_truth(dataset, 10, tmp_path), first[:, ::-1])
    # A cache file of the wrong shape is not trusted but recomputed.
    write_ivecs(path, first[:, :3])
    np.testing.assert_array_equal(cached_ground_truth(dataset, 10, tmp_path), first)
    cached_ground_truth(dataset, 5, tmp_path)
    cached_ground_truth(replace(dataset, metric="cosine"), 10, tmp_path)
    assert len(list(tmp_path.glob("*.ivecs"))) == 3


def test_with_ground_truth_attaches_exact_answers(tmp_path: Path) -> None:
    dataset = with_ground_truth(gaussian_mixture(200, 8, 4, 10, seed=9), 7, tmp_path)
    assert dataset.ground_truth is not None and dataset.ground_truth.shape == (10, 7)
    truth = exact_ground_truth(dataset.base, dataset.queries, 7, "l2")
    assert recall_at_k(truth, dataset.ground_truth, 7) == 1.0


# --------------------------------------------------------------------------------------------
# Recall
# --------------------------------------------------------------------------------------------

TRUE = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])


def test_recall_is_one_for_perfect_answers_in_any_order() -> None:
    assert recall_at_k(TRUE, TRUE, 4) == 1.0
    assert recall_at_k(TRUE[:, ::-1], TRUE, 4) == 1.0


def test_recall_planted_half() -> None:
    found = np.array([[0, 1, 90, 91], [7, 6, 92, 93]])
    assert recall_at_k(found, TRUE, 4) == 0.5
    # Only found[:k] and true[:k] count: at k=2 row 0 finds both, row 1 none of {4, 5}.
    assert recall_at_k(found, TRUE, 2) == 0.5


def test_recall_counts_padding_and_short_rows_as_misses() -> None:
    padded = np.array([[0, 1, -1, -1], [4, -1, -1, -1]])
    assert recall_at_k(padded, TRUE, 4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert recall_at_k(np.array([[3], [4]]), TRUE, 4) == 0.25
    assert recall_at_k(np.empty((2, 0), dtype=np.int64), TRUE, 4) == 0.0


def test_recall_counts_a_repeated_hit_once() -> None:
    assert recall_at_k(np.array([[0, 0, 0, 0], [4, 4, 5, 5]]), TRUE, 4) == pytest.approx(0.375)


def test_recall_never_matches_ids_across_rows() -> None:
    assert recall_at_k(TRUE[::-1], TRUE, 4) == 0.0


def test_recall_with_fewer_true_neighbours_than_k() -> None:
    # Under a selective filter only 2 items match query 0: finding both is perfect recall.
    true = np.array([[0, 1, -1, -1], [4, 5, 6, 7]])
    found = np.array([[1, 0, 9, 8], [4, 5, 8, 9]])
    assert recall_at_k(found, true, 4) == pytest.approx((1.0 + 0.5) / 2)


def test_recall_refuses_malformed_input() -> None:
    with pytest.raises(ValueError, match="one row per query"):
        recall_at_k(TRUE[:1], TRUE, 4)
    with pytest.raises(ValueError, match="k must be in"):
        recall_at_k(TRUE, TRUE, 5)
    with pytest.raises(ValueError, match="integer ids"):
        recall_at_k(TRUE.astype(np.float32), TRUE, 4)


# --------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------


def assert_same_dataset(a: Dataset, b: Dataset) -> None:
    np.testing.assert_array_equal(a.base, b.base)
    np.testing.assert_array_equal(a.queries, b.queries)
    np.testing.assert_array_equal(a.tenants, b.tenants)
    assert a.attributes.keys() == b.attributes.keys()
    for name in a.attributes:
        assert a.attributes[name].tolist() == b.attributes[name].tolist()


def test_gaussian_mixture_is_deterministic_per_seed() -> None:
    a = gaussian_mixture(2_000, 16, 10, 50, seed=42, n_tenants=4)
    assert_same_dataset(a, gaussian_mixture(2_000, 16, 10, 50, seed=42, n_tenants=4))
    other = gaussian_mixture(2_000, 16, 10, 50, seed=43, n_tenants=4)
    assert not np.array_equal(a.base, other.base)
    # Separate streams: asking for more queries leaves the base untouched.
    np.testing.assert_array_equal(a.base, gaussian_mixture(2_000, 16, 10, 80, seed=42).base)


def test_gaussian_mixture_is_clustered() -> None:
    dataset = gaussian_mixture(3_000, 32, 12, 100, seed=7)
    labels = dataset.attributes["cluster"]
    present = np.unique(labels)
    centroids = np.stack([dataset.base[labels == c].mean(axis=0) for c in present])
    dist = ((dataset.base[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    assigned = present[dist.argmin(axis=1)]
    assert (assigned == labels).mean() > 0.95
    # Points sit much closer to their own centre than the centres are to each other.
    own = np.sqrt(dist[np.arange(len(labels)), np.searchsorted(present, labels)]).mean()
    centre_gaps = np.sqrt(((centroids[:, None] - centroids[None]) ** 2).sum(axis=2))
    assert own < 0.5 * centre_gaps[np.triu_indices(len(present), 1)].min()


def test_gaussian_mixture_queries_are_fresh_draws_near_the_data() -> None:
    dataset = gaussian_mixture(1_000, 16, 8, 40, seed=1)
    nearest = exact_ground_truth(dataset.base, dataset.queries, 1, "l2")[:, 0]
    gaps = np.linalg.norm(dataset.base[nearest] - dataset.queries, axis=1)
    assert (gaps > 0).all()  # not copies of base rows
    spread = np.linalg.norm(dataset.base - dataset.base.mean(axis=0), axis=1).mean()
    assert np.median(gaps) < 0.5 * spread  # but inside the mixture, not out in empty space


def test_gaussian_mixture_attributes_and_tenants() -> None:
    dataset = gaussian_mixture(5_000, 8, 6, 10, seed=11, n_tenants=5, metric="cosine")
    assert dataset.metric == "cosine" and dataset.base.dtype == np.float32
    attrs = dataset.attributes
    assert set(attrs) == {"cluster", "category", "price", "year", "tags"}
    assert all(len(values) == 5_000 for values in attrs.values())
    assert attrs["category"].dtype.kind == "U" and len(np.unique(attrs["category"])) > 3
    assert (attrs["price"] > 0).all()
    assert attrs["year"].min() >= 2000 and attrs["year"].max() <= 2025
    assert all(isinstance(tags, list) and len(tags) <= 3 for tags in attrs["tags"])
    assert any(tags for tags in attrs["tags"]) and any(not tags for tags in attrs["tags"])
    assert dataset.tenants is not None
    tenants, counts = np.unique(dataset.tenants, return_counts=True)
    assert len(tenants) == 5 and counts.max() > 2 * counts.min()  # skewed, like real tenants


def test_dataset_rejects_inconsistent_arrays() -> None:
    base = np.ones((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="float32"):
        Dataset("x", base.astype(np.float64), base, None, "l2")
    with pytest.raises(ValueError, match="base dimension"):
        Dataset("x", base, np.ones((2, 5), dtype=np.float32), None, "l2")
    with pytest.raises(ValueError, match="one per query"):
        Dataset("x", base, base, np.zeros((3, 1), dtype=np.int32), "l2")
    with pytest.raises(ValueError, match="base rows"):
        Dataset("x", base, base, np.full((4, 1), 4, dtype=np.int32), "l2")
    with pytest.raises(ValueError, match="one entry per base row"):
        Dataset("x", base, base, None, "l2", attributes={"year": np.arange(3)})


# --------------------------------------------------------------------------------------------
# User files and HDF5
# --------------------------------------------------------------------------------------------


def test_load_file_reads_user_vecs(tmp_path: Path) -> None:
    source = gaussian_mixture(100, 6, 3, 9, seed=2)
    truth = exact_ground_truth(source.base, source.queries, 5, "inner_product")
    write_fvecs(tmp_path / "b.fvecs", source.base)
    write_fvecs(tmp_path / "q.fvecs", source.queries)
    write_ivecs(tmp_path / "gt.ivecs", truth)
    dataset = load_file(
        tmp_path / "b.fvecs", tmp_path / "q.fvecs", tmp_path / "gt.ivecs", "inner_product"
    )
    assert dataset.name == "b" and dataset.metric == "inner_product"
    np.testing.assert_array_equal(dataset.base, source.base)
    np.testing.assert_array_equal(dataset.ground_truth, truth)


@pytest.mark.parametrize("metric", ["l2", "cosine", "inner_product"])
def test_hdf5_round_trip(tmp_path: Path, metric: Metric) -> None:
    source = gaussian_mixture(150, 6, 3, 12, seed=4, metric=metric)
    truth = exact_ground_truth(source.base, source.queries, 10, source.metric)
    source = replace(source, ground_truth=truth)
    path = tmp_path / "set.hdf5"
    write_hdf5(path, source)
    loaded = load_hdf5(path)
    assert loaded.name == "set" and loaded.metric == metric
    np.testing.assert_array_equal(loaded.base, source.base)
    np.testing.assert_array_equal(loaded.queries, source.queries)
    np.testing.assert_array_equal(loaded.ground_truth, source.ground_truth)
    with h5py.File(path, "r") as handle:
        distances = handle["distances"][()]
    assert distances.shape == (12, 10)
    assert (np.diff(distances, axis=1) >= -1e-5).all()  # nearest first, as ann-benchmarks has


def test_hdf5_reads_ann_benchmarks_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "glove-4-angular.hdf5"
    with h5py.File(path, "w") as handle:
        handle.attrs["distance"] = "angular"
        handle.create_dataset("train", data=rng.normal(size=(30, 4)))  # float64, as some ship
        handle.create_dataset("test", data=rng.normal(size=(3, 4)).astype(np.float32))
        handle.create_dataset("neighbors", data=np.tile(np.arange(5, dtype=np.int64), (3, 1)))
    dataset = load_hdf5(path)
    assert dataset.metric == "cosine" and dataset.base.dtype == np.float32
    assert dataset.ground_truth is not None and dataset.ground_truth.dtype == np.int32
    assert dataset.ground_truth.shape == (3, 5)


def test_hdf5_refuses_unsupported_distance(tmp_path: Path) -> None:
    path = tmp_path / "bits.hdf5"
    with h5py.File(path, "w") as handle:
        handle.attrs["distance"] = "hamming"
        handle.create_dataset("train", data=np.zeros((3, 2)))
        handle.create_dataset("test", data=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="hamming"):
        load_hdf5(path)
