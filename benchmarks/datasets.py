"""Evaluation data for vecshard benchmarks: file formats, real and synthetic sets, exact answers.

Recall numbers are only as good as the ground truth behind them, so this module keeps three
things together: readers and writers for the formats public benchmarks ship in (``.fvecs``,
``.ivecs``, ``.bvecs``, ann-benchmarks HDF5), seeded synthetic data that is clustered like real
embeddings (random Gaussian vectors are a pathological case where nothing beats brute force),
and an exact, deterministic top-k that every benchmark compares against.

Data directory: ``$VECSHARD_DATA_DIR`` when set, else ``<repo root>/../shared/data``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

Metric = Literal["l2", "inner_product", "cosine"]
METRICS: tuple[str, ...] = get_args(Metric)

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "VECSHARD_DATA_DIR"
DEFAULT_CACHE_DIR = REPO_ROOT / "benchmarks" / "results" / "cache"

# name -> (base rows, query rows, dim, ground-truth columns); see shared/data/README.md.
REAL_DATASETS: dict[str, tuple[int, int, int, int]] = {
    "bigann10k": (10_000, 100, 128, 100),
    "fmnistsmall": (1_000, 500, 784, 100),
}

_VECS_DTYPES: dict[str, np.dtype[Any]] = {
    ".fvecs": np.dtype("<f4"),
    ".ivecs": np.dtype("<i4"),
    ".bvecs": np.dtype("u1"),
}

# Bumped whenever the ground-truth computation changes, so stale cache files are never reused.
_GROUND_TRUTH_VERSION = b"vecshard-gt-v1"


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """One evaluation set, validated up front so a benchmark never runs on mismatched arrays.

    ``eq=False`` because element-wise array comparison has no single truth value; compare
    fields with numpy instead.
    """

    name: str
    base: NDArray[np.float32]
    queries: NDArray[np.float32]
    ground_truth: NDArray[np.int32] | None
    metric: Metric
    attributes: Mapping[str, NDArray[Any]] = field(default_factory=dict)
    tenants: NDArray[Any] | None = None

    def __post_init__(self) -> None:
        _check_vectors("base", self.base)
        _check_vectors("queries", self.queries)
        if self.queries.shape[1] != self.base.shape[1]:
            raise ValueError(
                f"{self.name}: queries have dimension {self.queries.shape[1]}, "
                f"expected the base dimension {self.base.shape[1]}"
            )
        _check_metric(self.metric)
        if self.ground_truth is not None:
            _check_ground_truth(self.ground_truth, self.queries.shape[0], self.base.shape[0])
        for attr_name, values in self.attributes.items():
            _check_per_row(f"attribute {attr_name!r}", values, self.base.shape[0])
        if self.tenants is not None:
            _check_per_row("tenants", self.tenants, self.base.shape[0])

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])

    @property
    def n_base(self) -> int:
        return int(self.base.shape[0])

    @property
    def n_queries(self) -> int:
        return int(self.queries.shape[0])


def _check_vectors(what: str, array: NDArray[Any]) -> None:
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.dtype != np.float32:
        raise ValueError(f"{what} must be a 2-D float32 array, got {_describe(array)}")
    if array.shape[1] == 0:
        raise ValueError(f"{what} must have dimension >= 1")


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")


def _check_ground_truth(gt: NDArray[Any], n_queries: int, n_base: int) -> None:
    if not isinstance(gt, np.ndarray) or gt.ndim != 2 or gt.dtype != np.int32:
        raise ValueError(f"ground_truth must be a 2-D int32 array, got {_describe(gt)}")
    if gt.shape[0] != n_queries:
        raise ValueError(
            f"ground_truth has {gt.shape[0]} rows, expected one per query ({n_queries})"
        )
    if gt.size and (gt.min() < -1 or gt.max() >= n_base):
        raise ValueError(f"ground_truth ids must be base rows in [0, {n_base}) or -1 padding")


def _check_per_row(what: str, values: NDArray[Any], n_base: int) -> None:
    if not isinstance(values, np.ndarray) or values.ndim != 1 or len(values) != n_base:
        raise ValueError(f"{what} must be a 1-D array with one entry per base row ({n_base})")


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return type(value).__name__


# --------------------------------------------------------------------------------------------
# .fvecs / .ivecs / .bvecs
# --------------------------------------------------------------------------------------------


def read_fvecs(path: str | os.PathLike[str], limit: int | None = None) -> NDArray[np.float32]:
    """Read float32 vectors (TEXMEX format: per row an int32 dimension, then the values)."""
    return _read_vecs(Path(path), _VECS_DTYPES[".fvecs"], limit).astype(np.float32, copy=False)


def read_ivecs(path: str | os.PathLike[str], limit: int | None = None) -> NDArray[np.int32]:
    """Read int32 rows, the usual container for ground-truth neighbour ids."""
    return _read_vecs(Path(path), _VECS_DTYPES[".ivecs"], limit).astype(np.int32, copy=False)


def read_bvecs(path: str | os.PathLike[str], limit: int | None = None) -> NDArray[np.uint8]:
    """Read uint8 vectors (BIGANN/SIFT1B ship this way to save 4x space)."""
    return _read_vecs(Path(path), _VECS_DTYPES[".bvecs"], limit)


def read_vecs(path: str | os.PathLike[str], limit: int | None = None) -> NDArray[Any]:
    """Read any of the three formats, chosen by file suffix, for user-supplied file sets."""
    path = Path(path)
    return _read_vecs(path, _dtype_for_suffix(path), limit)


def write_fvecs(path: str | os.PathLike[str], vectors: ArrayLike) -> None:
    """Write float32 vectors; values are cast to float32 and must stay finite."""
    _write_vecs(Path(path), vectors, _VECS_DTYPES[".fvecs"])


def write_ivecs(path: str | os.PathLike[str], rows: ArrayLike) -> None:
    """Write int32 rows; values must fit int32 exactly (ids are never silently wrapped)."""
    _write_vecs(Path(path), rows, _VECS_DTYPES[".ivecs"])


def write_bvecs(path: str | os.PathLike[str], vectors: ArrayLike) -> None:
    """Write uint8 vectors; values must be integers in [0, 255]."""
    _write_vecs(Path(path), vectors, _VECS_DTYPES[".bvecs"])


def _dtype_for_suffix(path: Path) -> np.dtype[Any]:
    try:
        return _VECS_DTYPES[path.suffix]
    except KeyError:
        raise ValueError(
            f"{path}: unknown vector file suffix {path.suffix!r}; expected one of "
            f"{sorted(_VECS_DTYPES)}"
        ) from None


def _read_vecs(path: Path, dtype: np.dtype[Any], limit: int | None) -> NDArray[Any]:
    """Vectorized read: every row has the same byte length, so the file is one 2-D byte array.

    Validates the layout instead of trusting it, because reading a ``.bvecs`` file as ``.fvecs``
    (or a truncated download) would otherwise yield plausible-looking garbage.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    size = path.stat().st_size
    if size < 4:
        raise ValueError(f"{path}: {size} bytes is too short for a vecs file (no dimension header)")
    dim = int(np.fromfile(path, dtype="<i4", count=1)[0])
    if dim <= 0:
        raise ValueError(f"{path}: first row declares dimension {dim}, expected >= 1")
    row_bytes = 4 + dim * dtype.itemsize
    if size % row_bytes:
        raise ValueError(
            f"{path}: size {size} bytes is not a multiple of the row size {row_bytes} "
            f"(dimension {dim}, {dtype.itemsize}-byte values); truncated file or wrong format?"
        )
    n_rows = size // row_bytes if limit is None else min(limit, size // row_bytes)
    raw = np.fromfile(path, dtype=np.uint8, count=n_rows * row_bytes).reshape(n_rows, row_bytes)
    dims = np.ascontiguousarray(raw[:, :4]).view("<i4").ravel()
    bad = np.flatnonzero(dims != dim)
    if bad.size:
        raise ValueError(
            f"{path}: row {bad[0]} declares dimension {dims[bad[0]]}, expected {dim} "
            f"like row 0 ({bad.size} rows disagree)"
        )
    return np.ascontiguousarray(raw[:, 4:]).view(dtype).reshape(n_rows, dim)


