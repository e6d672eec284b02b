"""A batch of rows to write, as arrays: what an index partition checks,
normalizes, versions and stores in one step, whichever RPC brought it.

Two sources: records as columns (`UpsertColumns`: one tenant, one entity type,
ids packed) and per-record lists (`Upsert`, replication, the start-up tail),
which are turned into the same columns so there is one write path. Pure:
numpy over plain data, no RocksDB, no locks; `IndexPartition` drives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from core.domain import AttrType, AttrValue, EntityKey, Metric
from core.errors import InvalidArgument
from core.limits import DEFAULT_LIMITS, Limits
from core.record_columns import (
    AttributeColumn,
    RecordColumns,
    batch_winners,
    first_row,
    type_fits,
)
from registry.model import EmbeddingFamily, IndexVersion
from shard_server import records as rec

# One column per (attribute, type): per-record batches may carry an
# undeclared attribute with different types in different records.
Columns = tuple[tuple[str, AttributeColumn], ...]


@dataclass(frozen=True, eq=False)
class RowBatch:
    keys: list[EntityKey]
    vectors: np.ndarray  # (n, d) float32; normalized once `prepare_rows` ran
    source_versions: np.ndarray  # (n,) int64
    created_at: np.ndarray  # (n,) int64
    model_versions: list[str]
    buckets: np.ndarray  # (n,) int64
    tenants: np.ndarray  # (n,) int32 codes into tenant_names
    tenant_names: tuple[str, ...]
    columns: Columns = ()
    # L2 norm of each vector as given (set by `prepare_rows`).
    norms: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_columns(cls, tenant_id: str, records: RecordColumns, buckets: np.ndarray) -> RowBatch:
        """`records.entity_type` and every source_version are set (the coordinator did)."""
        n = len(records)
        etype = records.entity_type
        return cls(
            keys=[EntityKey(tenant_id, etype, eid) for eid in records.entity_ids.tolist()],
            vectors=records.vectors,
            source_versions=records.source_versions,
            created_at=records.created_at,
            model_versions=[records.model_version] * n,
            buckets=np.asarray(buckets, dtype=np.int64),
            tenants=np.zeros(n, dtype=np.int32),
            tenant_names=(tenant_id,),
            columns=tuple(records.attributes.items()),
        )

    @classmethod
    def from_records(cls, records: Sequence[rec.Record], dimension: int) -> RowBatch:
        tenant_codes: dict[str, int] = {}
        by_attr: dict[tuple[str, AttrType], list[AttrValue | None]] = {}
        for i, r in enumerate(records):
            if r.vector.shape != (dimension,):
                raise InvalidArgument(
                    f"record {tuple(r.key)}: dimension {r.vector.shape[0]} does not match, "
                    f"expected {dimension}"
                )
            tenant_codes.setdefault(r.key.tenant_id, len(tenant_codes))
            for name, value in r.attributes.items():
                values = by_attr.setdefault((name, _attr_type(value, r.key, name)), [])
                values.extend([None] * (i - len(values)))
                values.append(tuple(value) if isinstance(value, list) else value)
        n = len(records)
        columns = []
        for (name, kind), values in by_attr.items():
            values.extend([None] * (n - len(values)))
            columns.append((name, AttributeColumn.of(kind, values)))
        return cls(
            keys=[r.key for r in records],
            vectors=np.stack([r.vector for r in records]).astype(np.float32, copy=False)
            if records
            else np.zeros((0, dimension), np.float32),
            source_versions=np.array([r.source_version for r in records], dtype=np.int64),
            created_at=np.array([r.created_at for r in records], dtype=np.int64),
            model_versions=[r.model_version for r in records],
            buckets=np.array([r.bucket for r in records], dtype=np.int64),
            tenants=np.array([tenant_codes[r.key.tenant_id] for r in records], dtype=np.int32),
            tenant_names=tuple(tenant_codes),
            columns=tuple(columns),
            norms=np.array([r.norm for r in records], dtype=np.float64),
        )

    def take(self, rows: np.ndarray) -> RowBatch:
        rows = np.asarray(rows, dtype=np.int64)
        picked = rows.tolist()
        return RowBatch(
            keys=[self.keys[i] for i in picked],
            vectors=self.vectors[rows],
            source_versions=self.source_versions[rows],
            created_at=self.created_at[rows],
            model_versions=[self.model_versions[i] for i in picked],
            buckets=self.buckets[rows],
            tenants=self.tenants[rows],
            tenant_names=self.tenant_names,
            columns=tuple((name, col.take(rows)) for name, col in self.columns),
            norms=self.norms[rows] if self.norms is not None else None,
        )

    def record(self, i: int) -> rec.Record:
        """Row i as a record (tests, diagnostics)."""
        attrs = {}
        for name, col in self.columns:
            value = col.value(i)
            if value is not None:
                attrs[name] = value
        return rec.Record(
            self.keys[i],
            self.vectors[i],
            int(self.source_versions[i]),
            self.model_versions[i],
            int(self.created_at[i]),
            attrs,
            float(self.norms[i]) if self.norms is not None else 0.0,
            int(self.buckets[i]),
        )

    def numeric_columns(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(attribute, float64 values, present) of every int and float column."""
        return [
            (name, np.asarray(col.values, dtype=np.float64), col.present)
            for name, col in self.columns
            if col.type in (AttrType.INT, AttrType.FLOAT)
        ]


