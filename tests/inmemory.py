"""In-memory shards for coordinator tests: the whole `Shard` protocol with the
real shard's rules, so coordinator logic is tested on plain data.

Searches run on the real exact segment (`GrowingSegment`), so scores are the
real shard's bit for bit. Writes follow `shard_server.partition` (the
version rules of `shard_server.version_rules`, batch precedence,
validation); features
follow `shard_server.feature_store` and `feature_service` (precedence by
`GroupRow.supersedes`, TTL, `not_computed` for a group never written) and
resolve with the same `registry.feature_values` functions; answers are the
same columns in wire form a real shard sends. One contract suite
(`tests/test_shard_contract_*.py`) holds this shard and a real one to the same
behaviour. Failure injection: `error` (raised by every call) and `delay`.

Without a registry (`registry=None`) a shard serves any index version with
the constructor's metric and dimension and one float attribute, `price`:
enough for search tests that place rows with `add`. The registries tests
build for it are in `tests/static_registry.py`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from coordinator.merge import Hit
from coordinator.model import (
    GroupFetch,
    IndexSummary,
    ShardAnswer,
    ShardBounds,
    ShardIndex,
    ShardQuery,
    WriteRecord,
)
from core.column_wire import resolved_to_pb
from core.domain import AttrType, EntityKey, Metric, VersionRef
from core.embedding_columns import DELETED, FOUND, MISSING, EmbeddingColumns, unanswered
from core.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    VecshardError,
)
from core.filters import validate_attributes, validate_filter
from core.ordering import order_key
from core.record_columns import RecordColumns
from core.scoring import canonical_scores, normalized, prepare_query
from core.timestamps import check_time
from core.vectors import check_vector
from registry.feature_batches import (
    RowBatch,
    batch_to_rows,
    check_batch,
    newest_per_entity,
    stored_rows,
)
from registry.feature_catalog import GroupRead, readable
from registry.feature_values import missing_columns, resolve_columns
from registry.features import GroupRow, GroupSchema, MissingReason
from registry.model import EmbeddingFamily, IndexVersion, Placement, ShardMember
from registry.snapshot import Snapshot
from shard_server.growing_segment import GrowingSegment
from shard_server.segment import DEFAULT_OPTIONS
from tests.static_registry import FAMILY, INDEX, RegistryReader

# Buckets an index version has when no registry says (search-only tests).
UNREGISTERED_BUCKETS = 1 << 16


def applies(source_version: int, stored: WriteRecord | None, tombstone: int | None) -> bool:
    """`shard_server.version_rules.applies` over domain values: an equal version
    replaces a record; a delete wins over every write of its version or older."""
    if stored is not None and source_version < stored.source_version:
        return False
    return tombstone is None or source_version > tombstone


@dataclass
class _Partition:
    index: IndexVersion
    family: EmbeddingFamily
    segment: GrowingSegment
    # key → (stored record, bucket, write sequence)
    records: dict[EntityKey, tuple[WriteRecord, int, int]] = field(default_factory=dict)
    tombstones: dict[EntityKey, int] = field(default_factory=dict)

    @property
    def normalize(self) -> bool:
        return self.family.normalize or self.family.metric is Metric.COSINE

    def stored_form(self, r: WriteRecord, bucket: int) -> WriteRecord:
        """`IndexPartition.validate`: what the shard keeps of a record."""
        where = f"record {tuple(r.key)}"
        if not r.key.entity_id:
            raise InvalidArgument(f"{where}: entity_id is empty, expected a non-empty id")
        check_vector(r.vector, self.family.dimension, what=where)
        validate_attributes(r.attributes, self.index.attributes, where)
        if bucket >= self.index.num_buckets:
            raise InvalidArgument(
                f"{where}: bucket {bucket} out of range 0..{self.index.num_buckets - 1}"
            )
        v64 = r.vector.astype(np.float64)
        vector = (
            normalized(r.vector, what=where)
            if self.normalize
            else np.array(r.vector, dtype=np.float32)
        )
        attributes = {k: tuple(v) if isinstance(v, list) else v for k, v in r.attributes.items()}
        return replace(r, vector=vector, attributes=attributes, norm=float(np.sqrt(v64 @ v64)))


class InMemoryShard:
    def __init__(
        self,
        shard_id: str,
        metric: Metric = Metric.L2,
        dim: int = 0,
        address: str = "",
        registry: RegistryReader | None = None,
    ) -> None:
        self.shard_id = shard_id
        self.address = address or f"mem://{shard_id}"
        self.metric, self.dim = metric, dim
        self.registry = registry
        self.delay = 0.0
        self.error: VecshardError | None = None
        self.calls = 0  # searches
        self.ops: Counter[str] = Counter()  # every call, by method
        self.log: list[tuple[str, VersionRef | None]] = []  # every call: (method, index or group)
        self.closed = False
        self.sequence = 0
        self.vectors: list[np.ndarray] = []  # what `add` placed (for true_bound)
        self._partitions: dict[VersionRef, _Partition] = {}
        self._features: dict[VersionRef, dict[EntityKey, GroupRow]] = {}

    # --- test helpers -----------------------------------------------------------

    def add(self, key: EntityKey, vec: np.ndarray, bucket: int, index: VersionRef = INDEX) -> None:
        """Places a row directly (no validation, no version): search tests.
        A write like any other: it takes the next write sequence."""
        self.sequence += 1
        self._partition(index).segment.upsert(key, vec, {}, bucket, self.sequence)
        self.vectors.append(vec)

    def true_bound(self, query: np.ndarray) -> float:
        """The exact best score among `add`ed rows (a tight upper bound)."""
        if not self.vectors:
            return float("-inf")
        q = prepare_query(query, self.metric, self.metric is Metric.COSINE)
        return float(canonical_scores(self.metric, q, np.stack(self.vectors)).max())

    def true_bounds(self, queries: np.ndarray, slack: float = 0.0) -> ShardBounds:
        """`true_bound` (plus `slack`) of each query row, at the shard's
        sequence now: a bounds provider over `add`ed rows."""
        return ShardBounds(np.array([self.true_bound(q) + slack for q in queries]), self.sequence)

    async def _enter(
        self, op: str, ref: VersionRef | None = None, timeout: float | None = None
    ) -> None:
        """With `timeout`, a delay past it fails the call DEADLINE_EXCEEDED
        at the timeout, as a gRPC call's deadline does."""
        self.ops[op] += 1
        self.log.append((op, ref))
        if self.closed:
            raise Unavailable(f"shard {self.shard_id} at {self.address} is closed")
        if timeout is not None and self.delay > timeout:
            await asyncio.sleep(timeout)
            raise DeadlineExceeded(f"shard {self.shard_id}: Deadline Exceeded")
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error

    # --- the registry, as a shard reads it -------------------------------------------

    def _partition(self, ref: VersionRef) -> _Partition:
        part = self._partitions.get(ref)
        if part is not None:
            return part
        if self.registry is None:
            index = IndexVersion(
                ref.name,
                ref.version,
                FAMILY,
                num_buckets=UNREGISTERED_BUCKETS,
                attributes={"price": AttrType.FLOAT},
            )
            family = EmbeddingFamily(FAMILY.name, "item", self.dim, self.metric)
        else:
            snap = self.registry.snapshot
            if ref not in snap.indexes:
                snap = self.registry.reread()  # created after our last watch event
            if ref not in snap.indexes:
                raise NotFound(f"shard {self.shard_id}: unknown index version {ref}")
            index = snap.indexes[ref]
            family = snap.family(index.embedding.name)
        segment = GrowingSegment(str(ref), family.dimension, family.metric, index.attributes)
        part = self._partitions[ref] = _Partition(index, family, segment)
        return part

    def _check_buckets(self, ref: VersionRef, buckets: set[int]) -> None:
        if self.registry is None:
            return
        snap = self.registry.snapshot
        placement = snap.placements.get(ref) or self.registry.reread().placement(ref)
        owned = set(placement.buckets_of(self.shard_id))
        foreign = buckets - owned
        if foreign:
            raise FailedPrecondition(
                f"shard {self.shard_id} does not hold bucket(s) {sorted(foreign)} of {ref}; "
                f"it holds {sorted(owned)} (stale placement at the caller?)"
            )

    def _schema(self, group: VersionRef) -> GroupSchema:
        if self.registry is None:
            raise NotFound(f"feature group {group} does not exist")
        catalog = self.registry.snapshot.feature_catalog
        if group not in catalog.groups:
            catalog = self.registry.reread().feature_catalog  # defined a moment ago
        return catalog.schema(group)

    # --- the Shard protocol ----------------------------------------------------------

    async def search(
        self, index: VersionRef, queries: Sequence[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        self.calls += 1
        await self._enter("search", index)
        part = self._partition(index)
        prepared = []
        for i, q in enumerate(queries):
            check_vector(q.vector, part.family.dimension, what=f"query {i}")
            if q.k <= 0 or q.k > part.index.max_k:
                raise InvalidArgument(f"query {i}: k={q.k}, expected 1..{part.index.max_k}")
            if q.filter is not None:
                validate_filter(q.filter, part.index.attributes)
            prepared.append(prepare_query(q.vector, part.family.metric, part.normalize))
        return [self._search_one(part, vec, q) for vec, q in zip(prepared, queries, strict=True)]

    def _search_one(self, part: _Partition, vector: np.ndarray, q: ShardQuery) -> ShardAnswer:
        """`shard_server.partition_search._search_page`: a later page over-fetches (doubling)
        until k items after the cursor, written by its watermark, are found."""
        after = order_key(*q.after) if q.after is not None else None
        pinned = q.max_sequence is not None
        fetch = q.k + q.served if after is not None or pinned else q.k
        while True:
            res = part.segment.search(vector, fetch, q.tenant_id, q.filter, DEFAULT_OPTIONS)
            hits = [
                h
                for h in res.hits
                if (after is None or order_key(h.score, h.key) > after)
                and (q.max_sequence is None or h.seq <= q.max_sequence)
            ]
            if len(hits) >= q.k or len(res.hits) < fetch:
                return ShardAnswer.of(
                    [Hit(h.score, h.key, self.shard_id, h.bucket) for h in hits[: q.k]],
                    res.candidates,
                    self.sequence,
                )
            fetch *= 2

    async def upsert(
        self, index: VersionRef, records: Sequence[tuple[WriteRecord, int]], timeout: float
    ) -> tuple[int, int]:
        await self._enter("upsert", index)
        return self._upsert(index, records)

    async def upsert_columns(
        self,
        index: VersionRef,
        tenant_id: str,
        records: RecordColumns,
        buckets: np.ndarray,
        timeout: float,
    ) -> tuple[int, int]:
        """`upsert` of the rows, one record each (the rules are the same)."""
        await self._enter("upsert_columns", index)
        rows = [
            (
                WriteRecord(
                    EntityKey(tenant_id, records.entity_type, eid),
                    records.vectors[i],
                    int(records.source_versions[i]),
                    records.model_version,
                    int(records.created_at[i]),
                    records.attributes_of(i),
                ),
                int(buckets[i]),
            )
            for i, eid in enumerate(records.entity_ids.tolist())
        ]
        return self._upsert(index, rows)

    def _upsert(
        self, index: VersionRef, records: Sequence[tuple[WriteRecord, int]]
    ) -> tuple[int, int]:
        part = self._partition(index)
        self._check_buckets(index, {b for _, b in records})
        ready = [(part.stored_form(r, b), b) for r, b in records]
        # Within a batch the highest source_version wins; on a tie, the last one.
        latest: dict[EntityKey, tuple[WriteRecord, int]] = {}
        for r, b in ready:
            prev = latest.get(r.key)
            if prev is None or r.source_version >= prev[0].source_version:
                latest[r.key] = (r, b)
        self.sequence += 1
        written = 0
        for key, (r, b) in latest.items():
            old = part.records.get(key)
            if not applies(r.source_version, old[0] if old else None, part.tombstones.get(key)):
                continue
            part.records[key] = (r, b, self.sequence)
            part.tombstones.pop(key, None)
            part.segment.upsert(key, r.vector, r.attributes, b, self.sequence)
            written += 1
        return written, len(latest) - written

    async def delete(
        self, index: VersionRef, keys: Sequence[EntityKey], source_version: int, timeout: float
    ) -> int:
        """`IndexPartition.delete`: removes a record of the delete's version or
        older (never a newer one) and raises the key's tombstone to it."""
        await self._enter("delete", index)
        part = self._partition(index)
        self.sequence += 1
        removed = 0
        for key in dict.fromkeys(keys):
            old = part.records.get(key)
            if old is not None and old[0].source_version > source_version:
                continue  # a stale delete: the newer write stays
            if part.tombstones.get(key, source_version - 1) >= source_version:
                continue
            part.tombstones[key] = source_version
            if old is not None:
                del part.records[key]
                part.segment.delete(key)
                removed += 1
        return removed

    async def batch_get(
        self,
        index: VersionRef,
        keys: Sequence[EntityKey],
        include_vectors: bool,
        timeout: float,
        include_attributes: bool = False,
    ) -> EmbeddingColumns:
        await self._enter("batch_get", index, timeout)
        part = self._partition(index)
        width = part.family.dimension if include_vectors else 0
        out = unanswered(len(keys), width, MISSING)
        versions: dict[str, int] = {}
        attributes = [""] * len(keys) if include_attributes else None
        for i, key in enumerate(keys):
            found = part.records.get(key)
            if found is None:
                out.status[i] = DELETED if key in part.tombstones else MISSING
                continue
            r = found[0]
            out.status[i] = FOUND
            if width:
                out.vectors[i] = r.vector
            out.source_version[i], out.created_at[i] = r.source_version, r.created_at
            out.norm[i] = r.norm
            out.model_version_index[i] = versions.setdefault(r.model_version, len(versions))
            if attributes is not None:
                attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in r.attributes.items()}
                attributes[i] = json.dumps(attrs, sort_keys=True)
        return replace(out, model_versions=list(versions), attributes_json=attributes)

    async def describe(self, timeout: float = 5.0) -> list[ShardIndex]:
        await self._enter("describe")
        out = []
        for ref, part in sorted(
            self._partitions.items(), key=lambda kv: (kv[0].name, kv[0].version)
        ):
            s = part.segment.summary()
            summary = IndexSummary(
                part.family.metric,
                s.centroids,
                s.radii,
                {
                    b: ({a: (lo, hi) for a, (lo, hi, _) in st.ranges.items()}, st.tenants)
                    for b, st in s.buckets.items()
                },
                self.sequence,
            )
            out.append(ShardIndex(ref, len(part.records), len(part.tombstones), summary))
        return out

    async def get_feature_columns(
        self,
        tenant_id: str,
        fetches: Sequence[GroupFetch],
        request_time: int,
        personalized: bool,
        timeout: float,
    ) -> list[object]:
        await self._enter("get_feature_columns", None, timeout)
        self.log.extend(("get_features", f.group) for f in fetches)
        reads = []
        for f in fetches:  # every fetch is checked before any is answered
            check_time("request_time_us", request_time, f"feature group {f.group}")
            schema = self._schema(f.group)
            unknown = [x for x in f.features if x not in schema.names]
            if unknown:
                raise InvalidArgument(
                    f"group {f.group}: no feature(s) {unknown}; it has {list(schema.names)}"
                )
            defs = tuple(schema.definition(x) for x in f.features)
            reads.append(GroupRead(schema, tuple(f.features), tuple(f.features), defs))
        out: list[object] = []
        for read, f in zip(reads, fetches, strict=True):
            stored = self._features.get(f.group)
            n = len(f.entity_ids)
            if not readable(read.schema, personalized):
                resolved = missing_columns(read, MissingReason.PRIVACY_DISABLED, n)
            elif stored is None:
                resolved = missing_columns(read, MissingReason.NOT_COMPUTED, n)
            else:
                etype = read.schema.group.entity_type
                rows = [stored.get(EntityKey(tenant_id, etype, i)) for i in f.entity_ids]
                found = stored_rows(read.schema, rows)
                resolved = resolve_columns(read, found, request_time, personalized)
            out.append(resolved_to_pb(resolved))
        return out

    async def put_features(
        self, group: VersionRef, batch: RowBatch, timeout: float
    ) -> tuple[int, int]:
        await self._enter("put_features", group)
        schema = self._schema(group)
        stored = self._features.setdefault(group, {})  # even an empty batch creates it
        checked = check_batch(schema, batch)
        latest = batch_to_rows(schema, checked.take(newest_per_entity(checked)))
        written = 0
        for r in latest:
            old = stored.get(r.entity)
            if old is None or r.supersedes(old.feature_timestamp, old.generated_at):
                stored[r.entity] = r
                written += 1
        return written, len(checked) - written

    async def close(self) -> None:
        self.closed = True


def snapshot_for(shards: Sequence[InMemoryShard], buckets: Sequence[Sequence[str]]) -> Snapshot:
    """One index version (`INDEX`, unregistered) placed on `shards`."""
    return Snapshot(
        revision=1,
        placements={INDEX: Placement(INDEX, tuple(tuple(b) for b in buckets))},
        shards={s.shard_id: ShardMember(s.shard_id, s.address) for s in shards},
    )