def _write_vecs(path: Path, values: ArrayLike, dtype: np.dtype[Any]) -> None:
    converted = _convert_exactly(np.asarray(values), dtype)
    n_rows, dim = converted.shape
    out = np.empty((n_rows, 4 + dim * dtype.itemsize), dtype=np.uint8)
    out[:, :4] = np.array([dim], dtype="<i4").view(np.uint8)
    out[:, 4:] = converted.view(np.uint8).reshape(n_rows, -1)
    _atomic_write(path, out.tobytes())


def _convert_exactly(array: NDArray[Any], dtype: np.dtype[Any]) -> NDArray[Any]:
    """Cast to the file's dtype, refusing anything the format cannot hold faithfully."""
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"need a non-empty 2-D array (the format stores the dimension per row, so zero rows "
            f"cannot be represented), got shape {array.shape}"
        )
    if array.dtype.kind not in "biuf":
        raise ValueError(f"need numeric values, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("values must be finite (no NaN or Inf)")
    with np.errstate(over="ignore", invalid="ignore"):
        converted = np.ascontiguousarray(array.astype(dtype))
    if dtype.kind == "f":
        if not np.isfinite(converted).all():
            raise ValueError(f"values overflow {dtype}")
    elif not np.array_equal(converted, array):
        info = np.iinfo(dtype)
        raise ValueError(f"values must be integers in [{info.min}, {info.max}] for {dtype}")
    return converted


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write via a temporary file and rename, so a reader never sees a half-written cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# ann-benchmarks HDF5
# --------------------------------------------------------------------------------------------

# ann-benchmarks' "distance" attribute -> our metric, and back for export.
_HDF5_METRICS: dict[str, Metric] = {
    "euclidean": "l2",
    "l2": "l2",
    "angular": "cosine",
    "cosine": "cosine",
    "dot": "inner_product",
    "ip": "inner_product",
    "inner_product": "inner_product",
}
_HDF5_NAMES: dict[str, str] = {"l2": "euclidean", "cosine": "angular", "inner_product": "dot"}


def _import_h5py() -> ModuleType:
    """Import h5py only when HDF5 is used, so the core benchmarks do not need it."""
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(
            "reading or writing ann-benchmarks HDF5 files needs h5py: "
            "pip install h5py (it is part of vecshard's dev extras)"
        ) from exc
    return h5py


def load_hdf5(path: str | os.PathLike[str], name: str | None = None) -> Dataset:
    """Load an ann-benchmarks file (``train``, ``test``, ``neighbors``, attribute ``distance``)."""
    h5py = _import_h5py()
    path = Path(path)
    with h5py.File(path, "r") as handle:
        missing = [key for key in ("train", "test") if key not in handle]
        if missing:
            raise ValueError(f"{path}: not an ann-benchmarks file, missing datasets {missing}")
        distance = handle.attrs.get("distance", "euclidean")
        if isinstance(distance, bytes):
            distance = distance.decode()
        if distance not in _HDF5_METRICS:
            raise ValueError(
                f"{path}: distance {distance!r} is not supported; expected one of "
                f"{sorted(_HDF5_METRICS)}"
            )
        base = np.asarray(handle["train"][()], dtype=np.float32)
        queries = np.asarray(handle["test"][()], dtype=np.float32)
        gt = handle["neighbors"][()] if "neighbors" in handle else None
    ground_truth = None if gt is None else _ids_as_int32(np.asarray(gt), path)
    return Dataset(
        name=name or path.stem,
        base=base,
        queries=queries,
        ground_truth=ground_truth,
        metric=_HDF5_METRICS[distance],
    )


def write_hdf5(path: str | os.PathLike[str], dataset: Dataset) -> None:
    """Export in the ann-benchmarks layout so other tools can run on exactly our data.

    ``distances`` follow ann-benchmarks conventions: Euclidean (not squared) for l2,
    1 - cosine similarity for cosine, and negative inner product for inner_product.
    """
    h5py = _import_h5py()
    with h5py.File(Path(path), "w") as handle:
        handle.attrs["distance"] = _HDF5_NAMES[dataset.metric]
        handle.attrs["dimension"] = dataset.dim
        handle.create_dataset("train", data=dataset.base)
        handle.create_dataset("test", data=dataset.queries)
        if dataset.ground_truth is not None:
            handle.create_dataset("neighbors", data=dataset.ground_truth)
            distances = _neighbour_distances(dataset, dataset.ground_truth)
            handle.create_dataset("distances", data=distances)


def _neighbour_distances(dataset: Dataset, gt: NDArray[np.int32]) -> NDArray[np.float32]:
    neighbours = dataset.base[np.clip(gt, 0, None)].astype(np.float64)
    queries = dataset.queries.astype(np.float64)[:, None, :]
    if dataset.metric == "l2":
        dist = np.sqrt(((neighbours - queries) ** 2).sum(axis=2))
    elif dataset.metric == "cosine":
        dist = 1.0 - (_normalized(neighbours) * _normalized(queries)).sum(axis=2)
    else:
        dist = -(neighbours * queries).sum(axis=2)
    return np.where(gt >= 0, dist, np.inf).astype(np.float32)


def _ids_as_int32(ids: NDArray[Any], path: Path) -> NDArray[np.int32]:
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"{path}: neighbors must be a 2-D integer array, got {_describe(ids)}")
    if ids.size and (ids.min() < -1 or ids.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{path}: neighbor ids do not fit int32")
    return ids.astype(np.int32)


# --------------------------------------------------------------------------------------------
# Loading real and user-supplied sets
# --------------------------------------------------------------------------------------------


def data_dir() -> Path:
    """Where the shared evaluation files live: ``$VECSHARD_DATA_DIR`` or ``../shared/data``."""
    override = os.environ.get(DATA_DIR_ENV)
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


def load_real(name: str, directory: str | os.PathLike[str] | None = None) -> Dataset:
    """Load a shared real set with its third-party ground truth, uint8 converted to float32."""
    if name not in REAL_DATASETS:
        raise ValueError(f"unknown real dataset {name!r}; expected one of {sorted(REAL_DATASETS)}")
    root = Path(directory) if directory is not None else data_dir()
    base, query, truth = (
        root / f"{name}_{part}" for part in ("base.bvecs", "query.bvecs", "groundtruth.ivecs")
    )
    for path in (base, query, truth):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; set {DATA_DIR_ENV} to the directory holding the shared data"
            )
    dataset = load_file(base, query, truth, metric="l2", name=name)
    expected = REAL_DATASETS[name]
    gt_columns = 0 if dataset.ground_truth is None else dataset.ground_truth.shape[1]
    got = (dataset.n_base, dataset.n_queries, dataset.dim, gt_columns)
    if got != expected:
        raise ValueError(f"{name}: (base, queries, dim, gt columns) = {got}, expected {expected}")
    return dataset


