"""An immutable view of the registry, and the pure functions that route over it.

Routing and compatibility never touch etcd: they read a `Snapshot`, so they are
tested on plain data and a coordinator keeps serving from its last snapshot
when etcd is unreachable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from protos.errors import FailedPrecondition, NotFound
from registry import codec
from registry.keys import Keys
from registry.model import (
    SERVABLE,
    Bundle,
    EmbeddingFamily,
    EmbeddingVersion,
    IndexVersion,
    Placement,
    Route,
    ShardMember,
    ShardState,
    Status,
    VersionRef,
)
from registry.store import Entry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    revision: int = 0
    families: Mapping[str, EmbeddingFamily] = field(default_factory=dict)
    embedding_versions: Mapping[VersionRef, EmbeddingVersion] = field(default_factory=dict)
    indexes: Mapping[VersionRef, IndexVersion] = field(default_factory=dict)
    placements: Mapping[VersionRef, Placement] = field(default_factory=dict)
    bundles: Mapping[str, Bundle] = field(default_factory=dict)
    routes: Mapping[str, Route] = field(default_factory=dict)
    shards: Mapping[str, ShardMember] = field(default_factory=dict)

    def family(self, name: str) -> EmbeddingFamily:
        try:
            return self.families[name]
        except KeyError:
            raise NotFound(f"unknown embedding family {name!r}") from None

    def index(self, ref: VersionRef) -> IndexVersion:
        try:
            return self.indexes[ref]
        except KeyError:
            raise NotFound(f"unknown index version {ref}") from None

    def placement(self, ref: VersionRef) -> Placement:
        try:
            return self.placements[ref]
        except KeyError:
            raise NotFound(f"index version {ref} has no placement") from None

    def serving_shard(self, shard_id: str) -> ShardMember | None:
        member = self.shards.get(shard_id)
        return member if member and member.state == ShardState.SERVING else None


@dataclass(frozen=True)
class ResolvedRoute:
    route: Route
    bundle: Bundle
    index: IndexVersion
    item_family: EmbeddingFamily
    query_family: EmbeddingFamily
    placement: Placement


def build_snapshot(entries: list[Entry], revision: int, keys: Keys) -> Snapshot:
    """Decodes every value under the prefix; a value that fails to decode is
    logged and left out rather than taking the whole registry down."""
    families: dict[str, EmbeddingFamily] = {}
    versions: dict[VersionRef, EmbeddingVersion] = {}
    indexes: dict[VersionRef, IndexVersion] = {}
    placements: dict[VersionRef, Placement] = {}
    bundles: dict[str, Bundle] = {}
    routes: dict[str, Route] = {}
    shards: dict[str, ShardMember] = {}
    for entry in entries:
        try:
            obj = codec.decode(entry.value)
        except Exception as exc:  # noqa: BLE001 - one bad value must not hide the rest
            log.warning("skipping undecodable registry value at %s: %s", entry.key, exc)
            continue
        match obj:
            case EmbeddingFamily():
                families[obj.name] = obj
            case EmbeddingVersion():
                versions[obj.ref] = obj
            case IndexVersion():
                indexes[obj.ref] = obj
            case Placement():
                placements[obj.index] = obj
            case Bundle():
                bundles[obj.name] = obj
            case Route():
                routes[obj.name] = obj
            case ShardMember():
                shards[obj.shard_id] = obj
    return Snapshot(revision, families, versions, indexes, placements, bundles, routes, shards)


def resolve_route(snapshot: Snapshot, name: str) -> ResolvedRoute:
    route = snapshot.routes.get(name)
    if route is None:
        known = ", ".join(sorted(snapshot.routes)) or "none"
        raise NotFound(f"unknown route {name!r}; known routes: {known}")
    bundle = snapshot.bundles.get(route.bundle)
    if bundle is None:
        raise NotFound(f"route {name!r} points at unknown bundle {route.bundle!r}")
    index = snapshot.index(bundle.index)
    if index.status not in SERVABLE:
        raise FailedPrecondition(
            f"route {name!r}: index {index.ref} is {index.status.value}, expected ready or production"
        )
    item_family = snapshot.family(index.embedding.name)
    query_family = snapshot.family(bundle.query_embedding.name)
    check_query_compatible(query_family, item_family)
    return ResolvedRoute(
        route, bundle, index, item_family, query_family, snapshot.placement(index.ref)
    )


def check_query_compatible(query: EmbeddingFamily, item: EmbeddingFamily) -> None:
    """Query vectors may only be scored against items of a compatible family."""
    if query.name != item.name and query.name not in item.compatible_query_families:
        raise FailedPrecondition(
            f"query family {query.name!r} is not declared compatible with item family "
            f"{item.name!r} (compatible: {list(item.compatible_query_families)})"
        )
    for attr in ("dimension", "metric", "normalize"):
        q, i = getattr(query, attr), getattr(item, attr)
        if q != i:
            raise FailedPrecondition(
                f"query family {query.name!r} has {attr}={q}, item family {item.name!r} has {attr}={i}"
            )


def indexes_for_embedding(snapshot: Snapshot, ref: VersionRef) -> list[IndexVersion]:
    """Every index version built on an embedding version; writes go to all of them."""
    if ref.name not in snapshot.families:
        raise NotFound(f"unknown embedding family {ref.name!r}")
    if ref not in snapshot.embedding_versions:
        raise NotFound(f"unknown embedding version {ref}")
    found = [
        ix for ix in snapshot.indexes.values() if ix.embedding == ref and ix.status != Status.FAILED
    ]
    if not found:
        raise FailedPrecondition(
            f"embedding version {ref} has no index version to store its records; create one first"
        )
    return sorted(found, key=lambda ix: (ix.name, ix.version))
