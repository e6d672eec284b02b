"""The shard's feature operations over its `FeatureStore`, resolved with the
same `registry.feature_values` functions the offline joins use (parity by
construction), a group's column at a time. No protobuf here."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from core.column_wire import RowColumns
from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument
from core.feature_columns import ResolvedColumns
from core.timestamps import check_time
from registry.feature_batches import RowBatch, check_batch, rows_to_batch
from registry.feature_catalog import GroupRead, readable
from registry.feature_values import resolve_columns
from registry.features import GroupRow, GroupSchema, MissingReason, PutAck
from registry.snapshot import Snapshot
from registry.watcher import SnapshotCache
from shard_server import metrics
from shard_server.feature_store import FeatureStore
from shard_server.records import entity_key, entity_keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupFetch:
    """Features of one group for entities of its type (of one tenant)."""

    group: VersionRef
    features: Sequence[str]
    entity_ids: Sequence[str]


def _columns_batch(schema: GroupSchema, columns: RowColumns) -> RowBatch:
    tenant_id, entity_type, entity_ids, feature_timestamp, generated_at, values = columns
    etype = entity_type or schema.group.entity_type  # another is refused by the check
    return RowBatch(
        [EntityKey(tenant_id, etype, i) for i in entity_ids],
        feature_timestamp,
        generated_at,
        values,
    )


class FeatureNode:
    def __init__(self, store: FeatureStore, registry: SnapshotCache) -> None:
        self.store = store
        self.registry = registry

    def _schema(self, group: VersionRef) -> GroupSchema:
        catalog = self.registry.snapshot.feature_catalog
        if group not in catalog.groups:
            catalog = self.registry.reread().feature_catalog  # defined a moment ago
        return catalog.schema(group)

    def _read(self, group: VersionRef, features: Sequence[str]) -> GroupRead:
        schema = self._schema(group)
        unknown = [f for f in features if f not in schema.names]
        if unknown:
            raise InvalidArgument(
                f"group {group}: no feature(s) {unknown}; it has {list(schema.names)}"
            )
        return GroupRead(
            schema, tuple(features), tuple(features), tuple(schema.definition(f) for f in features)
        )

    def drop_retired(self, snap: Snapshot) -> list[VersionRef]:
        """Drops the rows of every feature group version the registry
        retired (registry listener, and at start for a shard that was down
        when it happened). Only what a retirement names is dropped; a
        failure is logged and retried on the next change or start."""
        dropped = []
        for ref in sorted(snap.retired_groups, key=str):
            if not self.store.has_group(ref):
                continue
            try:
                freed = self.store.drop_group(ref)
            except Exception:  # noqa: BLE001 - one group must not stop the others or the watch
                log.exception("dropping retired feature group %s failed; retried later", ref)
                continue
            metrics.FEATURE_GROUPS_DROPPED.inc()
            metrics.FEATURE_BYTES_DROPPED.inc(freed)
            log.info("dropped retired feature group %s (%.1f MiB on disk)", ref, freed / 2**20)
            dropped.append(ref)
        return dropped

    def purge_expired(self, now: int) -> int:
        """Deletes the rows past their group's TTL at `now` (microseconds) in
        every live group with a TTL this shard holds; returns how many. Such
        a row already reads as absent; without this it would stay on disk and
        in the row cache for good (a session group's rows, written once per
        session, are nearly all expired)."""
        snap = self.registry.snapshot
        purged = 0
        for group, schema in snap.feature_catalog.groups.items():
            if schema.group.ttl_seconds is None or group in snap.retired_groups:
                continue
            if self.store.has_group(group):
                purged += self.store.purge_expired(schema, now)
        metrics.FEATURE_ROWS_EXPIRED.inc(purged)
        if purged:
            log.info("deleted %d feature rows past their group's TTL", purged)
        return purged

    def put(self, group: VersionRef, rows: Sequence[GroupRow]) -> PutAck:
        schema = self._schema(group)
        # An empty batch announces the group: its partition exists from now
        # on, so absent entities read `entity_not_found`, not `not_computed`.
        self.store.ensure_group(group)
        return self.store.put(schema, rows)

    def put_columns(self, group: VersionRef, columns: RowColumns) -> PutAck:
        schema = self._schema(group)
        batch = _columns_batch(schema, columns)
        self.store.ensure_group(group)
        return self.store.put_batch(schema, batch)

    def put_message(
        self, group: VersionRef, rows: Sequence[GroupRow], columns: RowColumns | None
    ) -> PutAck:
        """One `FeatureBatch`: its rows and its columns both checked before
        either is written — the rows were written (synced) before the
        columns were looked at, so a message refused INVALID_ARGUMENT left
        its rows durable (found in review)."""
        if columns is None:
            return self.put(group, rows)
        if not rows:
            return self.put_columns(group, columns)
        schema = self._schema(group)
        batches = [rows_to_batch(schema, rows), _columns_batch(schema, columns)]
        for batch in batches:
            check_batch(schema, batch)
        self.store.ensure_group(group)
        acks = [self.store.put_batch(schema, batch) for batch in batches]
        return PutAck(sum(a.written for a in acks), sum(a.ignored_older for a in acks))

    def _resolve(
        self, read: GroupRead, keys: Sequence[bytes], request_time: int, personalized: bool
    ) -> ResolvedColumns:
        # The coordinator checked it (and put "now" for 0); a shard must not
        # trust its caller: a time past the range wraps int64 in `now - t`.
        check_time("request_time_us", request_time, f"feature group {read.schema.ref}")
        n = len(keys)
        if not readable(read.schema, personalized):
            # Refused before any read, as on the coordinator.
            return resolve_columns(
                read, MissingReason.PRIVACY_DISABLED, request_time, personalized, n
            )
        if not self.store.has_group(read.schema.ref):
            return resolve_columns(read, MissingReason.NOT_COMPUTED, request_time, personalized, n)
        return resolve_columns(read, self.store.read(read.schema, keys), request_time, personalized)

    def get_columns(
        self,
        tenant_id: str,
        fetches: Sequence[GroupFetch],
        request_time: int,
        personalized: bool,
    ) -> list[ResolvedColumns]:
        """Per fetch, its features for its entities (in order), resolved."""
        reads = [self._read(f.group, f.features) for f in fetches]  # all checked first
        # Groups of one entity type are usually asked for the same entities:
        # their keys are encoded once.
        keys: dict[tuple[str, int], list[bytes]] = {}
        out = []
        for read, f in zip(reads, fetches, strict=True):
            etype = read.schema.group.entity_type
            same = (etype, id(f.entity_ids))  # fetches sharing one id list
            if same not in keys:
                keys[same] = entity_keys(tenant_id, etype, f.entity_ids)
            out.append(self._resolve(read, keys[same], request_time, personalized))
        return out

    def get(
        self,
        group: VersionRef,
        features: Sequence[str],
        keys: Sequence[EntityKey],
        request_time: int,
        personalized: bool,
    ) -> ResolvedColumns:
        """One group for any keys (the per-value RPC of older coordinators)."""
        read = self._read(group, features)
        return self._resolve(read, [entity_key(k) for k in keys], request_time, personalized)