def load_file(
    path_base: str | os.PathLike[str],
    path_query: str | os.PathLike[str],
    path_gt: str | os.PathLike[str] | None = None,
    metric: Metric = "l2",
    name: str | None = None,
) -> Dataset:
    """Load user-supplied ``.fvecs``/``.bvecs`` base and queries with optional ``.ivecs`` truth."""
    base = read_vecs(path_base).astype(np.float32, copy=False)
    queries = read_vecs(path_query).astype(np.float32, copy=False)
    ground_truth = None if path_gt is None else read_ivecs(path_gt)
    return Dataset(
        name=name or Path(path_base).stem,
        base=base,
        queries=queries,
        ground_truth=ground_truth,
        metric=metric,
    )


# --------------------------------------------------------------------------------------------
# Synthetic clustered data
# --------------------------------------------------------------------------------------------

CATEGORIES: tuple[str, ...] = (
    "books",
    "electronics",
    "fashion",
    "home",
    "sports",
    "toys",
    "grocery",
    "beauty",
)
TAGS: tuple[str, ...] = ("new", "sale", "popular", "eco", "premium", "limited", "bundle")


def gaussian_mixture(
    n: int,
    dim: int,
    n_clusters: int,
    n_queries: int,
    seed: int,
    n_tenants: int = 1,
    metric: Metric = "l2",
    cluster_std: float = 1.0,
    centre_spread: float = 4.0,
    category_purity: float = 0.7,
    name: str | None = None,
) -> Dataset:
    """Seeded clustered data with attributes and tenants, shaped like a real catalogue.

    Centres are drawn with per-coordinate std ``centre_spread``; each cluster has its own
    spread (``cluster_std`` times a factor in [0.5, 1.5]) and its own weight, because real
    embedding clusters differ in size and tightness. Queries come from the same mixture with
    fresh noise, never copies of base rows, so the nearest neighbour is not trivially the query.

    Attributes: ``cluster`` (the generating cluster), ``category`` (the cluster's dominant
    category with probability ``category_purity``, so filters correlate with geometry as they
    do in practice), ``price`` (log-normal, cents), ``year``, ``tags`` (0-3 strings per row).
    Tenants follow a Zipf-like skew, as a few large tenants usually dominate.

    Each component has its own random stream, so e.g. changing ``n_queries`` leaves the base
    unchanged for the same seed.
    """
    _check_metric(metric)
    if min(n, dim, n_clusters, n_queries, n_tenants) < 1:
        raise ValueError("n, dim, n_clusters, n_queries and n_tenants must all be >= 1")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    centre_rng, base_rng, query_rng, attr_rng, tenant_rng = streams
    centres = centre_rng.normal(0.0, centre_spread, size=(n_clusters, dim)).astype(np.float32)
    stds = (cluster_std * centre_rng.uniform(0.5, 1.5, size=n_clusters)).astype(np.float32)
    weights = centre_rng.dirichlet(np.full(n_clusters, 2.0))
    labels = base_rng.choice(n_clusters, size=n, p=weights)
    base = _sample_around(base_rng, centres, stds, labels)
    queries = _sample_around(
        query_rng, centres, stds, query_rng.choice(n_clusters, n_queries, p=weights)
    )
    return Dataset(
        name=name or f"gmm-n{n}-d{dim}-c{n_clusters}-s{seed}",
        base=base,
        queries=queries,
        ground_truth=None,
        metric=metric,
        attributes=_synthetic_attributes(attr_rng, labels, category_purity),
        tenants=_synthetic_tenants(tenant_rng, n, n_tenants),
    )


