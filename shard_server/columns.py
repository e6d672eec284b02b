"""Attribute columns of a segment and the vectorized filter evaluator.

It must agree with `registry.filters.matches` (the reference semantics) on
every record; a property test holds the two together.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from registry.filters import And, Eq, Filter, In, Not, Or, Range
from registry.model import AttrType, AttrValue


class AttributeColumns:
    def __init__(self, schema: Mapping[str, AttrType], capacity: int) -> None:
        self.schema = dict(schema)
        self._obj: dict[str, np.ndarray] = {}
        self._num: dict[str, np.ndarray] = {}
        self._present: dict[str, np.ndarray] = {}
        for name, kind in self.schema.items():
            if kind in (AttrType.STRING, AttrType.STRING_LIST):
                self._obj[name] = np.full(capacity, None, dtype=object)
            else:
                dtype = np.int64 if kind is AttrType.INT else np.float64
                self._num[name] = np.zeros(capacity, dtype=dtype)
                self._present[name] = np.zeros(capacity, dtype=bool)

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

    def move_row(self, src: int, dst: int) -> None:
        for cols in (self._obj, self._num, self._present):
            for col in cols.values():
                col[dst] = col[src]

    def mask(self, f: Filter, n: int) -> np.ndarray:
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
