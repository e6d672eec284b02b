"""GetFeatures / PutFeatures on the coordinator (DESIGN §7).

A feature set's groups are split by entity type; groups a request may not
read (behavioural data in non-personalized mode) are answered
`privacy_disabled` WITHOUT a fetch; the rest are fetched per shard in
parallel (the shard owning each entity's bucket resolves the values with the
same functions as the offline joins) and returned in request order. A shard
that does not answer in time yields `timeout` values, never an error for the
whole request.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Protocol

from coordinator import metrics
from coordinator.access import own_entities, require_tenant
from coordinator.buckets import key_bucket
from coordinator.model import Access, FeatureResult
from coordinator.partial import Decision, classify_shard_error
from coordinator.replicas import ReplicaTracker
from coordinator.shard import ShardFactory
from coordinator.snapshots import RegistryView
from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument, Unavailable
from registry.feature_catalog import GroupRead, readable
from registry.features import FeatureDefinition, GroupRow, MissingReason
from registry.registry import FEATURE_BUCKETS, feature_placement_ref
from registry.snapshot import Snapshot


def _now_us() -> int:
    return time.time_ns() // 1000


class FeatureWire(Protocol):
    """Feature values stay in their wire form through the coordinator: it
    only routes and counts them, and decoding 2,400 values of an 800-item
    request to encode them again would cost more than the lookup itself."""

    def missing(self, definition: FeatureDefinition, reason: MissingReason) -> object:
        """The wire value for a feature that was not read (with its default)."""
        ...

    def reason(self, value: object) -> str | None: ...


class FeatureEngine:
    def __init__(
        self,
        registry: RegistryView,
        shards: ShardFactory,
        tracker: ReplicaTracker,
        wire: FeatureWire,
        max_entities: int = 5000,
    ) -> None:
        self.wire = wire
        self.registry = registry
        self.shards = shards
        self.tracker = tracker
        self.max_entities = max_entities
        self._announced: set[VersionRef] = set()

    def _shard_of(
        self, snap: Snapshot, group: VersionRef, key: EntityKey
    ) -> tuple[str, str] | None:
        placement = snap.placement(feature_placement_ref(group.name, group.version))
        bucket = key_bucket(snap, FEATURE_BUCKETS, key)
        serving = [s for s in placement.buckets[bucket] if snap.serving_shard(s) is not None]
        pick = self.tracker.choose(serving)
        return (pick, snap.shards[pick].address) if pick else None

    async def get(
        self,
        access: Access,
        feature_set: VersionRef,
        entities: Sequence[EntityKey],
        request_time: int,
        personalized: bool,
        timeout: float,
    ) -> FeatureResult:
        t0 = time.perf_counter()
        if len(entities) > self.max_entities:
            raise InvalidArgument(
                f"{len(entities)} entities in one request, expected at most {self.max_entities}"
            )
        snap, fs = await self.registry.fresh(
            lambda s: (
                require_tenant(s, access.tenant_id),
                s.feature_catalog.feature_set(feature_set),
            )[1]
        )
        plan = snap.feature_catalog.plan(fs)
        keys = own_entities(entities, access)
        request_time = request_time or _now_us()
        reads_by_type: dict[str, list[GroupRead]] = defaultdict(list)
        for read in plan:
            reads_by_type[read.schema.group.entity_type].append(read)
        unknown_types = {k.entity_type for k in keys} - set(reads_by_type)
        if unknown_types:
            raise InvalidArgument(
                f"feature set {feature_set} has no features for entity type(s) {sorted(unknown_types)}; "
                f"it reads {sorted(reads_by_type)}"
            )
        # (group read, positions) → values per position
        results: dict[tuple[int, int], Sequence[object]] = {}
        calls = []
        shards_used: set[str] = set()
        for read_no, read in enumerate(plan):
            etype = read.schema.group.entity_type
            positions = [i for i, k in enumerate(keys) if k.entity_type == etype]
            if not readable(read.schema, personalized):
                # Refused, not fetched-then-dropped: no shard is asked.
                refused = tuple(
                    self.wire.missing(d, MissingReason.PRIVACY_DISABLED) for d in read.definitions
                )
                results.update({(read_no, p): refused for p in positions})
                continue
            by_shard: dict[tuple[str, str], list[int]] = defaultdict(list)
            for p in positions:
                target = self._shard_of(snap, read.schema.ref, keys[p])
                if target is None:
                    unavailable = tuple(
                        self.wire.missing(d, MissingReason.TIMEOUT) for d in read.definitions
                    )
                    results[(read_no, p)] = unavailable
                    continue
                by_shard[target].append(p)
            for (sid, addr), ps in by_shard.items():
                shards_used.add(sid)
                calls.append((read_no, read, ps, sid, addr))

        async def fetch(
            read: GroupRead, ps: list[int], sid: str, addr: str
        ) -> Sequence[Sequence[object]]:
            shard = self.shards(sid, addr)
            return await shard.get_features(
                read.schema.ref,
                read.features,
                [keys[p] for p in ps],
                request_time,
                personalized,
                timeout,
            )

        answers = await asyncio.gather(
            *(fetch(r, ps, sid, addr) for _, r, ps, sid, addr in calls), return_exceptions=True
        )
        for (read_no, read, ps, _, _), answer in zip(calls, answers, strict=True):
            if isinstance(answer, BaseException):
                if classify_shard_error(answer) is Decision.ABORT:
                    raise answer
                # the shard did not answer: its entities' values are `timeout`
                answer = [
                    tuple(self.wire.missing(d, MissingReason.TIMEOUT) for d in read.definitions)
                ] * len(ps)
            results.update({(read_no, p): v for p, v in zip(ps, answer, strict=True)})

        names_by_type = {t: [o for r in rs for o in r.outputs] for t, rs in reads_by_type.items()}
        read_index = {id(r): n for n, r in enumerate(plan)}
        values = [
            [v for r in reads_by_type[k.entity_type] for v in results[(read_index[id(r)], p)]]
            for p, k in enumerate(keys)
        ]
        by_group: Counter[tuple[str, str]] = Counter()
        reason_of = self.wire.reason
        for r in plan:
            group, n = r.schema.ref.name, read_index[id(r)]
            etype = r.schema.group.entity_type
            for p, k in enumerate(keys):
                if k.entity_type == etype:
                    for v in results[(n, p)]:
                        reason = reason_of(v)
                        if reason is not None:
                            by_group[(group, reason)] += 1
        reasons: Counter[str] = Counter()
        for (group, reason), count in by_group.items():
            reasons[reason] += count
            metrics.FEATURE_MISSING.labels(group, reason).inc(count)
        latency = time.perf_counter() - t0
        metrics.FEATURE_LATENCY.observe(latency)
        metrics.FEATURE_ENTITIES.observe(len(keys))
        return FeatureResult(
            names_by_type,
            values,
            dict(reasons),
            reasons.get("stale", 0),
            len(shards_used),
            latency * 1e3,
        )

    async def put(
        self, access: Access, group: VersionRef, rows: Sequence[GroupRow], timeout: float
    ) -> tuple[int, int]:
        snap, schema = await self.registry.fresh(
            lambda s: (require_tenant(s, access.tenant_id), s.feature_catalog.schema(group))[1]
        )
        owned = own_entities([r.entity for r in rows], access)
        checked = [schema.check_row(r._replace(entity=k)) for r, k in zip(rows, owned, strict=True)]
        placement = snap.placement(feature_placement_ref(group.name, group.version))
        per_shard: dict[str, tuple[str, list[GroupRow]]] = {}
        first: set[str] = set()
        for r in checked:
            bucket = key_bucket(snap, FEATURE_BUCKETS, r.entity)
            for pos, sid in enumerate(placement.buckets[bucket]):
                member = snap.shards.get(sid)
                if member is None:
                    raise Unavailable(
                        f"shard {sid} (feature bucket {bucket} of {group}) is not registered; writes need every replica"
                    )
                per_shard.setdefault(sid, (member.address, []))[1].append(r)
                if pos == 0:
                    first.add(sid)
        if group not in self._announced:
            # The first write of a group through this coordinator creates its
            # partition on every shard of the placement (empty batches), so
            # every shard tells `not_computed` from `entity_not_found` alike.
            for sid in placement.shards():
                member = snap.shards.get(sid)
                if member is not None:
                    per_shard.setdefault(sid, (member.address, []))
        acks = await asyncio.gather(
            *(
                self.shards(sid, addr).put_features(group, rs, timeout)
                for sid, (addr, rs) in per_shard.items()
            )
        )
        self._announced.add(group)
        if checked:
            metrics.FEATURE_FRESHNESS.labels(group.name).set(
                max(r.feature_timestamp for r in checked) / 1e6
            )
        replicas = max(len(b) for b in placement.buckets)
        written = sum(w for w, _ in acks) // replicas
        ignored = sum(i for _, i in acks) // replicas
        return written, ignored