def _sample_around(
    rng: np.random.Generator,
    centres: NDArray[np.float32],
    stds: NDArray[np.float32],
    labels: NDArray[np.int64],
) -> NDArray[np.float32]:
    # In place, so a 1M x 128 set needs one float32 array rather than three.
    points = rng.standard_normal(size=(len(labels), centres.shape[1]), dtype=np.float32)
    points *= stds[labels, None]
    points += centres[labels]
    return points


def _synthetic_attributes(
    rng: np.random.Generator, labels: NDArray[np.int64], category_purity: float
) -> dict[str, NDArray[Any]]:
    n = len(labels)
    vocab = np.array(CATEGORIES)
    dominant = rng.permutation(np.arange(labels.max() + 1) % len(vocab))
    own = rng.random(n) < category_purity
    category = np.where(own, vocab[dominant[labels]], vocab[rng.integers(0, len(vocab), n)])
    price = np.round(rng.lognormal(mean=3.0, sigma=1.0, size=n), 2)
    year = rng.integers(2000, 2026, size=n).astype(np.int64)
    return {
        "cluster": labels.astype(np.int64),
        "category": category,
        "price": price,
        "year": year,
        "tags": _synthetic_tags(rng, n),
    }


def _synthetic_tags(rng: np.random.Generator, n: int) -> NDArray[np.object_]:
    counts = rng.integers(0, 4, size=n)
    picks = np.argsort(rng.random((n, len(TAGS))), axis=1)
    tags = np.empty(n, dtype=object)
    for row, (count, order) in enumerate(zip(counts, picks, strict=True)):
        tags[row] = [TAGS[i] for i in sorted(order[:count])]
    return tags


