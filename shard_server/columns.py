"""Attribute columns of a segment and the vectorized filter evaluator.

It must agree with `core.filters.matches` (the reference semantics) on
every record; a property test holds the two together. Sealed segments keep
their columns immutable (`take`/`concat` build new ones) and persist them as
plain arrays plus JSON, never pickles.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.domain import AttrType, AttrValue
from core.filters import And, Eq, Filter, In, Not, Or, Range
from core.record_columns import AttributeColumn, type_fits


class AttributeColumns:
    def __init__(self, schema: Mapping[str, AttrType], capacity: int) -> None:
        self.schema = dict(schema)
        self._obj: dict[str, np.ndarray] = {}
        self._num: dict[str, np.ndarray] = {}
        self._present: dict[str, np.ndarray] = {}
        for name, kind in self.schema.items():
            self._new_column(name, kind, capacity)

    def _new_column(self, name: str, kind: AttrType, capacity: int) -> None:
        """An empty column: no row has the attribute."""
        if kind in (AttrType.STRING, AttrType.STRING_LIST):
            self._obj[name] = np.full(capacity, None, dtype=object)
        else:
            dtype = np.int64 if kind is AttrType.INT else np.float64
            self._num[name] = np.zeros(capacity, dtype=dtype)
            self._present[name] = np.zeros(capacity, dtype=bool)

    def add_columns(self, added: Mapping[str, AttrType], capacity: int) -> None:
        """Attributes added to the index version's schema (a metadata
        backfill): the rows already here lack them until they are written again."""
        for name, kind in added.items():
            if name not in self.schema:
                self.schema[name] = kind
                self._new_column(name, kind, capacity)

    def grow(self, capacity: int) -> None:
        for cols, fill in ((self._obj, None), (self._num, 0), (self._present, False)):
            for name, col in cols.items():
                new = np.full(capacity, fill, dtype=col.dtype)
                new[: col.shape[0]] = col
                cols[name] = new

    def set_row(self, row: int, attrs: Mapping[str, AttrValue]) -> None:
        for name in self._obj:
            self._obj[name][row] = attrs.get(name)
        for name in self._num:
            value = attrs.get(name)
            self._present[name][row] = value is not None
            self._num[name][row] = value if value is not None else 0

    def set_rows(self, start: int, n: int, columns: Sequence[tuple[str, AttributeColumn]]) -> None:
        """Rows start..start+n from a batch's columns. A write is validated
        against the schema, but rows stored before an attribute was declared
        (kept then as metadata, of any type) come back from disk, a replica
        or a racing write with their own: a column of another type is not
        this attribute's (the row lacks it, as in a segment built before the
        declaration) — converted, "cheap" failed the shard's start and 1.9
        matched Eq(price, 1)."""
        end = start + n
        given: dict[str, list[AttributeColumn]] = {}
        for name, col in columns:
            kind = self.schema.get(name)
            if kind is not None and type_fits(kind, col.type) and col.present.any():
                given.setdefault(name, []).append(col)
        for name, num in self._num.items():
            values = np.zeros(n, dtype=num.dtype)
            present = np.zeros(n, dtype=bool)
            for col in given.get(name, ()):
                values = np.where(col.present, np.asarray(col.values, dtype=num.dtype), values)
                present |= col.present
            num[start:end] = values
            self._present[name][start:end] = present
        for name, obj in self._obj.items():
            obj[start:end] = None
            for col in given.get(name, ()):
                for i, value in zip(
                    np.flatnonzero(col.present).tolist(),
                    col.take(np.flatnonzero(col.present)).tolist(),
                    strict=True,
                ):
                    obj[start + i] = value  # one by one: numpy would unpack a tuple

    def nbytes(self) -> int:
        """Arrays, plus the string objects of string columns (estimated)."""
        numeric = sum(c.nbytes for c in self._num.values()) + sum(
            c.nbytes for c in self._present.values()
        )
        objects = sum(c.nbytes + 56 * int(np.count_nonzero(c)) for c in self._obj.values())
        return numeric + objects

    def move_row(self, src: int, dst: int) -> None:
        for cols in (self._obj, self._num, self._present):
            for col in cols.values():
                col[dst] = col[src]

    def value(self, row: int, name: str) -> AttrValue | None:
        if name in self._obj:
            v = self._obj[name][row]
            return tuple(v) if isinstance(v, list) else v
        if not self._present[name][row]:
            return None
        return self._num[name][row].item()

    def take(self, rows: np.ndarray) -> AttributeColumns:
        """A new, exactly sized set of columns holding `rows` in that order."""
        out = AttributeColumns(self.schema, 0)
        out._obj = {name: col[rows] for name, col in self._obj.items()}
        out._num = {name: col[rows] for name, col in self._num.items()}
        out._present = {name: col[rows] for name, col in self._present.items()}
        return out

    @classmethod
    def concat(
        cls,
        schema: Mapping[str, AttrType],
        parts: Sequence[AttributeColumns],
        lengths: Sequence[int],
    ) -> AttributeColumns:
        """`lengths[i]` rows of `parts[i]`; a part from before an attribute was
        added to the schema contributes rows that lack it."""
        out = cls(schema, 0)
        full = [
            p if set(schema) <= set(p.schema) else p._widened(schema, n)
            for p, n in zip(parts, lengths, strict=True)
        ]
        for cols, attr in ((out._obj, "_obj"), (out._num, "_num"), (out._present, "_present")):
            for name, col in cols.items():
                cols[name] = np.concatenate([getattr(p, attr)[name] for p in full] + [col])
        return out

    def _widened(self, schema: Mapping[str, AttrType], rows: int) -> AttributeColumns:
        out = self.take(np.arange(rows))
        out.add_columns({n: k for n, k in schema.items() if n not in out.schema}, rows)
        return out

    def numeric_ranges(
        self, groups: np.ndarray, n_groups: int
    ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per numeric attribute, per group (e.g. bucket): (min, max, rows having it).
        Groups without the attribute get min=+inf, max=-inf, count 0."""
        out = {}
        for name, col in self._num.items():
            present = self._present[name][: groups.shape[0]]
            values = col[: groups.shape[0]][present].astype(np.float64)
            g = groups[present]
            lo = np.full(n_groups, np.inf)
            hi = np.full(n_groups, -np.inf)
            np.minimum.at(lo, g, values)
            np.maximum.at(hi, g, values)
            out[name] = (lo, hi, np.bincount(g, minlength=n_groups))
        return out

    def to_payload(self) -> tuple[dict[str, np.ndarray], bytes]:
        """Numeric columns as arrays (keyed by position, names may hold any
        character) and string columns as one JSON document."""
        names = sorted(self.schema)
        arrays: dict[str, np.ndarray] = {}
        objects: dict[str, list[Any]] = {}
        for i, name in enumerate(names):
            if name in self._num:
                arrays[f"attr_num_{i}"] = self._num[name]
                arrays[f"attr_present_{i}"] = self._present[name]
            else:
                objects[name] = [list(v) if isinstance(v, tuple) else v for v in self._obj[name]]
        doc = {
            "names": names,
            "schema": {n: self.schema[n].value for n in names},
            "objects": objects,
        }
        return arrays, json.dumps(doc).encode()

    @classmethod
    def from_payload(cls, arrays: Mapping[str, np.ndarray], doc: bytes) -> AttributeColumns:
        meta = json.loads(doc)
        schema = {name: AttrType(kind) for name, kind in meta["schema"].items()}
        out = cls(schema, 0)
        for i, name in enumerate(meta["names"]):
            if name in out._num:
                out._num[name] = np.asarray(arrays[f"attr_num_{i}"])
                out._present[name] = np.asarray(arrays[f"attr_present_{i}"])
            else:
                values = meta["objects"][name]
                col = np.empty(len(values), dtype=object)
                for row, v in enumerate(values):  # element-wise: numpy would unpack tuples
                    col[row] = tuple(v) if isinstance(v, list) else v
                out._obj[name] = col
        return out

    def mask(self, f: Filter, n: int) -> np.ndarray:
        if isinstance(f, Eq | In | Range) and f.attribute not in self.schema:
            # Added to the schema after this segment was built: no row has it,
            # and a predicate on a missing attribute is false (core.filters).
            return np.zeros(n, dtype=bool)
        match f:
            case And(filters):
                out = np.ones(n, dtype=bool)
                for sub in filters:
                    out &= self.mask(sub, n)
                return out
            case Or(filters):
                out = np.zeros(n, dtype=bool)
                for sub in filters:
                    out |= self.mask(sub, n)
                return out
            case Not(inner):
                return ~self.mask(inner, n)
            case Eq(attr, value):
                return self._leaf(attr, n, (value,), eq=True)
            case In(attr, values):
                return self._leaf(attr, n, values, eq=False)
            case Range(attr, gte, gt, lte, lt):
                col, present = self._num[attr][:n], self._present[attr][:n]
                if col.dtype == np.int64:
                    return present & _int_range(col, gte, gt, lte, lt)
                out = present.copy()
                if gte is not None:
                    out &= col >= gte
                if gt is not None:
                    out &= col > gt
                if lte is not None:
                    out &= col <= lte
                if lt is not None:
                    out &= col < lt
                return out
        raise TypeError(f"not a filter: {f!r}")

    def _leaf(self, attr: str, n: int, values: tuple[AttrValue, ...], eq: bool) -> np.ndarray:
        kind = self.schema[attr]
        if kind is AttrType.STRING:
            wanted = set(values)
            return np.fromiter((v in wanted for v in self._obj[attr][:n]), dtype=bool, count=n)
        if kind is AttrType.STRING_LIST:
            wanted = set(values)
            return np.fromiter(
                (v is not None and not wanted.isdisjoint(v) for v in self._obj[attr][:n]),
                dtype=bool,
                count=n,
            )
        col, present = self._num[attr][:n], self._present[attr][:n]
        return present & np.isin(col, np.asarray(values, dtype=col.dtype))


