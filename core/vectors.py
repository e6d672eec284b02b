"""Vectors on the wire: little-endian float32 bytes, zero-copy into numpy."""

from __future__ import annotations

import numpy as np

from core.errors import InvalidArgument

FLOAT32_LE = np.dtype("<f4")


def to_bytes(vector: np.ndarray | list[float]) -> bytes:
    return np.ascontiguousarray(vector, dtype=FLOAT32_LE).tobytes()


def from_bytes(data: bytes, *, what: str = "vector") -> np.ndarray:
    """A read-only float32 view of `data`; rejects a byte length that is not 4·d."""
    if len(data) % 4:
        raise InvalidArgument(
            f"{what}: {len(data)} bytes is not a whole number of float32 values; "
            "expected little-endian float32 bytes (4 per dimension)"
        )
    return np.frombuffer(data, dtype=FLOAT32_LE)


def check_vector(vec: np.ndarray, dim: int, *, what: str = "vector") -> None:
    """Dimension and finiteness: the checks every hop applies before trusting a vector."""
    if vec.ndim != 1:
        raise InvalidArgument(f"{what}: shape {vec.shape}; expected one vector of {dim} values")
    if vec.shape != (dim,):
        raise InvalidArgument(f"{what}: dimension {vec.shape[0]} does not match, expected {dim}")
    if not np.isfinite(vec).all():
        raise InvalidArgument(f"{what}: contains NaN or Inf, expected finite float32 values")