def _synthetic_tenants(rng: np.random.Generator, n: int, n_tenants: int) -> NDArray[np.str_]:
    names = np.array([f"tenant-{i:03d}" for i in range(n_tenants)])
    skew = 1.0 / np.arange(1, n_tenants + 1)
    return names[rng.choice(n_tenants, size=n, p=skew / skew.sum())]


# --------------------------------------------------------------------------------------------
# Exact ground truth
# --------------------------------------------------------------------------------------------


def exact_ground_truth(
    base: NDArray[Any],
    queries: NDArray[Any],
    k: int,
    metric: Metric,
    chunk_size: int = 512,
    base_chunk_size: int = 32_768,
) -> NDArray[np.int32]:
    """Exact top-k base row ids per query, best first, ties broken by the lower id.

    Computed in float64 with numpy rather than faiss: faiss works in float32, whose rounding
    reorders near-ties (and even exact integer ties on uint8 data), and its heap does not
    promise the lower-id tie-break. Queries go in chunks of ``chunk_size`` and the base in
    chunks of ``base_chunk_size``, merging per-chunk winners, so the working set stays
    ``chunk_size * base_chunk_size * 8`` bytes (128 MiB by default) whatever the base size;
    1,000,000 x 128 fits comfortably (about 5 minutes for 10,000 queries on 2 cores, hence
    ``cached_ground_truth``). Cosine normalizes both sides, then ranks by inner product.
    """
    _check_metric(metric)
    base, queries = np.asarray(base), np.asarray(queries)
    _check_exact_inputs(base, queries, k, chunk_size, base_chunk_size)
    prepared_queries = _prepare(queries, metric)
    # Sentinels sort after every real candidate; k <= len(base) guarantees all are replaced.
    best_dist = np.full((len(queries), k), np.inf)
    best_ids = np.full((len(queries), k), np.iinfo(np.int64).max, dtype=np.int64)
    for start in range(0, len(base), base_chunk_size):
        chunk = _prepare(base[start : start + base_chunk_size], metric)
        chunk_sq_norms = (chunk * chunk).sum(axis=1)
        for q0 in range(0, len(queries), chunk_size):
            rows = slice(q0, q0 + chunk_size)
            dist = _distances(prepared_queries[rows], chunk, chunk_sq_norms, metric)
            top_dist, top_cols = _block_topk(dist, k)
            best_dist[rows], best_ids[rows] = _merge_topk(
                (best_dist[rows], best_ids[rows]), (top_dist, top_cols + start), k
            )
    return best_ids.astype(np.int32)


