"""Feature values of many rows as columns (DESIGN §7, STYLE 14): the form in
which they are decoded from RocksDB, resolved, sent and handed to models.

A `FeatureColumn` holds the values of one feature dtype in Arrow's columnar
layout — fixed-width values, or offsets into one buffer of string bytes or
list items — with a validity mask, as numpy arrays. Why this and not a
Python object per value: a GetFeatures of 800 candidates carries thousands
of values, and building, encoding and decoding one object each cost more
than the lookup itself. Why Arrow's layout: the wire carries exactly these
buffers (`core.wire`), so numpy reads them with `np.frombuffer` and pyarrow
wraps them with `Array.from_buffers`, neither with a per-value step.

Conventions every function here keeps, so equal columns have equal buffers:
a null fixed-width slot holds 0 (False), a null string or list is empty.
Dtypes are `registry.features.FeatureDType` values, as plain strings: core
cannot import the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import InvalidArgument

INT64, FLOAT64, STRING, BOOL, FLOAT_LIST = "int64", "float64", "string", "bool", "float_list"
DTYPES = (INT64, FLOAT64, STRING, BOOL, FLOAT_LIST)
# numpy dtype of the value buffer (of the items, for lists; of the bytes, for strings)
VALUE_DTYPE: dict[str, np.dtype[Any]] = {
    INT64: np.dtype("<i8"),
    FLOAT64: np.dtype("<f8"),
    BOOL: np.dtype(np.bool_),
    STRING: np.dtype(np.uint8),
    FLOAT_LIST: np.dtype("<f8"),
}
VARIABLE = frozenset((STRING, FLOAT_LIST))

Array = npt.NDArray[Any]
Mask = npt.NDArray[np.bool_]


def gather_ranges(data: Array, starts: Array, lengths: Array) -> Array:
    """`data[starts[i] : starts[i] + lengths[i]]` for every i, concatenated,
    in one vectorized step (the var-length half of take, concat and decode)."""
    lengths = lengths.astype(np.int64, copy=False)
    total = int(lengths.sum())
    if total == 0:
        return data[:0].copy()
    ends = np.cumsum(lengths)
    shift = np.repeat(starts.astype(np.int64, copy=False) - (ends - lengths), lengths)
    out: Array = data[np.arange(total, dtype=np.int64) + shift]
    return out


def offsets_of(lengths: Array) -> npt.NDArray[np.int32]:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    if out[-1] > np.iinfo(np.int32).max:
        raise InvalidArgument(
            f"a column of {out[-1]} bytes or items exceeds 2 GiB; send smaller batches"
        )
    return out.astype(np.int32)


@dataclass(frozen=True, eq=False)
class FeatureColumn:
    """`len(valid)` values of one dtype. `values` is the value buffer (int64,
    float64 or bool per row; UTF-8 bytes of all rows for strings; float64
    items of all rows for float_list); `offsets` (int32, rows + 1) says where
    each row's bytes or items begin, for the two variable-width dtypes."""

    dtype: str
    valid: Mask
    values: Array
    offsets: npt.NDArray[np.int32] | None = None

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def lengths(self) -> Array:
        assert self.offsets is not None
        return np.diff(self.offsets)

    def take(self, rows: Array) -> FeatureColumn:
        """The rows at `rows` (int positions), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        valid = self.valid[rows]
        if self.offsets is None:
            return FeatureColumn(self.dtype, valid, self.values[rows])
        starts = self.offsets[:-1][rows]
        lengths = self.offsets[1:][rows] - starts
        return FeatureColumn(
            self.dtype, valid, gather_ranges(self.values, starts, lengths), offsets_of(lengths)
        )

    def where(self, mask: Mask, other: FeatureColumn) -> FeatureColumn:
        """Rows of `other` where `mask`, of this column elsewhere (same length)."""
        if not mask.any():
            return self
        if mask.all():
            return other
        if self.offsets is None:
            return FeatureColumn(
                self.dtype,
                np.where(mask, other.valid, self.valid),
                np.where(mask, other.values, self.values),
            )
        both = concat([self, other])
        n = len(self)
        return both.take(np.where(mask, np.arange(n) + n, np.arange(n)))

    def to_list(self) -> list[Any]:
        """Python values (None for null; a float_list as a tuple, the
        registry's canonical form). Per-value objects: for the edges only."""
        valid = self.valid.tolist()
        if self.dtype == STRING:
            assert self.offsets is not None
            data = self.values.tobytes()
            bounds = self.offsets.tolist()
            return [
                data[bounds[i] : bounds[i + 1]].decode() if ok else None
                for i, ok in enumerate(valid)
            ]
        if self.dtype == FLOAT_LIST:
            assert self.offsets is not None
            items = self.values.tolist()
            bounds = self.offsets.tolist()
            return [
                tuple(items[bounds[i] : bounds[i + 1]]) if ok else None
                for i, ok in enumerate(valid)
            ]
        return [v if ok else None for v, ok in zip(self.values.tolist(), valid, strict=True)]


def empty(dtype: str, rows: int) -> FeatureColumn:
    """`rows` nulls."""
    valid = np.zeros(rows, dtype=bool)
    if dtype in VARIABLE:
        return FeatureColumn(
            dtype, valid, np.zeros(0, VALUE_DTYPE[dtype]), np.zeros(rows + 1, np.int32)
        )
    return FeatureColumn(dtype, valid, np.zeros(rows, VALUE_DTYPE[dtype]))


def from_values(dtype: str, values: Sequence[Any]) -> FeatureColumn:
    """A column from Python values (None = null), which must already be of
    `dtype` (the registry's `canonical_value` checks them)."""
    if dtype not in DTYPES:
        raise InvalidArgument(f"unknown feature dtype {dtype!r}; expected one of {DTYPES}")
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    if dtype == STRING:
        parts = [v.encode() if v is not None else b"" for v in values]
        data = np.frombuffer(b"".join(parts), dtype=np.uint8)
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        return FeatureColumn(dtype, valid, data, offsets_of(lengths))
    if dtype == FLOAT_LIST:
        lists = [v if v is not None else () for v in values]
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        items = np.fromiter(
            (x for v in lists for x in v), dtype=np.float64, count=int(lengths.sum())
        )
        return FeatureColumn(dtype, valid, items, offsets_of(lengths))
    zero = False if dtype == BOOL else 0
    filled = [v if v is not None else zero for v in values]
    return FeatureColumn(dtype, valid, np.array(filled, dtype=VALUE_DTYPE[dtype]).reshape(-1))


def repeat(dtype: str, value: Any, rows: int) -> FeatureColumn:
    """`value` (None = null) in each of `rows` rows."""
    if value is None:
        return empty(dtype, rows)
    return from_values(dtype, [value]).take(np.zeros(rows, dtype=np.int64))


def concat(columns: Sequence[FeatureColumn]) -> FeatureColumn:
    """The rows of every column, one after the other (all of one dtype)."""
    if not columns:
        raise ValueError("concat of no columns")
    if len(columns) == 1:
        return columns[0]
    dtype = columns[0].dtype
    valid = np.concatenate([c.valid for c in columns])
    values = np.concatenate([c.values for c in columns])
    if dtype not in VARIABLE:
        return FeatureColumn(dtype, valid, values)
    lengths = np.concatenate([c.lengths for c in columns])
    return FeatureColumn(dtype, valid, values, offsets_of(lengths))


def same(a: FeatureColumn, b: FeatureColumn) -> bool:
    """Equal dtype, validity and values (bitwise for floats, so NaN equals
    itself and -0.0 differs from 0.0: what a codec must preserve)."""
    if a.dtype != b.dtype or not np.array_equal(a.valid, b.valid):
        return False
    if (a.offsets is None) != (b.offsets is None):
        return False
    if a.offsets is not None and b.offsets is not None and not np.array_equal(a.offsets, b.offsets):
        return False
    return a.values.tobytes() == b.values.tobytes()


# Codes of missing reasons and fills in resolved columns; a code is the
# value of the `MissingReason` / `FillAction` enum in common.proto (0: none),
# so the wire carries them as they are. The names are the registry's.
MISSING_REASONS: tuple[str | None, ...] = (
    None,
    "no_history",
    "entity_not_found",
    "stale",
    "privacy_disabled",
    "timeout",
    "not_computed",
    "unavailable",
)
FILLS: tuple[str | None, ...] = (None, "feature_default", "null", "constant", "keep_value")
REASON_CODE = {name: code for code, name in enumerate(MISSING_REASONS) if name}
FILL_CODE = {name: code for code, name in enumerate(FILLS) if name}


@dataclass(frozen=True, eq=False)
class ResolvedColumns:
    """What a model reads from one feature group for `rows` entities: per
    feature its values (fills applied), the reason each is not the stored
    value and the fill that replaced it (codes, `MISSING_REASONS` and
    `FILLS`; features × rows); per row whether a live stored row exists,
    its `feature_timestamp` and its staleness (0 where none)."""

    features: tuple[str, ...]
    columns: tuple[FeatureColumn, ...]
    reasons: npt.NDArray[np.uint8]
    fills: npt.NDArray[np.uint8]
    stored: Mask
    staleness_us: npt.NDArray[np.int64]
    feature_timestamp_us: npt.NDArray[np.int64]

    @property
    def rows(self) -> int:
        return len(self.stored)

    def take(self, rows: Array) -> ResolvedColumns:
        rows = np.asarray(rows, dtype=np.int64)
        return ResolvedColumns(
            self.features,
            tuple(c.take(rows) for c in self.columns),
            self.reasons[:, rows],
            self.fills[:, rows],
            self.stored[rows],
            self.staleness_us[rows],
            self.feature_timestamp_us[rows],
        )

    def column(self, feature: str) -> FeatureColumn:
        return self.columns[self.features.index(feature)]


def concat_resolved(parts: Sequence[ResolvedColumns]) -> ResolvedColumns:
    """The rows of every part, one after the other (same features)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return ResolvedColumns(
        first.features,
        tuple(concat([p.columns[j] for p in parts]) for j in range(len(first.features))),
        np.concatenate([p.reasons for p in parts], axis=1),
        np.concatenate([p.fills for p in parts], axis=1),
        np.concatenate([p.stored for p in parts]),
        np.concatenate([p.staleness_us for p in parts]),
        np.concatenate([p.feature_timestamp_us for p in parts]),
    )
