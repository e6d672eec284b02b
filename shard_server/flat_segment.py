"""An exact segment: every live vector of one index version on this shard, in
one growable float32 matrix, searched by brute force and rescored canonically.

One live row per key (upsert replaces in place; delete moves the last row into
the hole), so a key can never be returned twice.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from registry.filters import Filter
from registry.model import AttrType, AttrValue, EntityKey, Metric
from registry.ordering import order_key
from shard_server.columns import AttributeColumns
from shard_server.scoring import approx_scores, canonical_scores


@dataclass(frozen=True)
class Hit:
    score: float
    key: EntityKey
    bucket: int


@dataclass(frozen=True)
class SegmentResult:
    hits: list[Hit]
    candidates: int


class FlatSegment:
    kind = "flat"

    def __init__(
        self, dim: int, metric: Metric, schema: Mapping[str, AttrType], capacity: int = 1024
    ) -> None:
        self.dim = dim
        self.metric = metric
        self._cap = capacity
        self._vectors = np.zeros((capacity, dim), dtype=np.float32)
        self._sq = np.zeros(capacity, dtype=np.float32)
        self._tenant = np.zeros(capacity, dtype=np.int32)
        self._bucket = np.zeros(capacity, dtype=np.int32)
        self._keys: list[EntityKey] = []
        self._row_of: dict[EntityKey, int] = {}
        self._tenant_codes: dict[str, int] = {}
        self._columns = AttributeColumns(schema, capacity)
        # Why one lock for reads and writes: a delete moves rows, and a search
        # must never see a row half-moved. Sealed immutable segments (the
        # storage-engine issue) let searches run without it.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def _grow(self) -> None:
        cap = self._cap * 2
        for name in ("_vectors", "_sq", "_tenant", "_bucket"):
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self._cap] = old
            setattr(self, name, new)
        self._columns.grow(cap)
        self._cap = cap

    def upsert(
        self, key: EntityKey, vector: np.ndarray, attrs: Mapping[str, AttrValue], bucket: int
    ) -> None:
        with self._lock:
            row = self._row_of.get(key)
            if row is None:
                if len(self._keys) == self._cap:
                    self._grow()
                row = len(self._keys)
                self._keys.append(key)
                self._row_of[key] = row
            self._vectors[row] = vector
            self._sq[row] = float(vector @ vector)
            self._tenant[row] = self._tenant_codes.setdefault(
                key.tenant_id, len(self._tenant_codes)
            )
            self._bucket[row] = bucket
            self._columns.set_row(row, attrs)

    def delete(self, key: EntityKey) -> bool:
        with self._lock:
            row = self._row_of.pop(key, None)
            if row is None:
                return False
            last = len(self._keys) - 1
            if row != last:
                moved = self._keys[last]
                for arr in (self._vectors, self._sq, self._tenant, self._bucket):
                    arr[row] = arr[last]
                self._columns.move_row(last, row)
                self._keys[row] = moved
                self._row_of[moved] = row
            self._keys.pop()
            return True

    def search(
        self, query: np.ndarray, k: int, tenant_id: str, flt: Filter | None
    ) -> SegmentResult:
        with self._lock:
            n = len(self._keys)
            code = self._tenant_codes.get(tenant_id)
            if code is None or n == 0:
                return SegmentResult([], 0)
            mask = self._tenant[:n] == code
            if flt is not None:
                mask &= self._columns.mask(flt, n)
            rows = np.flatnonzero(mask)
            if rows.size == 0:
                return SegmentResult([], 0)
            vectors = self._vectors[rows]
            approx, tol = approx_scores(self.metric, query, vectors, self._sq[rows])
            if rows.size > k:
                kth = np.partition(approx, rows.size - k)[rows.size - k]
                keep = np.flatnonzero(approx >= kth - 2.0 * tol)
                rows, vectors = rows[keep], vectors[keep]
            keys = [self._keys[r] for r in rows]
            buckets = self._bucket[rows]
        scores = canonical_scores(self.metric, query, vectors)
        hits = [Hit(float(s), key, int(b)) for s, key, b in zip(scores, keys, buckets, strict=True)]
        hits.sort(key=lambda h: order_key(h.score, h.key))
        return SegmentResult(hits[:k], int(mask.sum()))
