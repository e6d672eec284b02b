"""Vector files in the formats public benchmarks ship in: ``.fvecs`` (float32), ``.ivecs``
(int32, usually ground-truth ids) and ``.bvecs`` (uint8), TEXMEX layout (per row an int32
dimension, then the values). Readers validate the layout; writers refuse values the format
cannot hold exactly and write atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

_VECS_DTYPES: dict[str, np.dtype[Any]] = {
    ".fvecs": np.dtype("<f4"),
    ".ivecs": np.dtype("<i4"),
    ".bvecs": np.dtype("u1"),
}


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
