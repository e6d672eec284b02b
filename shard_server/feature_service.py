"""The shard's feature operations over its `FeatureStore`, resolved with the
same `registry.features` functions the offline joins use (parity by
construction). No protobuf here."""

from __future__ import annotations

from collections.abc import Sequence

from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument
from registry.feature_catalog import GroupRead
from registry.feature_values import FeatureValue, resolve_group
from registry.features import GroupRow, GroupSchema, MissingReason, PutAck
from registry.watcher import SnapshotCache
from shard_server.feature_store import FeatureStore


class FeatureNode:
    def __init__(self, store: FeatureStore, registry: SnapshotCache) -> None:
        self.store = store
        self.registry = registry

    def _schema(self, group: VersionRef) -> GroupSchema:
        catalog = self.registry.snapshot.feature_catalog
        if group not in catalog.groups:
            catalog = self.registry.reread().feature_catalog  # defined a moment ago
        return catalog.schema(group)

    def put(self, group: VersionRef, rows: Sequence[GroupRow]) -> PutAck:
        schema = self._schema(group)
        # An empty batch announces the group: its partition exists from now
        # on, so absent entities read `entity_not_found`, not `not_computed`.
        self.store.ensure_group(group)
        return self.store.put(schema, rows)

    def get(
        self,
        group: VersionRef,
        features: Sequence[str],
        keys: Sequence[EntityKey],
        request_time: int,
        personalized: bool,
    ) -> list[tuple[FeatureValue, ...]]:
        schema = self._schema(group)
        unknown = [f for f in features if f not in schema.names]
        if unknown:
            raise InvalidArgument(
                f"group {group}: no feature(s) {unknown}; it has {list(schema.names)}"
            )
        read = GroupRead(
            schema, tuple(features), tuple(features), tuple(schema.definition(f) for f in features)
        )
        if not self.store.has_group(group):
            return [
                resolve_group(read, MissingReason.NOT_COMPUTED, request_time, personalized)
            ] * len(keys)
        rows = self.store.multi_get(schema, keys, request_time)
        return [resolve_group(read, row, request_time, personalized) for row in rows]