def _check_exact_inputs(
    base: NDArray[Any], queries: NDArray[Any], k: int, chunk_size: int, base_chunk_size: int
) -> None:
    if base.ndim != 2 or queries.ndim != 2 or base.shape[1] != queries.shape[1]:
        raise ValueError(
            f"base and queries must be 2-D with the same dimension, got {base.shape} and "
            f"{queries.shape}"
        )
    if not 1 <= k <= len(base):
        raise ValueError(f"k must be in [1, {len(base)}] (the base size), got {k}")
    if chunk_size < 1 or base_chunk_size < 1:
        raise ValueError("chunk sizes must be >= 1")
    if not (np.isfinite(base).all() and np.isfinite(queries).all()):
        raise ValueError("base and queries must be finite (no NaN or Inf)")


def _prepare(vectors: NDArray[Any], metric: Metric) -> NDArray[np.float64]:
    as_float = vectors.astype(np.float64)
    return _normalized(as_float) if metric == "cosine" else as_float


def _normalized(vectors: NDArray[np.float64]) -> NDArray[np.float64]:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("cosine similarity is undefined for zero vectors")
    return vectors / norms


def _distances(
    queries: NDArray[np.float64],
    chunk: NDArray[np.float64],
    chunk_sq_norms: NDArray[np.float64],
    metric: Metric,
) -> NDArray[np.float64]:
    """Smaller is better for every metric, so one top-k routine serves all three."""
    products = queries @ chunk.T
    if metric != "l2":
        return -products
    # ||q||^2 is the same for every column, so it cannot change the ranking; drop it.
    return chunk_sq_norms[None, :] - 2.0 * products


