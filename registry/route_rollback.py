"""A route's rollback: back to the bundles it had before its last change,
serving again the versions deprecated since (their retention ends).

One transaction: the status moves (deprecated → production), the deletes
of their retention records, the route switch and its history entry, each
conditioned on the revision it was checked at. Why: the moves committed on
their own before the switch, so a rollback refused after them (another
switch won the compare, or the bundle no longer resolved) left the old
index version in production with no retention record — never archived, its
data kept on the shards for good, though the operator was told it failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from core.domain import VersionRef
from core.errors import Conflict, FailedPrecondition
from registry import codec
from registry.keys import Keys
from registry.migration import archived_reason
from registry.model import IndexVersion, Route, Status
from registry.snapshot import Snapshot
from registry.store import Delete, ModRevisionIs, Put, RegistryStore


def _kept(snap: Snapshot, name: str, previous: Route) -> list[tuple[str, VersionRef]]:
    """The versions the previous bundles serve; refused naming the archive
    when one of their index versions is archived."""
    kept: list[tuple[str, VersionRef]] = []
    for bundle_name in (previous.bundle, previous.canary_bundle, previous.shadow_bundle):
        bundle = snap.bundles.get(bundle_name)
        index = snap.indexes.get(bundle.index) if bundle else None
        if index is not None and index.status is Status.ARCHIVED:
            raise FailedPrecondition(
                f"cannot roll route {name!r} back to bundle {bundle_name!r}: "
                + archived_reason(snap, index.ref)
            )
        if bundle is not None and index is not None:
            kept += [("IndexVersion", index.ref)]
            kept += [("EmbeddingVersion", bundle.query_embedding)]
            kept += [("EmbeddingVersion", bundle.item_embedding)]
    return list(dict.fromkeys(kept))


def rollback_moves(
    store: RegistryStore,
    keys: Keys,
    snap: Snapshot,
    name: str,
    previous: Route,
    effects: Callable[[IndexVersion, Status], list[Put | Delete]],
) -> tuple[Snapshot, list[ModRevisionIs], list[Put | Delete]]:
    """What rolling route `name` back to `previous` (checked on `snap`)
    changes besides the route: the snapshot as the re-promotions leave it
    (the route is resolved on it), their conditions and their writes
    (`effects`: an index version's, `Registry.status_effects`)."""
    indexes: dict[VersionRef, Any] = dict(snap.indexes)
    versions: dict[VersionRef, Any] = dict(snap.embedding_versions)
    moved: list[ModRevisionIs] = []
    moves: list[Put | Delete] = []
    # A version deprecated since the switch is kept loadable for this: a
    # rollback serves it again (its retention ends with it).
    for kind, ref in _kept(snap, name, previous):
        found = indexes if kind == "IndexVersion" else versions
        if ref not in found or found[ref].status is not Status.DEPRECATED:
            continue
        key = (
            keys.index(ref.name, ref.version)
            if kind == "IndexVersion"
            else keys.embedding_version(ref.name, ref.version)
        )
        entry = store.get(key)
        if entry is None or entry.mod_revision > snap.revision:
            raise Conflict(f"{kind} {ref} changed while the rollback was checked; retry")
        obj = dataclasses.replace(found[ref], status=Status.PRODUCTION)
        found[ref] = obj
        moved.append(ModRevisionIs(key, entry.mod_revision))
        moves.append(Put(key, codec.encode(obj)))
        if kind == "IndexVersion":  # its gates; the end of its retention
            moves += effects(obj, Status.DEPRECATED)
    serving = dataclasses.replace(snap, indexes=indexes, embedding_versions=versions)
    return serving, moved, moves