_INT64 = np.iinfo(np.int64)


def _int_range(
    col: np.ndarray,
    gte: float | None,
    gt: float | None,
    lte: float | None,
    lt: float | None,
) -> np.ndarray:
    """Bounds arrive as doubles; numpy would compare an int64 column with
    them in float64, rounding values past 2**53 (nanosecond timestamps), and
    disagree with `core.filters.matches`. Over integers each bound is an exact
    integer one: x > b ⇔ x ≥ ⌊b⌋ + 1, x ≥ b ⇔ x ≥ ⌈b⌉, and so on."""
    lo, hi = int(_INT64.min), int(_INT64.max)
    for bound, lower, strict in (
        (gte, True, False),
        (gt, True, True),
        (lte, False, False),
        (lt, False, True),
    ):
        if bound is None:
            continue
        if math.isnan(bound):
            return np.zeros(col.shape[0], dtype=bool)
        if math.isinf(bound):
            if (bound > 0) == lower:  # x > +inf, x < -inf: nothing
                return np.zeros(col.shape[0], dtype=bool)
            continue
        if lower:
            lo = max(lo, math.floor(bound) + 1 if strict else math.ceil(bound))
        else:
            hi = min(hi, math.ceil(bound) - 1 if strict else math.floor(bound))
    if lo > hi:
        return np.zeros(col.shape[0], dtype=bool)
    out = col >= np.int64(lo) if lo > _INT64.min else np.ones(col.shape[0], dtype=bool)
    if hi < _INT64.max:
        out &= col <= np.int64(hi)
    return out