def _block_topk(dist: NDArray[np.float64], k: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per-row k smallest columns, breaking ties at the k-th value by the lower column.

    ``argpartition`` alone picks an arbitrary member of a tie at the boundary, so every column
    at or below the k-th value is taken; rows with more than k such columns (ties) are settled
    one by one, which is rare on real data.
    """
    n_rows, n_cols = dist.shape
    kk = min(k, n_cols)
    if kk == n_cols:
        cols = np.broadcast_to(np.arange(n_cols, dtype=np.int64), dist.shape).copy()
        return dist, cols
    kth = np.partition(dist, kk - 1, axis=1)[:, kk - 1 : kk]
    within = dist <= kth
    counts = within.sum(axis=1)
    cols = np.empty((n_rows, kk), dtype=np.int64)
    exact = counts == kk
    cols[exact] = np.nonzero(within[exact])[1].reshape(-1, kk)
    for row in np.flatnonzero(~exact):
        candidates = np.flatnonzero(within[row])
        order = np.lexsort((candidates, dist[row, candidates]))
        cols[row] = candidates[order[:kk]]
    return np.take_along_axis(dist, cols, axis=1), cols


def _merge_topk(
    left: tuple[NDArray[np.float64], NDArray[np.int64]],
    right: tuple[NDArray[np.float64], NDArray[np.int64]],
    k: int,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Top-k of the union under (distance, id): the global top-k is within the chunk top-ks."""
    dist = np.concatenate([left[0], right[0]], axis=1)
    ids = np.concatenate([left[1], right[1]], axis=1)
    order = np.lexsort((ids, dist), axis=-1)[:, :k]
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(ids, order, axis=1)


def cached_ground_truth(
    dataset: Dataset, k: int, cache_dir: str | os.PathLike[str] | None = None
) -> NDArray[np.int32]:
    """Exact top-k for a dataset, cached as ``.ivecs`` keyed by a hash of data, k and metric.

    The key covers the vectors themselves (not the name), so regenerating a synthetic set with
    other parameters can never pick up a stale answer. A cache file that does not read back with
    the expected shape is recomputed rather than trusted.
    """
    path = (
        Path(cache_dir or DEFAULT_CACHE_DIR)
        / f"{_safe(dataset.name)}-k{k}-{dataset.metric}-{_data_key(dataset, k)}.ivecs"
    )
    if path.is_file():
        try:
            cached = read_ivecs(path)
        except ValueError:
            cached = None
        if cached is not None and cached.shape == (dataset.n_queries, k):
            return cached
    ground_truth = exact_ground_truth(dataset.base, dataset.queries, k, dataset.metric)
    write_ivecs(path, ground_truth)
    return ground_truth


def with_ground_truth(
    dataset: Dataset, k: int, cache_dir: str | os.PathLike[str] | None = None
) -> Dataset:
    """The same dataset with exact top-k ground truth (e.g. for synthetic sets)."""
    return replace(dataset, ground_truth=cached_ground_truth(dataset, k, cache_dir))


def _data_key(dataset: Dataset, k: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(_GROUND_TRUTH_VERSION)
    digest.update(f"|{dataset.metric}|{k}|{dataset.base.shape}|{dataset.queries.shape}|".encode())
    digest.update(np.ascontiguousarray(dataset.base).data)
    digest.update(np.ascontiguousarray(dataset.queries).data)
    return digest.hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "dataset"


# --------------------------------------------------------------------------------------------
# Recall
# --------------------------------------------------------------------------------------------


def recall_at_k(found_ids: ArrayLike, true_ids: ArrayLike, k: int) -> float:
    """Mean over queries of ``|set(found[:k]) & set(true[:k])| / k``.

    - ``found`` may have fewer than k columns or be padded with ``-1`` (a shard that returned
      fewer results); missing answers simply count as misses. Duplicate ids count once, so a
      system cannot earn recall by repeating a hit.
    - ``true`` needs at least k columns. Where it is padded with ``-1`` (fewer than k true
      neighbours exist, e.g. under a selective filter), the row's denominator is its number of
      real ids instead of k, so a perfect answer still scores 1.0; rows with no real ids are
      left out of the mean. With complete ground truth this is exactly the formula above.
    """
    found, true = _recall_inputs(found_ids, true_ids, k)
    true_k = true[:, :k]
    valid = true_k >= 0
    per_row_valid = valid.sum(axis=1)
    if not per_row_valid.any():
        raise ValueError("true_ids has no real ids (all -1) in its first k columns")
    # Offset ids by row so one isin over flat arrays matches ids within the same row only.
    width = int(max(true_k.max(initial=0), found.max(initial=0))) + 2
    row_offset = np.arange(len(true_k), dtype=np.int64)[:, None] * width
    found_keys = np.where(found[:, :k] >= 0, found[:, :k] + 1 + row_offset, -1)
    true_keys = true_k + 1 + row_offset
    hits = (np.isin(true_keys, found_keys) & valid).sum(axis=1)
    kept = per_row_valid > 0
    return float(np.mean(hits[kept] / per_row_valid[kept]))


def _recall_inputs(
    found_ids: ArrayLike, true_ids: ArrayLike, k: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    found = np.asarray(found_ids)
    true = np.asarray(true_ids)
    if found.ndim != 2 or true.ndim != 2 or len(found) != len(true):
        raise ValueError(
            f"found_ids and true_ids must be 2-D with one row per query, got {found.shape} "
            f"and {true.shape}"
        )
    if len(true) == 0:
        raise ValueError("recall needs at least one query")
    if k < 1 or true.shape[1] < k:
        raise ValueError(f"k must be in [1, {true.shape[1]}] (true_ids columns), got {k}")
    for what, ids in (("found_ids", found), ("true_ids", true)):
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < -1):
            raise ValueError(f"{what} must hold integer ids >= 0, or -1 as padding")
    return found.astype(np.int64), true.astype(np.int64)
