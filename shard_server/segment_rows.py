"""The rows of a sealed segment: keys, float32 vectors, tenants, buckets,
write sequences and attribute columns, immutable once built.

Kept separate from any index so that every kind (flat, hnsw, ivfpq) reranks
and filters over the same exact data, and so compaction can merge rows of
segments of different kinds.

Memory: keys are a `KeyTable` (arrays, ~35 bytes a row), and once the
segment's files are written its vectors are the segment's own float32 file
mapped read-only (`with_vectors`), so the process holds no second copy of
them beside the index's: the page cache keeps what reranks touch, and gives
it back under memory pressure.
"""

from __future__ import annotations

import mmap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from core.domain import AttrType, EntityKey
from shard_server.columns import AttributeColumns
from shard_server.key_table import KeyTable


def file_mapped(array: np.ndarray) -> bool:
    """Whether `array` reads a file mapping (the segment's vector file).
    Mapped vectors are held as a plain ndarray view of the `np.memmap`:
    indexing a memmap builds a memmap subclass per result (9 % of a
    shard's batched search under cProfile went to that), so the mapping is found through
    the view's bases instead of its type."""
    base: object = array
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return True
        base = base.base
    return isinstance(base, mmap.mmap)


@dataclass(frozen=True, eq=False)
class SegmentRows:
    keys: KeyTable
    vectors: np.ndarray  # (n, d) float32
    sq_norms: np.ndarray  # (n,) float32
    tenants: np.ndarray  # (n,) int32 codes into tenant_names
    tenant_names: tuple[str, ...]
    buckets: np.ndarray  # (n,) int32
    seqs: np.ndarray  # (n,) int64
    columns: AttributeColumns
    _tenant_code: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.keys)
        for name in ("vectors", "sq_norms", "tenants", "buckets", "seqs"):
            arr = getattr(self, name)
            if arr.shape[0] != n:
                raise ValueError(f"segment rows: {name} has {arr.shape[0]} rows, expected {n}")
            arr.flags.writeable = False
        if self.keys.has_duplicates():
            raise ValueError("segment rows: a key appears twice; sealed rows are one per key")
        object.__setattr__(
            self, "_tenant_code", {name: i for i, name in enumerate(self.tenant_names)}
        )

    def with_vectors(self, vectors: np.ndarray) -> SegmentRows:
        """The same rows over another copy of the same vectors (the mapped file)."""
        if vectors.shape != self.vectors.shape:
            raise ValueError(
                f"segment rows: vectors {vectors.shape}, expected {self.vectors.shape}"
            )
        return replace(self, vectors=vectors)

    def row_of(self, key: EntityKey) -> int | None:
        return self.keys.row_of(key)

    def rows_of(self, keys: Sequence[EntityKey]) -> np.ndarray:
        """The row of each key, -1 where these rows do not hold it."""
        return self.keys.rows_of(keys)

    def nbytes(self) -> int:
        """Memory the rows hold, without vectors mapped from a file."""
        mapped = file_mapped(self.vectors)
        arrays = (self.sq_norms, self.tenants, self.buckets, self.seqs)
        return (
            (0 if mapped else self.vectors.nbytes)
            + sum(a.nbytes for a in arrays)
            + self.keys.nbytes()
            + self.columns.nbytes()
        )

    def mapped_bytes(self) -> int:
        return self.vectors.nbytes if file_mapped(self.vectors) else 0

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def tenant_code(self, tenant_id: str) -> int | None:
        return self._tenant_code.get(tenant_id)

    def take(self, rows: np.ndarray) -> SegmentRows:
        return SegmentRows(
            keys=self.keys.take(rows),
            vectors=self.vectors[rows],
            sq_norms=self.sq_norms[rows],
            tenants=self.tenants[rows],
            tenant_names=self.tenant_names,
            buckets=self.buckets[rows],
            seqs=self.seqs[rows],
            columns=self.columns.take(rows),
        )

    @classmethod
    def empty(cls, dim: int, schema: Mapping[str, AttrType]) -> SegmentRows:
        return cls(
            keys=KeyTable.of([]),
            vectors=np.zeros((0, dim), np.float32),
            sq_norms=np.zeros(0, np.float32),
            tenants=np.zeros(0, np.int32),
            tenant_names=(),
            buckets=np.zeros(0, np.int32),
            seqs=np.zeros(0, np.int64),
            columns=AttributeColumns(schema, 0),
        )

    @classmethod
    def numbered(cls, vectors: np.ndarray, tenant: str = "t", buckets: int = 4) -> SegmentRows:
        """One tenant's rows keyed `item/k<i>`, in round-robin buckets, with no
        attributes: a segment built straight from vectors (benchmarks and
        tests of the search itself, where a partition's write path is noise)."""
        n = int(vectors.shape[0])
        return cls(
            keys=KeyTable.of([EntityKey(tenant, "item", f"k{i}") for i in range(n)]),
            vectors=vectors,
            sq_norms=(vectors.astype(np.float64) ** 2).sum(axis=1).astype(np.float32),
            tenants=np.zeros(n, np.int32),
            tenant_names=(tenant,),
            buckets=(np.arange(n) % buckets).astype(np.int32),
            seqs=np.arange(n, dtype=np.int64),
            columns=AttributeColumns({}, n),
        )

    @classmethod
    def concat(cls, schema: Mapping[str, AttrType], parts: Sequence[SegmentRows]) -> SegmentRows:
        """One set of rows from several (tenant codes remapped onto one table)."""
        names: dict[str, int] = {}
        codes = []
        for p in parts:
            remap = np.array(
                [names.setdefault(t, len(names)) for t in p.tenant_names], dtype=np.int32
            )
            codes.append(remap[p.tenants] if len(p) else np.zeros(0, np.int32))
        dim = parts[0].dim
        return cls(
            keys=KeyTable.concat([p.keys for p in parts]),
            vectors=np.concatenate([p.vectors for p in parts]).reshape(-1, dim),
            sq_norms=np.concatenate([p.sq_norms for p in parts]),
            tenants=np.concatenate(codes).astype(np.int32),
            tenant_names=tuple(names),
            buckets=np.concatenate([p.buckets for p in parts]),
            seqs=np.concatenate([p.seqs for p in parts]),
            columns=AttributeColumns.concat(
                schema, [p.columns for p in parts], [len(p) for p in parts]
            ),
        )
