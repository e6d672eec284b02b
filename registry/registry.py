"""Reads and writes of registry objects through a `RegistryStore`.

Multi-key changes (an index version and its placement) are one transaction.
The control-plane issue grows this into the full admin surface.
"""

from __future__ import annotations

from collections.abc import Sequence

from protos.errors import AlreadyExists, InvalidArgument, NotFound
from registry import codec
from registry.keys import Keys
from registry.model import (
    Bundle,
    EmbeddingFamily,
    EmbeddingVersion,
    IndexVersion,
    Route,
)
from registry.placement import assign_buckets
from registry.snapshot import Snapshot, build_snapshot
from registry.store import ModRevisionIs, Put, RegistryStore


class Registry:
    def __init__(self, store: RegistryStore, prefix: str | None = None) -> None:
        self.store = store
        self.keys = Keys(prefix) if prefix else Keys()

    def snapshot(self) -> Snapshot:
        entries, revision = self.store.list_prefix(self.keys.prefix)
        return build_snapshot(entries, revision, self.keys)

    def put_family(self, family: EmbeddingFamily) -> None:
        if family.dimension <= 0:
            raise InvalidArgument(f"family {family.name!r}: dimension must be > 0")
        self.store.put(self.keys.family(family.name), codec.encode(family))

    def put_embedding_version(self, version: EmbeddingVersion) -> None:
        if self.store.get(self.keys.family(version.name)) is None:
            raise NotFound(f"unknown embedding family {version.name!r}; create it first")
        self.store.put(
            self.keys.embedding_version(version.name, version.version), codec.encode(version)
        )

    def create_index(
        self, index: IndexVersion, shard_ids: Sequence[str], replicas: int = 1
    ) -> None:
        """Creates an index version and its placement atomically; never overwrites."""
        if index.num_buckets <= 0:
            raise InvalidArgument(f"index {index.ref}: num_buckets must be > 0")
        if (
            self.store.get(
                self.keys.embedding_version(index.embedding.name, index.embedding.version)
            )
            is None
        ):
            raise NotFound(f"index {index.ref}: unknown embedding version {index.embedding}")
        placement = assign_buckets(index.ref, index.num_buckets, shard_ids, replicas)
        key = self.keys.index(index.name, index.version)
        ok = self.store.txn(
            [ModRevisionIs(key, 0)],
            [
                Put(key, codec.encode(index)),
                Put(self.keys.placement(index.name, index.version), codec.encode(placement)),
            ],
        )
        if not ok:
            raise AlreadyExists(f"index version {index.ref} already exists; versions are immutable")

    def put_bundle(self, bundle: Bundle) -> None:
        self.store.put(self.keys.bundle(bundle.name), codec.encode(bundle))

    def put_route(self, route: Route) -> None:
        if self.store.get(self.keys.bundle(route.bundle)) is None:
            raise NotFound(f"route {route.name!r}: unknown bundle {route.bundle!r}")
        self.store.put(self.keys.route(route.name), codec.encode(route))
