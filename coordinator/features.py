"""GetFeatures / PutFeatures on the coordinator (DESIGN §7).

A feature set's groups are split by entity type; groups a request may not
read (behavioural data in non-personalized mode) are answered
`privacy_disabled` WITHOUT a fetch; the rest are fetched from the shards
owning each entity's bucket — one call per shard, carrying every group it
is asked — where they are resolved with the same functions as the offline
joins, and come back as columns. The coordinator never decodes a value: it
passes each shard's columns through with the positions of their rows
(`FeatureBlock`), which the SDK reorders with one array operation.

Per-entity failures are values, never an error for the request (DESIGN §8):
a shard that does not answer before the deadline yields `timeout` values;
one that refuses has its rows asked of the buckets' other replicas
(`coordinator.feature_fetch`), and rows no other replica holds — or a bucket
with no serving replica — yield `unavailable` at once. Only request-level problems fail the call: an unknown feature set,
an entity type it does not read, another tenant's entity, too many
entities, or an error every shard would give (`coordinator.partial`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from coordinator import metrics
from coordinator.access import check_access, own_entities
from coordinator.background import Background
from coordinator.fanout import FanoutSettings
from coordinator.feature_fetch import FeatureFetcher, Fetches
from coordinator.model import (
    Access,
    EntityColumns,
    FeatureBlock,
    FeatureResult,
)
from coordinator.quorum import (
    ReplicaRepair,
    column_replica_sets,
    replica_call,
    replica_count,
    run_quorum,
)
from coordinator.replicas import ReplicaTracker
from coordinator.shard import ShardFactory
from coordinator.snapshots import RegistryView
from core.column_wire import RowColumns
from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument, PermissionDenied
from core.feature_columns import MISSING_REASONS, concat, empty
from core.limits import Limits
from core.timestamps import check_time
from registry.feature_batches import RowBatch, check_batch, rows_to_batch
from registry.feature_catalog import GroupRead, readable
from registry.features import GroupRow, GroupSchema, MissingReason
from registry.model import Placement, ShardMember
from registry.placement import FEATURE_BUCKETS, feature_placement_ref, tenant_buckets_of
from registry.snapshot import Snapshot

_STALE = MISSING_REASONS.index("stale")
# Rows of a batch sent to one replica set: the batch and their positions in it.
Part = tuple[RowBatch, np.ndarray]


def _now_us() -> int:
    return time.time_ns() // 1000


class FeatureWire(Protocol):
    """Resolved columns stay in their wire form through the coordinator: it
    routes and counts them, and decoding thousands of values per request
    to encode them again would cost more than the lookup itself."""

    def missing(self, read: GroupRead, reason: MissingReason, rows: int) -> object:
        """Wire columns for entities that were not read, with the fills."""
        ...

    def reason_counts(self, columns: object) -> Sequence[int]:
        """How many values carry each missing-reason code (index = code)."""
        ...


def entity_columns(keys: Sequence[EntityKey]) -> EntityColumns:
    types = list(dict.fromkeys(k.entity_type for k in keys))
    if len(types) > 256:
        raise InvalidArgument(f"{len(types)} entity types in one request; expected at most 256")
    code = {t: i for i, t in enumerate(types)}
    index = np.fromiter((code[k.entity_type] for k in keys), dtype=np.uint8, count=len(keys))
    return EntityColumns(types, index, [k.entity_id for k in keys])


class FeatureEngine:
    def __init__(
        self,
        registry: RegistryView,
        shards: ShardFactory,
        tracker: ReplicaTracker,
        wire: FeatureWire,
        max_entities: int = 5000,
        fanout: FanoutSettings | None = None,
        background: Background | None = None,
        repair: ReplicaRepair | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.wire = wire
        self.limits = limits or Limits()
        # Replica writes still running when a write's quorum was met.
        self.background = background or Background()
        # Replica writes that failed, retried in the background.
        self.repair = repair or ReplicaRepair(self.background.spawn)
        self.registry = registry
        self.shards = shards
        self.tracker = tracker
        self.max_entities = max_entities
        self.fanout = fanout or FanoutSettings()
        self._announced: set[VersionRef] = set()
        self._freshest: dict[str, int] = {}  # per group name: FEATURE_FRESHNESS
        self.fetcher = FeatureFetcher(shards, tracker, wire.missing, self.fanout.hedge)

    def _bucket_shards(self, snap: Snapshot, group: VersionRef) -> list[tuple[str, str] | None]:
        """Per bucket of the group, the replica asked (None: none serving)."""
        placement = snap.placement(feature_placement_ref(group.name, group.version))
        out: list[tuple[str, str] | None] = []
        for replicas in placement.buckets:
            serving = [s for s in replicas if snap.serving_shard(s) is not None]
            pick = self.tracker.choose(serving, by_position=True)
            out.append((pick, snap.shards[pick].address) if pick else None)
        return out

    def _check(
        self, access: Access, entities: Sequence[EntityKey] | EntityColumns
    ) -> EntityColumns:
        if len(entities) > self.max_entities:
            raise InvalidArgument(
                f"{len(entities)} entities in one request, expected at most {self.max_entities}"
            )
        if not isinstance(entities, EntityColumns):
            entities = entity_columns(own_entities(entities, access))
        elif not all(entities.types) or not all(entities.ids):
            blank = (
                next(i for i, e in enumerate(entities.ids) if not e) if all(entities.types) else 0
            )
            raise InvalidArgument(
                f"entities[{blank}]: entity_type and entity_id are required, got an empty one"
            )
        self.limits.check_keys_of(access.tenant_id, entities.types, entities.ids, "entities")
        return entities

    async def get(
        self,
        access: Access,
        feature_set: VersionRef,
        entities: Sequence[EntityKey] | EntityColumns,
        request_time: int,
        personalized: bool,
        timeout: float,
    ) -> FeatureResult:
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        # The calls' deadline, fixed on arrival: what the checks and a re-read
        # of the registry take comes out of it.
        deadline = loop.time() + max(0.001, timeout - self.fanout.margin(timeout))
        if request_time:  # 0: now
            check_time("request_time_us", request_time, f"feature set {feature_set}")
        ents = self._check(access, entities)
        snap, fs = await self.registry.fresh(
            lambda s: (
                check_access(access, None, s),
                s.feature_catalog.feature_set(feature_set),
            )[1]
        )
        plan = snap.feature_catalog.plan(fs)
        request_time = request_time or _now_us()
        reads_by_type: dict[str, list[GroupRead]] = defaultdict(list)
        for read in plan:
            reads_by_type[read.schema.group.entity_type].append(read)
        present = [t for i, t in enumerate(ents.types) if (ents.type_index == i).any()]
        unknown_types = set(present) - set(reads_by_type)
        if unknown_types:
            raise InvalidArgument(
                f"feature set {feature_set} has no features for entity type(s) {sorted(unknown_types)}; "
                f"it reads {sorted(reads_by_type)}"
            )
        blocks, fetches = self._route(snap, access, ents, reads_by_type, personalized)
        if fetches.unsure:
            # A bucket with no serving replica in a snapshot a moment old may
            # have one now (a shard re-registering): route on a fresh one —
            # if the registry can be read within the time left.
            fresh = await self.registry.moved(snap, deadline)
            if fresh is not None:
                snap = fresh
                blocks, fetches = self._route(snap, access, ents, reads_by_type, personalized)
        # The calls' deadline bounds them: past it they fail DEADLINE_EXCEEDED,
        # which answers their entities `timeout`.
        budget = max(0.001, deadline - loop.time())
        blocks += await self.fetcher.fetch(
            snap, access.tenant_id, fetches, request_time, personalized, budget
        )
        return self._result(blocks, reads_by_type, len(ents), len(fetches.by_shard), t0)

    def _route(
        self,
        snap: Snapshot,
        access: Access,
        ents: EntityColumns,
        reads_by_type: dict[str, list[GroupRead]],
        personalized: bool,
    ) -> tuple[list[FeatureBlock], Fetches]:
        blocks: list[FeatureBlock] = []
        fetches = Fetches()
        tenant = snap.tenants.get(access.tenant_id)
        own_buckets = tenant.buckets if tenant else ()
        for code, etype in enumerate(ents.types):
            positions = np.flatnonzero(ents.type_index == code)
            if not len(positions) or etype not in reads_by_type:
                continue
            ids = [ents.ids[p] for p in positions.tolist()]
            buckets = tenant_buckets_of(access.tenant_id, ids, FEATURE_BUCKETS, own_buckets)
            for read in reads_by_type[etype]:
                self._plan_group(snap, read, etype, ids, buckets, personalized, blocks, fetches)
        return blocks, fetches

    def _plan_group(
        self,
        snap: Snapshot,
        read: GroupRead,
        etype: str,
        ids: list[str],
        buckets: np.ndarray,
        personalized: bool,
        blocks: list[FeatureBlock],
        fetches: Fetches,
    ) -> None:
        """Blocks answered here (privacy, no replica) and fetches to send."""
        if not readable(read.schema, personalized):
            # Refused, not fetched-then-dropped: no shard is asked.
            rows = np.arange(len(ids), dtype=np.int32)
            columns = self.wire.missing(read, MissingReason.PRIVACY_DISABLED, len(ids))
            blocks.append(FeatureBlock(read.schema.ref, etype, read.outputs, rows, columns))
            return
        targets = self._bucket_shards(snap, read.schema.ref)
        codes = {t: n for n, t in enumerate(dict.fromkeys(targets))}
        target_of = np.array([codes[t] for t in targets], dtype=np.int64)[buckets]
        for target, n in codes.items():
            rows = np.flatnonzero(target_of == n).astype(np.int32)
            if not len(rows):
                continue
            if target is None:
                fetches.unsure = True
                columns = self.wire.missing(read, MissingReason.UNAVAILABLE, len(rows))
                blocks.append(FeatureBlock(read.schema.ref, etype, read.outputs, rows, columns))
                continue
            fetches.add(target, read, rows, buckets[rows], ids, rows)

    def _result(
        self,
        blocks: list[FeatureBlock],
        reads_by_type: dict[str, list[GroupRead]],
        entities: int,
        shards: int,
        t0: float,
    ) -> FeatureResult:
        counts: dict[str, np.ndarray] = {}
        for block in blocks:
            by_code = np.asarray(self.wire.reason_counts(block.columns), dtype=np.int64)
            counts[block.group.name] = counts.get(block.group.name, 0) + by_code
        total = np.zeros(len(MISSING_REASONS), dtype=np.int64)
        for group, by_code in counts.items():
            total += by_code[: len(total)]
            for code in np.flatnonzero(by_code[1:]) + 1:
                metrics.FEATURE_MISSING.labels(group, MISSING_REASONS[code]).inc(int(by_code[code]))
        latency = time.perf_counter() - t0
        metrics.FEATURE_LATENCY.observe(latency)
        metrics.FEATURE_ENTITIES.observe(entities)
        reasons = {str(MISSING_REASONS[c]): int(total[c]) for c in range(1, len(total)) if total[c]}
        return FeatureResult(
            {t: [o for r in rs for o in r.outputs] for t, rs in reads_by_type.items()},
            blocks,
            reasons,
            int(total[_STALE]),
            shards,
            latency * 1e3,
        )

    async def put(
        self,
        access: Access,
        group: VersionRef,
        rows: Sequence[GroupRow],
        timeout: float,
        columns: RowColumns | None = None,
    ) -> tuple[int, int]:
        """Writes `rows` and `columns`; every row is checked before anything
        is sent, and one bad row refuses the request (nothing is written).
        Acknowledged once `write_quorum` replicas of each row's bucket (0:
        all) have it; returns (written, ignored as older), each row once."""
        snap, schema = await self.registry.fresh(
            lambda s: (
                check_access(access, None, s),
                s.feature_catalog.schema(group),
            )[1]
        )
        owned = own_entities([r.entity for r in rows], access)
        self.limits.check_keys_of(
            access.tenant_id, [k.entity_type for k in owned], [k.entity_id for k in owned], "rows"
        )
        batches = [
            rows_to_batch(schema, [r._replace(entity=k) for r, k in zip(rows, owned, strict=True)])
        ]
        if columns is not None:
            their_tenant, their_type, ids, ts, gen, values = columns
            if their_tenant not in ("", access.tenant_id):
                raise PermissionDenied(
                    f"feature rows of tenant {their_tenant!r} differ from the caller's tenant "
                    f"{access.tenant_id!r}"
                )
            etype = their_type or schema.group.entity_type  # another is refused by the check
            self.limits.check_keys_of(access.tenant_id, [etype], ids, "feature columns")
            keys = [EntityKey(access.tenant_id, etype, i) for i in ids]
            batches.append(check_batch(schema, RowBatch(keys, ts, gen, values)))
        placement = snap.placement(feature_placement_ref(group.name, group.version))
        tenant = snap.tenants.get(access.tenant_id)
        own_buckets = tenant.buckets if tenant else ()
        # Rows by the replica set of their bucket (refused when a bucket has
        # fewer registered replicas than the group's write quorum): each
        # replica of a set gets the same rows, so its first ack counts them.
        per_set: dict[tuple[str, ...], tuple[list[ShardMember], set[int], list[Part]]] = {}
        newest = 0
        for batch in batches:
            if not len(batch):
                continue
            newest = max(newest, int(batch.feature_timestamp.max()))
            ids = [k.entity_id for k in batch.entities]
            buckets = tenant_buckets_of(access.tenant_id, ids, FEATURE_BUCKETS, own_buckets)
            for name, (members, held, positions) in column_replica_sets(
                snap, schema.group, placement, buckets
            ).items():
                entry = per_set.setdefault(name, (members, set(), []))
                entry[1].update(held)
                entry[2].append((batch, positions))
        calls = [
            replica_call(
                m,
                held,
                name,
                functools.partial(self._put_to, group=group, rows=rows_of, timeout=timeout),
            )
            for name, (members, held, parts) in per_set.items()
            for rows_of in [_gathered(schema, parts)]
            for m in members
        ]
        announcing = None
        if group not in self._announced:
            written_to = {c.shard_id for c in calls}
            announcing = asyncio.ensure_future(
                self._announce(snap, group, placement, schema, written_to, timeout)
            )
        try:
            written, ignored = await run_quorum(
                calls,
                schema.group.write_quorum,
                replica_count(placement),
                _no_summary,
                self.background.spawn,
                self.repair,
            )
        finally:
            if announcing is not None:
                await announcing
        # The newest written so far: a backfill of older rows (ignored as
        # older, or written below the newest) moved it back, a false
        # freshness alert (found in review).
        if written and newest > self._freshest.get(group.name, 0):
            self._freshest[group.name] = newest
            metrics.FEATURE_FRESHNESS.labels(group.name).set(newest / 1e6)
        return written, ignored

    async def _put_to(
        self, sid: str, address: str, group: VersionRef, rows: RowBatch, timeout: float
    ) -> tuple[int, int]:
        return await self.shards(sid, address).put_features(group, rows, timeout)

    async def _announce(
        self,
        snap: Snapshot,
        group: VersionRef,
        placement: Placement,
        schema: GroupSchema,
        written_to: set[str],
        timeout: float,
    ) -> None:
        """The first write of a group through this coordinator creates its
        partition on every other shard of the placement (empty batches), so
        every shard tells `not_computed` from `entity_not_found` alike. A
        shard that cannot be reached now creates it with its first rows."""
        empty = _gathered(schema, [])
        targets = [s for s in placement.shards() if s in snap.shards and s not in written_to]
        results = await asyncio.gather(
            *(self._put_to(s, snap.shards[s].address, group, empty, timeout) for s in targets),
            return_exceptions=True,
        )
        if not any(isinstance(r, BaseException) for r in results):
            self._announced.add(group)


def _no_summary(shard_id: str) -> None:
    """Feature writes invalidate no search summary (`run_quorum`'s `on_write`)."""


def _gathered(schema: GroupSchema, parts: list[Part]) -> RowBatch:
    """The rows of `parts` as one batch for one shard (empty: the group's
    announcement)."""
    taken = [batch.take(rows) for batch, rows in parts]
    if not taken:
        zero = np.zeros(0, dtype=np.int64)
        return RowBatch(
            [], zero, zero, {d.name: empty(d.dtype.value, 0) for d in schema.definitions}
        )
    if len(taken) == 1:
        return taken[0]
    names = list(taken[0].columns)
    return RowBatch(
        [k for b in taken for k in b.entities],
        np.concatenate([b.feature_timestamp for b in taken]),
        np.concatenate([b.generated_at for b in taken]),
        {n: concat([b.columns[n] for b in taken]) for n in names},
    )
