"""Retiring feature group and feature set versions (README, Features →
Retiring a version).

Why: every model change adds group versions (new features, more replicas,
a fixed bug) and nothing took the old ones away, so their rows stayed on
every shard's disk for good. A retired version leaves the registry in one
transaction that writes a `Retirement` record in its place; shards drop a
retired group's rows when the record reaches them, and at start for one
that was down. Only what a record names is ever dropped: a shard never
drops data because the registry does not mention it (a snapshot missing a
group is not a reason).

What may be retired: a feature set no route serves (primary, canary,
shadow) or would serve after a rollback, and a feature group no feature set
reads. Both checks hold at commit: the transaction compares the versions it
found, and a feature set (a route) written meanwhile compares the groups
(the sets) it names and writes them again unchanged (which moves their
revision) — whichever commits second is refused, so the registry never
holds a set whose group is gone. A retired version is never applied
again: its rows are gone, and a reader would take the empty group for one
whose entities have no history.
"""

from __future__ import annotations

from core.domain import VersionRef
from core.errors import FailedPrecondition, InvalidArgument, NotFound
from registry import codec
from registry.migration import iso, utc_now
from registry.model import Bundle, Retirement, rollback_target
from registry.placement import feature_placement_ref
from registry.registry import Registry
from registry.retired_versions import RETIRABLE, arms, retired_record
from registry.snapshot import Snapshot, retired_text
from registry.store import Delete, ModRevisionIs, Put


def users(reg: Registry, snap: Snapshot, kind: str, ref: VersionRef) -> list[str]:
    """What still reads the version, each named for the refusal."""
    if kind == "FeatureGroup":
        sets = snap.feature_catalog.feature_sets.values()
        return [f"feature set {s.ref}" for s in sets if any(f.group_ref == ref for f in s.features)]
    found = []
    for route in snap.routes.values():
        served = arms(route)
        previous = rollback_target(reg.history(route.name))
        if previous is not None:
            served += arms(previous, "rollback target's ")
        for arm, name in served:
            bundle: Bundle | None = snap.bundles.get(name)
            if bundle is not None and bundle.feature_set == ref:
                found.append(f"route {route.name} ({arm} bundle {name})")
    return found


def retire(
    reg: Registry, kind: str, ref: VersionRef, who: str = "", why: str = "", dry_run: bool = False
) -> tuple[Retirement, list[str]]:
    """Retires `ref`; returns the record and what it does (or would do).
    Retiring a retired version again answers its record, changing nothing."""
    codec.check_note(f"retire {kind} {ref}", who=who, why=why)
    if kind not in RETIRABLE:
        raise InvalidArgument(f"kind {kind!r} cannot be retired; expected one of {RETIRABLE}")
    done = retired_record(reg.store, reg.keys, kind, ref)
    if done is not None:
        return done, [f"{retired_text(done)} (already; nothing changed)"]
    key = reg.keys.feature(kind, ref.name, ref.version)
    current = reg.store.get(key)
    if current is None:
        raise NotFound(f"no {kind} {ref} to retire")
    snap = reg.snapshot()
    in_use = users(reg, snap, kind, ref)
    if in_use:
        hint = (
            "retire those feature sets first"
            if kind == "FeatureGroup"
            else "switch those routes to a bundle without it first (a rollback target is "
            "released by the route's next switch)"
        )
        raise FailedPrecondition(f"{kind} {ref} is still in use by {'; '.join(in_use)}: {hint}")
    record = Retirement(kind, ref.name, ref.version, who or "unknown", iso(utc_now()), why)
    effects = [f"{kind} {ref} leaves the registry; applying it again will be refused"]
    retired_key = reg.keys.retired(kind, ref.name, ref.version)
    ops: list[Put | Delete] = [Delete(key), Put(retired_key, codec.encode(record))]
    if kind == "FeatureGroup":
        placed = feature_placement_ref(ref.name, ref.version)
        placement = snap.placements.get(placed)
        shards = sorted(placement.shards()) if placement else []
        effects.append(
            f"shards {', '.join(shards) or '(none)'} drop its rows (any down now, when they "
            "start); its offline (Parquet) data stays"
        )
        ops.append(Delete(reg.keys.placement(placed.name, placed.version)))
    if dry_run:
        return record, [f"{e} (dry run)" for e in effects]
    conditions = [ModRevisionIs(key, current.mod_revision), ModRevisionIs(retired_key, 0)]
    if not reg.store.txn(conditions, ops):
        raise FailedPrecondition(
            f"{kind} {ref} changed while it was being retired (or was retired meanwhile); "
            "run the retirement again"
        )
    return record, effects
