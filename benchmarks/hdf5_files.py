"""ann-benchmarks HDF5 files (``train``, ``test``, ``neighbors``, ``distances``, attribute
``distance``): load them as a `Dataset`, and export ours so other tools run on exactly our
data. h5py is imported only when HDF5 is used (it comes with the bench extra).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.datasets import Dataset, Metric, describe_value
from benchmarks.ground_truth import normalized

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
            "pip install h5py (it comes with pip install 'vecshard[bench]')"
        ) from exc
    module: ModuleType = h5py  # h5py ships no types
    return module


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
        dist = 1.0 - (normalized(neighbours) * normalized(queries)).sum(axis=2)
    else:
        dist = -(neighbours * queries).sum(axis=2)
    return np.where(gt >= 0, dist, np.inf).astype(np.float32)


def _ids_as_int32(ids: NDArray[Any], path: Path) -> NDArray[np.int32]:
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(
            f"{path}: neighbors must be a 2-D integer array, got {describe_value(ids)}"
        )
    if ids.size and (ids.min() < -1 or ids.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{path}: neighbor ids do not fit int32")
    return ids.astype(np.int32)
