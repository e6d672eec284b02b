"""One index version's data on this shard: the durable records in RocksDB and
the segment that searches them, kept in step under one write lock.

Write semantics: an upsert replaces (one live vector per key); a write whose
source_version is older than the stored one (or than a delete's) is ignored and
counted; replaying the same batch is idempotent; the batch is synced to the WAL
before the segment sees it, so whatever a search can return is durable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from protos.errors import InvalidArgument
from protos.vectors import check_vector
from registry.filters import Filter, validate_attributes, validate_filter
from registry.model import EmbeddingFamily, EntityKey, IndexVersion, Metric
from shard_server import records as rec
from shard_server.flat_segment import FlatSegment, SegmentResult
from shard_server.scoring import normalized, prepare_query
from shard_server.storage import RECORDS, TOMBSTONES, ShardStore

log = logging.getLogger(__name__)


class LookupStatus(Enum):
    FOUND = "found"
    MISSING = "missing"
    DELETED = "deleted"


@dataclass(frozen=True)
class Lookup:
    key: EntityKey
    status: LookupStatus
    record: rec.Record | None = None


@dataclass(frozen=True)
class WriteResult:
    written: int
    ignored_stale: int
    sequence: int


@dataclass(frozen=True)
class Query:
    vector: np.ndarray
    k: int
    tenant_id: str
    filter: Filter | None = None


def applies(source_version: int, stored: bytes | None, tombstone: bytes | None) -> bool:
    """Whether an upsert with `source_version` replaces what is stored.

    An equal version replaces a stored record (a retried batch is idempotent);
    a delete wins over every write of its version or older, so a retried
    upsert can never bring a deleted key back.
    """
    if stored is not None and source_version < rec.source_version_of(stored):
        return False
    return tombstone is None or source_version > rec.decode_tombstone(tombstone)


class IndexPartition:
    def __init__(self, index: IndexVersion, family: EmbeddingFamily, store: ShardStore) -> None:
        self.index = index
        self.family = family
        self.store = store
        self.segment = FlatSegment(family.dimension, family.metric, index.attributes)
        self._prefix = rec.index_prefix(index.ref)
        self._write_lock = threading.Lock()
        self.tombstones = 0

    @property
    def normalize(self) -> bool:
        return self.family.normalize or self.family.metric is Metric.COSINE

    def load(self) -> int:
        """Rebuilds the segment from RocksDB (the source of truth) at start-up."""
        count = 0
        for raw_key, value in self.store.iter_prefix(RECORDS, self._prefix):
            _, key = rec.parse_record_key(raw_key)
            r = rec.decode_record(key, value)
            self.segment.upsert(key, r.vector, r.attributes, r.bucket)
            count += 1
        self.tombstones = sum(1 for _ in self.store.iter_prefix(TOMBSTONES, self._prefix))
        return count

    def validate(self, records: Sequence[rec.Record]) -> list[rec.Record]:
        """Checks every record before anything is written; returns them ready to
        store (normalized where the family says so). One bad record rejects the
        batch, naming its key."""
        out = []
        for r in records:
            where = f"record {tuple(r.key)}"
            if not r.key.entity_id:
                raise InvalidArgument(f"{where}: entity_id is empty, expected a non-empty id")
            check_vector(r.vector, self.family.dimension, what=where)
            validate_attributes(r.attributes, self.index.attributes, where)
            if r.bucket >= self.index.num_buckets:
                raise InvalidArgument(
                    f"{where}: bucket {r.bucket} out of range 0..{self.index.num_buckets - 1}"
                )
            norm = float(np.sqrt(r.vector.astype(np.float64) @ r.vector.astype(np.float64)))
            vector = (
                normalized(r.vector, what=where)
                if self.normalize
                else np.array(r.vector, dtype=np.float32)
            )
            out.append(replace(r, vector=vector, norm=norm))
        return out

    def upsert(self, records: Sequence[rec.Record]) -> WriteResult:
        ready = self.validate(records)
        # Within a batch the highest source_version wins; on a tie, the last one.
        latest: dict[EntityKey, rec.Record] = {}
        for r in ready:
            prev = latest.get(r.key)
            if prev is None or r.source_version >= prev.source_version:
                latest[r.key] = r
        keys = list(latest)
        raw_keys = [rec.record_key(self.index.ref, k) for k in keys]
        with self._write_lock:
            stored = self.store.multi_get(RECORDS, raw_keys)
            tombs = self.store.multi_get(TOMBSTONES, raw_keys)
            apply: list[tuple[bytes, rec.Record]] = []
            revived = 0
            for raw_key, key, old, tomb in zip(raw_keys, keys, stored, tombs, strict=True):
                r = latest[key]
                if not applies(r.source_version, old, tomb):
                    continue
                apply.append((raw_key, r))
                revived += tomb is not None
            seq = self.store.write(
                puts=[(RECORDS, k, rec.encode_record(r)) for k, r in apply],
                deletes=[(TOMBSTONES, k) for k, _ in apply],
            )
            for _, r in apply:
                self.segment.upsert(r.key, r.vector, r.attributes, r.bucket)
            self.tombstones -= revived
        ignored = len(latest) - len(apply)
        return WriteResult(len(apply), ignored, seq)

    def delete(self, keys: Sequence[EntityKey], source_version: int) -> WriteResult:
        unique = list(dict.fromkeys(keys))
        raw_keys = [rec.record_key(self.index.ref, k) for k in unique]
        with self._write_lock:
            stored = self.store.multi_get(RECORDS, raw_keys)
            tombs = self.store.multi_get(TOMBSTONES, raw_keys)
            puts, deletes, removed = [], [], []
            for raw_key, key, old, tomb in zip(raw_keys, unique, stored, tombs, strict=True):
                version = max(
                    source_version,
                    rec.source_version_of(old) if old is not None else source_version,
                )
                if tomb is not None:
                    version = max(version, rec.decode_tombstone(tomb))
                puts.append((TOMBSTONES, raw_key, rec.encode_tombstone(version)))
                if old is not None:
                    deletes.append((RECORDS, raw_key))
                    removed.append(key)
            new_tombs = sum(1 for t in tombs if t is None)
            seq = self.store.write(puts=puts, deletes=deletes)
            for key in removed:
                self.segment.delete(key)
            self.tombstones += new_tombs
        return WriteResult(len(removed), 0, seq)

    def get(self, keys: Sequence[EntityKey]) -> list[Lookup]:
        raw_keys = [rec.record_key(self.index.ref, k) for k in keys]
        stored = self.store.multi_get(RECORDS, raw_keys)
        missing = [rk for rk, v in zip(raw_keys, stored, strict=True) if v is None]
        tombs = dict(zip(missing, self.store.multi_get(TOMBSTONES, missing), strict=True))
        out = []
        for key, raw_key, value in zip(keys, raw_keys, stored, strict=True):
            if value is not None:
                out.append(Lookup(key, LookupStatus.FOUND, rec.decode_record(key, value)))
            elif tombs.get(raw_key) is not None:
                out.append(Lookup(key, LookupStatus.DELETED))
            else:
                out.append(Lookup(key, LookupStatus.MISSING))
        return out

    def search(self, queries: Sequence[Query]) -> list[SegmentResult]:
        prepared = []
        for i, q in enumerate(queries):
            check_vector(q.vector, self.family.dimension, what=f"query {i}")
            if q.k <= 0 or q.k > self.index.max_k:
                raise InvalidArgument(f"query {i}: k={q.k}, expected 1..{self.index.max_k}")
            if q.filter is not None:
                validate_filter(q.filter, self.index.attributes)
            prepared.append(prepare_query(q.vector, self.family.metric, self.normalize))
        return [
            self.segment.search(vec, q.k, q.tenant_id, q.filter)
            for vec, q in zip(prepared, queries, strict=True)
        ]
