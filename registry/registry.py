"""Reads and writes of registry objects through a `RegistryStore`.

Every multi-key change is one etcd transaction. Versions are immutable once
ready (only their status moves, along `registry.lifecycle`); a route switch
compares the route's previous mod_revision, checks the new bundle's
compatibility, and appends a history entry — all in the same transaction.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from typing import Any

from core.domain import VersionRef
from core.errors import AlreadyExists, Conflict, FailedPrecondition, InvalidArgument, NotFound
from registry import codec, shape_bounds
from registry.access_policy import Principal
from registry.keys import Keys
from registry.lifecycle import FROZEN, check_transition
from registry.migration import check_archivable, retention_for, utc_now
from registry.model import (
    Bundle,
    EmbeddingFamily,
    EmbeddingVersion,
    IndexVersion,
    Route,
    RouteChange,
    ShardState,
    ShardStateIntent,
    Status,
    Tenant,
    rollback_target,
)
from registry.object_keys import key_of
from registry.placement import (
    FEATURE_BUCKETS,
    PLACEMENTS,
    assign_buckets,
    feature_placement_ref,
)
from registry.placement_options import check_replicas
from registry.quality import check_gates_declared, gate_failures
from registry.retired_versions import guard_object, guard_route
from registry.route_rollback import rollback_moves
from registry.serving_versions import check_status_move
from registry.snapshot import Snapshot, build_snapshot, resolve_bundle
from registry.store import Delete, Entry, ModRevisionIs, Put, RegistryStore
from registry.tenant_buckets import check_buckets_kept


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


# Route changes kept per route in etcd (older ones are dropped in the same
# transaction that adds a new one; the audit trail keeps every change).
DEFAULT_ROUTE_HISTORY_LIMIT = 100


class Registry:
    def __init__(
        self,
        store: RegistryStore,
        prefix: str | None = None,
        route_history_limit: int = DEFAULT_ROUTE_HISTORY_LIMIT,
    ) -> None:
        if route_history_limit < 1:
            raise ValueError(
                f"route_history_limit={route_history_limit}: expected at least 1 "
                "(rollback needs the last change)"
            )
        self.store = store
        self.keys = Keys(prefix) if prefix else Keys()
        self.route_history_limit = route_history_limit

    def _history_ops(self, change: RouteChange) -> list[Put | Delete]:
        """The change's history entry, and deletes of the oldest entries so
        the route keeps `route_history_limit`. Part of the same transaction as
        the change: the history never grows unbounded and never loses the
        entry a rollback needs. Entries are keyed by the route's revision
        before the change, in order; a creation has none (0 for every one
        after a delete), so it takes the store's revision, past every earlier
        entry and before every later one."""
        entries, revision = self.store.list_prefix(self.keys.route_history(change.route))
        excess = len(entries) + 1 - self.route_history_limit
        key = self.keys.route_history(change.route, change.revision or revision)
        return [Put(key, codec.encode(change)), *(Delete(e.key) for e in entries[: max(0, excess)])]

    def snapshot(self) -> Snapshot:
        entries, revision = self.store.list_prefix(self.keys.prefix)
        return build_snapshot(entries, revision, self.keys)

    # --- generic -------------------------------------------------------------

    def key_of(self, obj: Any) -> str:
        return key_of(self.keys, obj)

    def read(self, key: str) -> tuple[Any, int] | None:
        entry = self.store.get(key)
        return None if entry is None else (codec.decode(entry.value), entry.mod_revision)

    def _put_versioned(
        self,
        obj: Any,
        status: Status | None,
        what: str,
        also: Sequence[Put | Delete] = (),
        read: Entry | None = None,
    ) -> bool:
        """Creates, or updates within the rules: content frozen once ready,
        status only along the state machine. Compare-and-swap on the key (as
        `read`, when the caller checked a snapshot taken after reading it);
        `also` is written in the same transaction. False: it was so already."""
        key = self.key_of(obj)
        current = read or self.store.get(key)
        if current is not None:
            old = codec.decode(current.value)
            if status is not None:
                if old.status in FROZEN and dataclasses.replace(old, status=status) != obj:
                    raise FailedPrecondition(
                        f"{what} is {old.status.value} and immutable; only its status may change "
                        "(create a new version to change what it means)"
                    )
                check_transition(what, old.status, status)
            if old == obj:
                return False
        expected = current.mod_revision if current is not None else 0
        ops = [Put(key, codec.encode(obj)), *also]
        if not self.store.txn([ModRevisionIs(key, expected)], ops):
            raise Conflict(f"{what} changed concurrently; re-read and retry")
        return True

    # --- objects -------------------------------------------------------------

    def put_family(self, family: EmbeddingFamily) -> None:
        """Owner, purposes and compatibility lists may change; what vectors
        mean (entity type, dimension, metric, normalization) may not."""
        key = self.keys.family(family.name)
        found = self.read(key)
        if found is None:
            shape_bounds.check_family(family)  # on creation: one stored before stays writable
        else:
            fixed = [
                f
                for f in ("entity_type", "dimension", "metric", "normalize")
                if getattr(found[0], f) != getattr(family, f)
            ]
            if fixed:
                raise FailedPrecondition(
                    f"family {family.name!r}: {', '.join(fixed)} cannot change on an existing family; "
                    "create a new family"
                )
        expected = found[1] if found is not None else 0
        if not self.store.txn([ModRevisionIs(key, expected)], [Put(key, codec.encode(family))]):
            raise Conflict(f"family {family.name!r} changed concurrently; re-read and retry")

    def put_embedding_version(self, version: EmbeddingVersion) -> None:
        if self.store.get(self.keys.family(version.name)) is None:
            raise NotFound(f"unknown embedding family {version.name!r}; create it first")
        read = self.store.get(self.key_of(version))
        check_status_move(self.snapshot(), "EmbeddingVersion", version.ref, version.status)
        self._put_versioned(version, version.status, f"embedding version {version.ref}", read=read)

    def create_index(
        self, index: IndexVersion, shard_ids: Sequence[str], replicas: int = 1
    ) -> None:
        """Creates an index version and its placement atomically; never overwrites."""
        shape_bounds.check_index(index)
        if index.placement not in PLACEMENTS:
            # Every reader tests for "centroid": anything else would silently hash.
            raise InvalidArgument(
                f"index {index.ref}: placement {index.placement!r}; expected one of {PLACEMENTS}"
            )
        check_gates_declared(index)
        if index.gates is not None and index.status not in (Status.BUILDING, Status.VALIDATING):
            raise FailedPrecondition(
                f"index {index.ref} declares quality gates, so it cannot be created "
                f"{index.status.value}: create it building (or validating) and promote it after "
                f"`vecshard embeddings evaluate {index.ref}` passed"
            )
        if (
            self.store.get(
                self.keys.embedding_version(index.embedding.name, index.embedding.version)
            )
            is None
        ):
            raise NotFound(f"index {index.ref}: unknown embedding version {index.embedding}")
        family = self.read(self.keys.family(index.embedding.name))
        if family is not None:
            from registry.index_params import parse_index_params

            # a shard would refuse to open bad parameters: refuse them here
            parse_index_params(index.kind, index.params, family[0].dimension)
        undeclared = sorted(set(index.restricted_attributes) - set(index.attributes))
        if undeclared:
            raise InvalidArgument(
                f"index {index.ref}: restricted attribute(s) {undeclared} are not declared attributes"
            )
        check_replicas(f"index {index.ref}", replicas, shard_ids, index.write_quorum)
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

    def train_placement(self, ref: VersionRef, sample: Any, seed: int = 0) -> int:
        """Trains and stores the centroids of a `centroid`-placed index version
        once. Returns the number of buckets."""
        from registry.placement_training import train_stored_placement

        return train_stored_placement(self.store, self.keys, ref, sample, seed)

    def set_status(self, kind: str, ref: VersionRef, status: Status) -> Any:
        """Moves an embedding or index version along the state machine."""
        return self.move_status(kind, ref, status)[0]

    def move_status(self, kind: str, ref: VersionRef, status: Status) -> tuple[Any, bool]:
        """`set_status`, and whether this call moved it (False: it had that
        status already — another coordinator's sweeper archived it first)."""
        key = (
            self.keys.embedding_version(ref.name, ref.version)
            if kind == "EmbeddingVersion"
            else self.keys.index(ref.name, ref.version)
            if kind == "IndexVersion"
            else None
        )
        if key is None:
            raise InvalidArgument(f"status applies to EmbeddingVersion or IndexVersion, not {kind}")
        read = self.store.get(key)
        if read is None:
            raise NotFound(f"unknown {kind} {ref}")
        old = codec.decode(read.value)
        obj = dataclasses.replace(old, status=status)
        if status != old.status:
            check_status_move(self.snapshot(), kind, ref, status)
        also = self.status_effects(obj, old.status) if kind == "IndexVersion" else []
        return obj, self._put_versioned(obj, status, f"{kind} {ref}", also, read)

    def status_effects(self, index: IndexVersion, current: Status) -> list[Put | Delete]:
        """Gates and retention of an index version's status move (every path
        that promotes comes here: CLI, RegistryService, apply): ready and
        production need a passing evaluation (registry.quality); deprecated
        starts the rollback retention; archived needs it ended."""
        ref, target = index.ref, index.status
        if target == current:
            return []
        if target in (Status.READY, Status.PRODUCTION):
            found = self.read(self.keys.evaluation(ref.name, ref.version))
            failures = gate_failures(index, found[0] if found else None)
            if failures:
                raise FailedPrecondition(
                    f"index version {ref} cannot become {target.value}: failed gate(s): "
                    + "; ".join(failures)
                )
        retention_key = self.keys.retention(ref.name, ref.version)
        if target is Status.DEPRECATED:
            family = self.read(self.keys.family(index.embedding.name))
            assert family is not None  # an index exists only on an existing family
            return [Put(retention_key, codec.encode(retention_for(index, family[0], utc_now())))]
        if target is Status.PRODUCTION and current is Status.DEPRECATED:
            return [Delete(retention_key)]  # serving again: no longer a retiring version
        if target is Status.ARCHIVED:
            kept = self.read(retention_key)
            now = utc_now()
            check_archivable(ref, kept[0] if kept else None, now)
            assert kept is not None
            done = dataclasses.replace(kept[0], archived_at=now.isoformat(timespec="milliseconds"))
            return [Put(retention_key, codec.encode(done))]
        return []

    def put_bundle(self, bundle: Bundle) -> None:
        """Bundles are immutable: a different bundle needs a new name."""
        key = self.keys.bundle(bundle.name)
        current = self.store.get(key)
        if current is not None:
            if codec.decode(current.value) == bundle:
                return
            raise FailedPrecondition(
                f"bundle {bundle.name!r} already exists with other versions; bundles are immutable, "
                "create a new bundle"
            )
        if not self.store.txn([ModRevisionIs(key, 0)], [Put(key, codec.encode(bundle))]):
            raise Conflict(f"bundle {bundle.name!r} was created concurrently")

    def put_tenant(self, tenant: Tenant) -> None:
        """Its buckets never change once set (`tenant_buckets`). Compare-and-swap."""
        key = self.keys.tenant(tenant.tenant_id)
        entry = self.store.get(key)
        check_buckets_kept(codec.decode(entry.value) if entry else None, tenant)
        revision = entry.mod_revision if entry else 0
        if not self.store.txn([ModRevisionIs(key, revision)], [Put(key, codec.encode(tenant))]):
            raise Conflict(f"tenant {tenant.tenant_id!r} changed concurrently; re-read and retry")

    def put_principal(self, principal: Principal) -> None:
        """A grant changes in place: the next request is checked against it."""
        self.store.put(self.keys.principal(principal.name), codec.encode(principal))

    def set_restricted_attributes(self, ref: VersionRef, restricted: tuple[str, ...]) -> None:
        """Which attributes of an index version need a grant to filter on: a
        policy, not content, so it may change on an immutable version (a
        privacy fix must not wait for a rebuild). Compare-and-swap."""
        key = self.keys.index(ref.name, ref.version)
        entry = self.store.get(key)
        if entry is None:
            raise NotFound(f"unknown index version {ref}")
        index = codec.decode(entry.value)
        unknown = sorted(set(restricted) - set(index.attributes))
        if unknown:
            raise InvalidArgument(
                f"index {ref}: restricted attribute(s) {unknown} are not declared attributes"
            )
        updated = dataclasses.replace(index, restricted_attributes=tuple(restricted))
        if updated == index:
            return
        if not self.store.txn(
            [ModRevisionIs(key, entry.mod_revision)], [Put(key, codec.encode(updated))]
        ):
            raise Conflict(f"index version {ref} changed concurrently; re-read and retry")

    def put_object(self, obj: Any, shard_ids: Sequence[str] = (), replicas: int = 1) -> None:
        """Feature definitions, groups and sets: versioned; only owner and
        description change in place. Each is validated against what it
        references before it is written (and a retired version refused). A
        new group is placed: its rows live on `replicas` of `shard_ids`."""
        from registry.feature_catalog import FeatureCatalog
        from registry.features import FeatureGroup, check_compatible_update

        key = self.key_of(obj)
        current = self.store.get(key)
        if current is not None:
            old = codec.decode(current.value)
            if old == obj:
                return
            check_compatible_update(old, obj)
        snap = self.snapshot()
        others = [o for k, o in snap.features.items() if o is not None and self.key_of(o) != key]
        FeatureCatalog.build([*others, obj])  # raises naming the dangling or inconsistent reference
        ops: list[Put | Delete] = [Put(key, codec.encode(obj))]
        if isinstance(obj, FeatureGroup) and current is None:
            ref = feature_placement_ref(obj.name, obj.version)
            shards = list(shard_ids) or sorted(snap.shards)
            if not shards:
                raise FailedPrecondition(
                    f"feature group {obj.name}@{obj.version}: no shards registered to place it on"
                )
            where = f"feature group {obj.name}@{obj.version}"
            check_replicas(where, replicas, shards, obj.write_quorum)
            placement = assign_buckets(ref, FEATURE_BUCKETS, shards, replicas)
            ops.append(Put(self.keys.placement(ref.name, ref.version), codec.encode(placement)))
        expected = current.mod_revision if current is not None else 0
        held, touched = guard_object(self.store, self.keys, obj)
        if not self.store.txn([ModRevisionIs(key, expected), *held], [*ops, *touched]):
            raise Conflict(
                f"{type(obj).__name__} {obj.name!r} changed concurrently; re-read and retry"
            )

    # --- routes ----------------------------------------------------------------

    def put_route(
        self,
        route: Route,
        who: str = "",
        why: str = "",
        expected_revision: int | None = None,
        with_moves: tuple[Snapshot, Sequence[ModRevisionIs], Sequence[Put | Delete]] | None = None,
    ) -> Route:
        """Creates or switches a route in one transaction: compare the route's
        mod_revision (the one the caller read, or the current one), check the
        new bundles resolve and are compatible, append a history entry.
        `with_moves` (a rollback's status moves): the snapshot as they leave
        it, checked instead of the store's, and their conditions and writes,
        committed in the same transaction."""
        codec.check_note(f"route {route.name!r}", who=who, why=why)
        if not route.bundle:
            raise InvalidArgument(f"route {route.name!r}: bundle is empty; a route serves a bundle")
        if not 0.0 <= route.canary_share <= 1.0:
            raise InvalidArgument(
                f"route {route.name!r}: canary_share {route.canary_share} must be in [0, 1]"
            )
        if route.canary_share > 0 and not route.canary_bundle:
            raise InvalidArgument(f"route {route.name!r}: canary_share without canary_bundle")
        if expected_revision is not None and expected_revision < 0:
            raise InvalidArgument(
                f"route {route.name!r}: expected_revision {expected_revision}; expected the "
                "revision the route was read at (RegistryObject.mod_revision), or 0 for any"
            )
        key = self.keys.route(route.name)
        snap, moved, moves = with_moves or (self.snapshot(), (), ())
        for arm, bundle in (
            ("primary", route.bundle),
            ("canary", route.canary_bundle),
            ("shadow", route.shadow_bundle),
        ):
            if bundle:
                resolve_bundle(
                    snap, route, bundle, arm
                )  # NOT_FOUND / FAILED_PRECONDITION, nothing written
        current = self.store.get(key)
        before = codec.decode(current.value) if current is not None else None
        revision = current.mod_revision if current is not None else 0
        if expected_revision is not None and expected_revision != revision:
            raise Conflict(
                f"route {route.name!r} is at revision {revision}, not {expected_revision}: "
                "someone else changed it; re-read and retry"
            )
        if before == route:
            return route
        change = RouteChange(route.name, revision, who or "unknown", _now(), why, before, route)
        held, touched = guard_route(self.store, self.keys, snap, route)
        written = {op.key for op in moves}  # etcd refuses a key written twice
        ok = self.store.txn(
            [ModRevisionIs(key, revision), *moved, *(c for c in held if c.key not in written)],
            [
                Put(key, codec.encode(route)),
                *self._history_ops(change),
                *moves,
                *(op for op in touched if op.key not in written),
            ],
        )
        if not ok:
            raise Conflict(
                f"route {route.name!r} changed concurrently (another switch won); re-read and retry"
            )
        return route

    def route_with_revision(self, name: str) -> tuple[Route, int]:
        found = self.read(self.keys.route(name))
        if found is None:
            raise NotFound(f"unknown route {name!r}")
        return found[0], found[1]

    def history(self, name: str) -> list[RouteChange]:
        entries, _ = self.store.list_prefix(self.keys.route_history(name))
        return [codec.decode(e.value) for e in entries]

    def rollback(self, name: str, who: str = "", why: str = "") -> Route:
        """Points the route back at the bundles it had before its last change,
        in one transaction with the re-promotions that needs (`registry.route_rollback`)."""
        route, revision = self.route_with_revision(name)
        previous = rollback_target(self.history(name))
        if previous is None:
            raise FailedPrecondition(f"route {name!r} has no earlier state to roll back to")
        moves = rollback_moves(
            self.store, self.keys, self.snapshot(), name, previous, self.status_effects
        )
        why = why or f"rollback from {route.bundle}"
        return self.put_route(previous, who, why, expected_revision=revision, with_moves=moves)

    def delete_route(self, name: str, who: str = "", why: str = "") -> None:
        codec.check_note(f"route {name!r}", who=who, why=why)
        route, revision = self.route_with_revision(name)
        change = RouteChange(name, revision, who or "unknown", _now(), why, route, None)
        ok = self.store.txn(
            [ModRevisionIs(self.keys.route(name), revision)],
            [
                Delete(self.keys.route(name)),
                *self._history_ops(change),
            ],
        )
        if not ok:
            raise Conflict(f"route {name!r} changed concurrently; re-read and retry")

    # --- shards ----------------------------------------------------------------

    def set_shard_state(self, shard_id: str, state: ShardState, reason: str = "") -> None:
        """Operator intent: `draining` stops new queries reaching the shard.

        The shard must be known — registered, holding buckets of a placement,
        or carrying an intent already — though it may be down (draining before
        a restart): a mistyped id would be answered OK and drain nothing."""
        codec.check_note(f"shard {shard_id!r}", reason=reason)
        snap = self.snapshot()
        known = (
            set(snap.shards)
            | set(snap.intents)
            | {sid for p in snap.placements.values() for sid in p.shards()}
        )
        if shard_id not in known:
            raise NotFound(f"unknown shard {shard_id!r}; known shards: {sorted(known)}")
        key = self.keys.shard_intent(shard_id)
        if state is ShardState.SERVING:
            self.store.delete(key)
        else:
            self.store.put(key, codec.encode(ShardStateIntent(shard_id, state, reason)))

    def entries(self, subprefix: str) -> list[Entry]:
        return self.store.list_prefix(self.keys.prefix + subprefix)[0]