def _attr_type(value: object, key: EntityKey, name: str) -> AttrType:
    if isinstance(value, bool):
        raise InvalidArgument(
            f"record {tuple(key)}: attribute {name!r} is {value!r}; booleans are not an "
            "attribute type (string, int, float, string list)"
        )
    if isinstance(value, str):
        return AttrType.STRING
    if isinstance(value, int):
        return AttrType.INT
    if isinstance(value, float):
        return AttrType.FLOAT
    if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
        return AttrType.STRING_LIST
    raise InvalidArgument(
        f"record {tuple(key)}: attribute {name!r} is {value!r}, expected a string, int, "
        "float or list of strings"
    )


def row_dots(vectors: np.ndarray) -> np.ndarray:
    """Per row, v·v in the vectors' dtype, equal bit for bit to `v @ v` on
    each row alone (a batched matmul of 1×d by d×1: the same per-row
    reduction, unlike einsum or sum, which order the additions differently)."""
    if not vectors.shape[0]:
        return np.zeros(0, dtype=vectors.dtype)
    out: np.ndarray = np.matmul(vectors[:, None, :], vectors[:, :, None])[:, 0, 0]
    return out


def _where(batch: RowBatch, i: int) -> str:
    return f"record {tuple(part[:64] for part in batch.keys[i])}"


def _check_limits(batch: RowBatch, limits: Limits) -> None:
    """Defence in depth: the coordinator checked these limits already (a
    shard must not trust its caller). Key sizes by one pass over lengths,
    attributes by the column checks of `core.limits`."""
    n = len(batch)
    if not n:
        return
    sizes = np.fromiter(
        (max(len(k.tenant_id), len(k.entity_type), len(k.entity_id)) for k in batch.keys),
        dtype=np.int64,
        count=n,
    )
    # Characters ≤ bytes ≤ 4 × characters: only rows that may be over are encoded.
    smallest = min(
        limits.max_tenant_id_bytes, limits.max_entity_type_bytes, limits.max_entity_id_bytes
    )
    for row in np.flatnonzero(sizes * 4 > smallest).tolist():
        limits.check_key(batch.keys[row], _where(batch, row))
    limits.check_attribute_columns(dict(batch.columns), n, lambda i: _where(batch, i))


def prepare_rows(
    batch: RowBatch,
    family: EmbeddingFamily,
    index: IndexVersion,
    limits: Limits = DEFAULT_LIMITS,
) -> RowBatch:
    """The batch checked (every rule of a per-record write and the input
    limits, over arrays; the first bad row rejects it, naming its key) and
    ready to store: vectors normalized where the family says so, the norm of
    each vector as given."""
    n = len(batch)
    _check_limits(batch, limits)
    row = first_row(np.fromiter((not k.entity_id for k in batch.keys), dtype=bool, count=n))
    if row is not None:
        raise InvalidArgument(f"{_where(batch, row)}: entity_id is empty, expected a non-empty id")
    if batch.vectors.shape[1] != family.dimension and n:
        raise InvalidArgument(
            f"{_where(batch, 0)}: dimension {batch.vectors.shape[1]} does not match, "
            f"expected {family.dimension}"
        )
    row = first_row(~np.isfinite(batch.vectors).all(axis=1))
    if row is not None:
        raise InvalidArgument(
            f"{_where(batch, row)}: contains NaN or Inf, expected finite float32 values"
        )
    for name, col in batch.columns:
        declared = index.attributes.get(name)
        if declared is None:
            continue  # stored as metadata, not filterable
        row = first_row(col.present) if not type_fits(declared, col.type) else None
        if row is None and col.type is AttrType.FLOAT:
            row = first_row(col.present & ~np.isfinite(np.asarray(col.values)))
            if row is not None:
                raise InvalidArgument(
                    f"{_where(batch, row)}: attribute {name!r} is {col.value(row)}, "
                    "expected a finite number"
                )
        if row is not None:
            raise InvalidArgument(
                f"{_where(batch, row)}: attribute {name!r} is {col.value(row)!r}, "
                f"expected {declared.value}"
            )
    row = first_row((batch.buckets < 0) | (batch.buckets >= index.num_buckets))
    if row is not None:
        raise InvalidArgument(
            f"{_where(batch, row)}: bucket {int(batch.buckets[row])} out of range "
            f"0..{index.num_buckets - 1}"
        )
    v64 = batch.vectors.astype(np.float64)
    norms = np.sqrt(row_dots(v64))
    vectors = batch.vectors
    if family.normalize or family.metric is Metric.COSINE:
        row = first_row(norms == 0.0)
        if row is not None:
            raise InvalidArgument(
                f"{_where(batch, row)}: zero vector cannot be normalized (cosine metric); "
                "expected norm > 0"
            )
        vectors = (v64 / norms[:, None]).astype(np.float32)
    else:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return replace(batch, vectors=vectors, norms=norms)


def latest_rows(raw_keys: Sequence[bytes], source_versions: np.ndarray) -> np.ndarray:
    """Rows to keep when a key appears more than once (`batch_winners`)."""
    best = batch_winners(raw_keys, source_versions.tolist())
    if best is None:
        return np.arange(len(raw_keys), dtype=np.int64)
    return np.array(sorted(best.values()), dtype=np.int64)
