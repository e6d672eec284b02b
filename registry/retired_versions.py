"""What every write of a feature group, a feature set or a route checks
against retired versions (`registry.retirement`): a retired version is
never applied again, and a set (a route) holds the groups (the sets) it
names until it commits, so a retirement racing it is refused at commit.

Why apart from `registry.retirement`: `Registry`'s own writes call these,
and the retirement itself needs `Registry`.
"""

from __future__ import annotations

from typing import Any

from core.domain import VersionRef
from core.errors import Conflict, FailedPrecondition, NotFound
from registry import codec
from registry.keys import Keys
from registry.model import Retirement, Route
from registry.snapshot import Snapshot, retired_text
from registry.store import Delete, Entry, ModRevisionIs, Put, RegistryStore

RETIRABLE = ("FeatureGroup", "FeatureSet")


def retired_record(
    store: RegistryStore, keys: Keys, kind: str, ref: VersionRef
) -> Retirement | None:
    entry = store.get(keys.retired(kind, ref.name, ref.version))
    return None if entry is None else codec.decode(entry.value)


def refuse_retired(kind: str, ref: VersionRef, record: Retirement | None) -> None:
    """A retired version applied again (FAILED_PRECONDITION)."""
    if record is not None:
        raise FailedPrecondition(
            f"{retired_text(record)}; a retired version cannot be applied again: "
            f"create a new version of {ref.name}"
        )


Guard = tuple[list[ModRevisionIs], list[Put | Delete]]


def _hold(entry: Entry, guard: Guard) -> None:
    """`entry` must be unchanged when the write commits, and the write moves
    its revision, so a retirement that read it before fails its own compare."""
    if any(c.key == entry.key for c in guard[0]):
        return  # etcd refuses a key written twice in one transaction
    guard[0].append(ModRevisionIs(entry.key, entry.mod_revision))
    guard[1].append(Put(entry.key, entry.value))


def guard_object(store: RegistryStore, keys: Keys, obj: Any) -> Guard:
    """Conditions (and writes) for writing a feature group or set: its
    version was never retired, and (a set) every group it reads still exists
    when it commits."""
    guard: Guard = ([], [])
    kind = type(obj).__name__
    if kind not in RETIRABLE:
        return guard
    ref = VersionRef(obj.name, obj.version)
    refuse_retired(kind, ref, retired_record(store, keys, kind, ref))
    guard[0].append(ModRevisionIs(keys.retired(kind, ref.name, ref.version), 0))
    if kind == "FeatureSet":
        for group in dict.fromkeys(f.group_ref for f in obj.features):
            entry = store.get(keys.feature("FeatureGroup", group.name, group.version))
            if entry is None:
                record = retired_record(store, keys, "FeatureGroup", group)
                why = retired_text(record) if record else f"group {group} does not exist"
                raise NotFound(f"feature set {ref}: {why}; expected an exact, registered version")
            _hold(entry, guard)
    return guard


def guard_route(store: RegistryStore, keys: Keys, snap: Snapshot, route: Route) -> Guard:
    """Conditions (and writes) for pointing `route` at its bundles: each
    bundle, its embedding and index versions (checked servable on `snap`) and
    its feature set are unchanged at commit — a status move or a retirement
    that read them before fails its own compare (`registry.serving_versions`)
    — and no feature set is retired or missing."""
    guard: Guard = ([], [])
    for arm, name in arms(route):
        bundle = snap.bundles.get(name)
        if bundle is None:
            continue  # resolve_bundle refused it already
        for key in (
            keys.bundle(name),
            keys.embedding_version(bundle.query_embedding.name, bundle.query_embedding.version),
            keys.embedding_version(bundle.item_embedding.name, bundle.item_embedding.version),
            keys.index(bundle.index.name, bundle.index.version),
        ):
            hold_current(store, key, snap.revision, guard, f"route {route.name!r} ({arm})")
        if bundle.feature_set is None:
            continue
        fs = bundle.feature_set
        record = snap.retired.get(("FeatureSet", fs.name, fs.version))
        if record is not None:
            raise FailedPrecondition(
                f"route {route.name!r} ({arm} bundle {name!r}): {retired_text(record)}; "
                "point it at a bundle whose feature set is current"
            )
        entry = store.get(keys.feature("FeatureSet", fs.name, fs.version))
        if entry is None:
            raise NotFound(
                f"route {route.name!r} ({arm} bundle {name!r}): feature set {fs} does not "
                "exist; apply it first, or point the route at a bundle whose feature set exists"
            )
        _hold(entry, guard)
    return guard


def hold_current(store: RegistryStore, key: str, revision: int, guard: Guard, where: str) -> None:
    """`_hold` of a key as `snap` (at `revision`) saw it: changed since, the
    check made on the snapshot is stale."""
    entry = store.get(key)
    if entry is None or entry.mod_revision > revision:
        raise Conflict(f"{where}: {key} changed while the switch was checked; re-read and retry")
    _hold(entry, guard)


def arms(route: Route, label: str = "") -> list[tuple[str, str]]:
    """The route's bundles by arm (primary, canary, shadow), those it has."""
    named = [("primary", route.bundle), ("canary", route.canary_bundle)]
    named.append(("shadow", route.shadow_bundle))
    return [(f"{label}{arm}", name) for arm, name in named if name]
