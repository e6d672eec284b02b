"""Writes of the model-change objects (DESIGN §11): evaluations, canary
query sets, dual-write settings, and archiving a deprecated index version
whose rollback retention ended. Each is validated against the snapshot and
written with compare-and-swap, like every registry change."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from core.domain import AttrType, VersionRef
from core.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from registry import codec
from registry.migration import DualWrite, check_attribute_types, validate_dual_write
from registry.model import IndexVersion, Status, frozen_map
from registry.quality import CanaryQuerySet, IndexEvaluation, validate_canary_set
from registry.registry import Registry
from registry.retired_versions import Guard, hold_current
from registry.serving_versions import live_targets
from registry.store import ModRevisionIs, Put

MODEL_CHANGE_KINDS = ("CanaryQuerySet", "DualWrite", "IndexEvaluation")


def _cas_put(
    reg: Registry, obj: Any, what: str, create_only: bool = False, held: Guard = ([], [])
) -> None:
    key = reg.key_of(obj)
    current = reg.store.get(key)
    if current is not None:
        if codec.decode(current.value) == obj:
            return
        if create_only:
            raise FailedPrecondition(
                f"{what} already exists with other content; it is immutable, create a new version"
            )
    expected = current.mod_revision if current is not None else 0
    if not reg.store.txn(
        [ModRevisionIs(key, expected), *held[0]], [Put(key, codec.encode(obj)), *held[1]]
    ):
        raise Conflict(f"{what} changed concurrently; re-read and retry")


def put_evaluation(reg: Registry, ev: IndexEvaluation) -> None:
    """Stored with the index version it measured; a new evaluation replaces
    the last one (promotion judges the latest). Only while the version has
    not served: a ready version's evaluation is its promotion record."""
    key = reg.keys.index(ev.index.name, ev.index.version)
    entry = reg.store.get(key)
    if entry is None:
        raise NotFound(f"evaluation of unknown index version {ev.index}")
    status = codec.decode(entry.value).status
    if status not in (Status.BUILDING, Status.VALIDATING):
        raise FailedPrecondition(
            f"index version {ev.index} is {status.value}; evaluations are recorded "
            "while it is building or validating"
        )
    # Touches the version: a promotion that read it before judges this
    # evaluation or fails its compare, never the one this replaces.
    held: Guard = ([], [])
    hold_current(reg.store, key, entry.mod_revision, held, f"evaluation of {ev.index}")
    _cas_put(reg, ev, f"evaluation of {ev.index}", held=held)


def put_canary_set(reg: Registry, canary: CanaryQuerySet) -> None:
    snap = reg.snapshot()
    ref = canary.query_embedding
    if ref not in snap.embedding_versions:
        raise NotFound(f"canary set {canary.label}: unknown query embedding version {ref}")
    validate_canary_set(canary, snap.family(ref.name).dimension)
    _cas_put(reg, canary, f"canary set {canary.label}", create_only=True)


def put_dual_write(reg: Registry, dw: DualWrite) -> None:
    """Enabling holds (and touches) the target's embedding version and live
    index versions as validated: a status move racing it fails one side's
    compare (`registry.serving_versions`)."""
    snap = reg.snapshot()
    validate_dual_write(snap, dw)
    held: Guard = ([], [])
    if dw.enabled:
        target = VersionRef(dw.family, dw.to_version)
        where = f"dual-write of {dw.family}"
        hold_current(
            reg.store,
            reg.keys.embedding_version(dw.family, dw.to_version),
            snap.revision,
            held,
            where,
        )
        for ref in live_targets(snap, target):
            hold_current(
                reg.store, reg.keys.index(ref.name, ref.version), snap.revision, held, where
            )
    _cas_put(reg, dw, f"dual-write setting of family {dw.family}", held=held)


def put_model_change_object(reg: Registry, obj: Any) -> None:
    match obj:
        case IndexEvaluation():
            put_evaluation(reg, obj)
        case CanaryQuerySet():
            put_canary_set(reg, obj)
        case DualWrite():
            put_dual_write(reg, obj)
        case _:
            raise InvalidArgument(f"{type(obj).__name__} is not a model-change object")


def attributes_added(current: IndexVersion, new: IndexVersion) -> dict[str, AttrType]:
    """The attributes `new` adds to `current` when that (and the status) is
    all that differs; raises when anything else, or an existing attribute's
    type, would change. Adding a filterable attribute changes what no stored
    record means, so it is allowed on a version that serves; removing or
    retyping one would break its filters, so it is not."""
    changed = {n for n, k in current.attributes.items() if new.attributes.get(n) != k}
    if changed:
        raise FailedPrecondition(
            f"index version {current.ref}: attribute(s) {sorted(changed)} cannot be removed or "
            "retyped; create a new version"
        )
    same = dataclasses.replace(current, status=new.status, attributes=new.attributes)
    if same != new:
        raise FailedPrecondition(
            f"index version {current.ref} already exists with other content; versions are "
            "immutable (only attributes may be added)"
        )
    return {n: k for n, k in new.attributes.items() if n not in current.attributes}


def add_index_attributes(reg: Registry, ref: VersionRef, added: Mapping[str, AttrType]) -> Any:
    """Adds filterable attributes to an index version (compare-and-swap)."""
    key = reg.keys.index(ref.name, ref.version)
    entry = reg.store.get(key)
    if entry is None:
        raise NotFound(f"unknown index version {ref}")
    current = codec.decode(entry.value)
    clash = {n for n, k in added.items() if n in current.attributes and current.attributes[n] != k}
    if clash:
        raise FailedPrecondition(
            f"index version {ref}: attribute(s) {sorted(clash)} exist with another type"
        )
    updated = dataclasses.replace(current, attributes=frozen_map({**current.attributes, **added}))
    if updated == current:
        return current
    snap = reg.snapshot()
    dw = snap.dual_writes.get(current.embedding.name)
    if dw is not None and dw.enabled:  # a type the other side refuses breaks every write
        check_attribute_types(dataclasses.replace(snap, indexes={**snap.indexes, ref: updated}), dw)
    if not reg.store.txn(
        [ModRevisionIs(key, entry.mod_revision)], [Put(key, codec.encode(updated))]
    ):
        raise Conflict(f"index version {ref} changed concurrently; re-read and retry")
    return updated


def archive(reg: Registry, ref: VersionRef) -> bool:
    """Archives a deprecated index version whose retention ended (refused
    before that, naming until when it is kept). False when it was archived
    already: every coordinator's sweeper tries, one archives it."""
    return reg.move_status("IndexVersion", ref, Status.ARCHIVED)[1]
