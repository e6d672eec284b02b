"""An immutable view of the registry, and the pure functions that route over it.

Routing and compatibility never touch etcd: they read a `Snapshot`, so they are
tested on plain data and a coordinator keeps serving from its last snapshot
when etcd is unreachable.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.domain import VersionRef
from core.errors import FailedPrecondition, NotFound
from registry import codec
from registry.access_policy import Principal
from registry.compat import bundle_parts, check_bundle
from registry.feature_catalog import FeatureCatalog
from registry.features import FeatureObject
from registry.keys import Keys
from registry.model import (
    Bundle,
    DualWrite,
    EmbeddingFamily,
    EmbeddingVersion,
    IndexVersion,
    Placement,
    Retirement,
    Route,
    RouteChange,
    ShardMember,
    ShardState,
    ShardStateIntent,
    Status,
    Tenant,
    VersionRetention,
)
from registry.quality import CanaryQuerySet, IndexEvaluation
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
    tenants: Mapping[str, Tenant] = field(default_factory=dict)
    intents: Mapping[str, ShardStateIntent] = field(default_factory=dict)
    # Feature definitions, groups and sets by (kind, name, version).
    features: Mapping[tuple[str, str, str], FeatureObject] = field(default_factory=dict)
    # Model changes (registry.quality, registry.migration).
    evaluations: Mapping[VersionRef, IndexEvaluation] = field(default_factory=dict)
    canary_sets: Mapping[VersionRef, CanaryQuerySet] = field(default_factory=dict)
    dual_writes: Mapping[str, DualWrite] = field(default_factory=dict)
    retention: Mapping[VersionRef, VersionRetention] = field(default_factory=dict)
    # Who may call, with which role, for which tenants and purposes (DESIGN §10).
    principals: Mapping[str, Principal] = field(default_factory=dict)
    # Feature group and set versions taken out of service, by (kind, name, version).
    retired: Mapping[tuple[str, str, str], Retirement] = field(default_factory=dict)

    @functools.cached_property
    def feature_catalog(self) -> FeatureCatalog:
        """Validated feature definitions, groups and sets (built once per snapshot)."""
        return FeatureCatalog.build(self.features.values(), self.retired_texts)

    @functools.cached_property
    def retired_texts(self) -> Mapping[tuple[str, VersionRef], str]:
        """What an error says of each retired version (`FeatureCatalog.retired`)."""
        return {
            (r.kind, VersionRef(r.name, r.version)): retired_text(r) for r in self.retired.values()
        }

    @functools.cached_property
    def retired_groups(self) -> frozenset[VersionRef]:
        """Feature group versions whose rows every shard drops."""
        return frozenset(
            VersionRef(r.name, r.version) for r in self.retired.values() if r.kind == "FeatureGroup"
        )

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
    # "primary" or "canary": which arm of the route this request took.
    arm: str = "primary"


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
    tenants: dict[str, Tenant] = {}
    intents: dict[str, ShardStateIntent] = {}
    features: dict[tuple[str, str, str], FeatureObject] = {}
    evaluations: dict[VersionRef, IndexEvaluation] = {}
    canaries: dict[VersionRef, CanaryQuerySet] = {}
    dual_writes: dict[str, DualWrite] = {}
    retention: dict[VersionRef, VersionRetention] = {}
    principals: dict[str, Principal] = {}
    retired: dict[tuple[str, str, str], Retirement] = {}
    history_prefix = keys.route_history("")[: -len("/")]
    for entry in entries:
        if entry.key.startswith(history_prefix):
            continue  # history is read on demand, not served from
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
            case Tenant():
                tenants[obj.tenant_id] = obj
            case ShardStateIntent():
                intents[obj.shard_id] = obj
            case RouteChange():
                pass
            case IndexEvaluation():
                evaluations[obj.index] = obj
            case CanaryQuerySet():
                canaries[VersionRef(obj.name, obj.version)] = obj
            case DualWrite():
                dual_writes[obj.family] = obj
            case VersionRetention():
                retention[obj.index] = obj
            case Principal():
                principals[obj.name] = obj
            case Retirement():
                retired[(obj.kind, obj.name, obj.version)] = obj
            case _:
                features[
                    (type(obj).__name__, getattr(obj, "name", ""), getattr(obj, "version", ""))
                ] = obj
    # An operator's intent (draining) overrides what the shard says of itself.
    for shard_id, intent in intents.items():
        if shard_id in shards:
            shards[shard_id] = dataclasses.replace(shards[shard_id], state=intent.state)
    return Snapshot(
        revision,
        families,
        versions,
        indexes,
        placements,
        bundles,
        routes,
        shards,
        tenants,
        intents,
        features,
        evaluations,
        canaries,
        dual_writes,
        retention,
        principals,
        retired,
    )


def retired_text(r: Retirement) -> str:
    """How an error names a retired version: who retired it, when and why."""
    why = f": {r.why}" if r.why else ""
    return f"{r.kind} {r.name}@{r.version} was retired at {r.when} by {r.who}{why}"


def in_canary(route: str, subject: str, share: float) -> bool:
    """Stable per subject: the same user always lands in the same arm."""
    if share <= 0.0:
        return False
    digest = hashlib.blake2b(f"{route}\x00{subject}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < share


def resolve_bundle(
    snapshot: Snapshot, route: Route, bundle_name: str, arm: str = "primary"
) -> ResolvedRoute:
    """A bundle checked for compatibility, or FAILED_PRECONDITION naming both sides."""
    bundle = snapshot.bundles.get(bundle_name)
    if bundle is None:
        raise NotFound(f"route {route.name!r} points at unknown bundle {bundle_name!r}")
    parts = bundle_parts(bundle, snapshot.families, snapshot.embedding_versions, snapshot.indexes)
    try:
        check_bundle(parts)
    except FailedPrecondition as exc:
        raise FailedPrecondition(
            f"route {route.name!r} ({arm} bundle {bundle_name!r}): {exc.message}"
        ) from None
    return ResolvedRoute(
        route,
        bundle,
        parts.index,
        parts.item_family,
        parts.query_family,
        snapshot.placement(parts.index.ref),
        arm,
    )


def resolve_route(
    snapshot: Snapshot, name: str, subject: str = "", primary: bool = False
) -> ResolvedRoute:
    """The arm `subject` takes (the canary's share of subjects by a stable
    hash); `primary`: the primary arm whoever asks (what the canary runner
    measures — an empty subject hashes into the canary like any other)."""
    route = snapshot.routes.get(name)
    if route is None:
        known = ", ".join(sorted(snapshot.routes)) or "none"
        raise NotFound(f"unknown route {name!r}; known routes: {known}")
    if not primary and route.canary_bundle and in_canary(route.name, subject, route.canary_share):
        return resolve_bundle(snapshot, route, route.canary_bundle, "canary")
    return resolve_bundle(snapshot, route, route.bundle)


def resolve_shadow(snapshot: Snapshot, route: Route) -> ResolvedRoute | None:
    """The shadow arm, if the route has one that resolves; a broken shadow
    must never fail the primary request, so it yields None instead."""
    if not route.shadow_bundle:
        return None
    try:
        return resolve_bundle(snapshot, route, route.shadow_bundle, "shadow")
    except (NotFound, FailedPrecondition) as exc:
        log.warning("shadow bundle of route %s does not resolve: %s", route.name, exc)
        return None


def require_writable(snapshot: Snapshot, ref: VersionRef) -> None:
    """Writes to an archived embedding version are refused: its data is
    being dropped, and nothing may serve it again (`registry.serving_versions`)."""
    found = snapshot.embedding_versions.get(ref)
    if found is not None and found.status is Status.ARCHIVED:
        raise FailedPrecondition(
            f"embedding version {ref} is archived: it takes no writes; write a live version"
        )


def indexes_for_embedding(snapshot: Snapshot, ref: VersionRef) -> list[IndexVersion]:
    """Every index version built on an embedding version; writes go to all of them."""
    if ref.name not in snapshot.families:
        raise NotFound(f"unknown embedding family {ref.name!r}")
    if ref not in snapshot.embedding_versions:
        raise NotFound(f"unknown embedding version {ref}")
    found = [
        ix
        for ix in snapshot.indexes.values()
        if ix.embedding == ref and ix.status not in (Status.FAILED, Status.ARCHIVED)
    ]
    if not found:
        raise FailedPrecondition(
            f"embedding version {ref} has no index version to store its records; create one first"
        )
    return sorted(found, key=lambda ix: (ix.name, ix.version))
