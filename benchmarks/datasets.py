"""Evaluation data sets for vecshard benchmarks: the validated `Dataset`, the shared real
sets and user-supplied vector files.

Recall numbers are only as good as the data and the ground truth behind them, so the pieces
live side by side: this module (what a data set is, and loading real and user-supplied
sets), ``vecs_files`` and ``hdf5_files`` (the formats public benchmarks ship in),
``synthetic_data`` (seeded data clustered like real embeddings: random Gaussian vectors are
a pathological case where nothing beats brute force) and ``ground_truth`` (an exact,
deterministic top-k that every benchmark compares against, and recall@k).

Data directory: ``$VECSHARD_DATA_DIR`` when set, else ``<repo root>/../shared/data``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from benchmarks.vecs_files import read_ivecs, read_vecs

Metric = Literal["l2", "inner_product", "cosine"]
METRICS: tuple[str, ...] = get_args(Metric)

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "VECSHARD_DATA_DIR"

# name -> (base rows, query rows, dim, ground-truth columns); see shared/data/README.md.
REAL_DATASETS: dict[str, tuple[int, int, int, int]] = {
    "bigann10k": (10_000, 100, 128, 100),
    "fmnistsmall": (1_000, 500, 784, 100),
}


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
        check_metric(self.metric)
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
        raise ValueError(f"{what} must be a 2-D float32 array, got {describe_value(array)}")
    if array.shape[1] == 0:
        raise ValueError(f"{what} must have dimension >= 1")


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")


def _check_ground_truth(gt: NDArray[Any], n_queries: int, n_base: int) -> None:
    if not isinstance(gt, np.ndarray) or gt.ndim != 2 or gt.dtype != np.int32:
        raise ValueError(f"ground_truth must be a 2-D int32 array, got {describe_value(gt)}")
    if gt.shape[0] != n_queries:
        raise ValueError(
            f"ground_truth has {gt.shape[0]} rows, expected one per query ({n_queries})"
        )
    if gt.size and (gt.min() < -1 or gt.max() >= n_base):
        raise ValueError(f"ground_truth ids must be base rows in [0, {n_base}) or -1 padding")


def _check_per_row(what: str, values: NDArray[Any], n_base: int) -> None:
    if not isinstance(values, np.ndarray) or values.ndim != 1 or len(values) != n_base:
        raise ValueError(f"{what} must be a 1-D array with one entry per base row ({n_base})")


def describe_value(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return type(value).__name__


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
