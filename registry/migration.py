"""Model changes in the registry (DESIGN §11): the family-level dual-write
setting that copies live writes of the old embedding version into the new
one, and the rollback retention of deprecated index versions.

Dual-write is a setting, not a job: while it is on, every coordinator sends
each upsert and delete of `from_version` also to `to_version`, with the same
`source_version` (so the version rules order it against the backfill exactly
as against any other write). Retention: an index version that becomes
deprecated gets a `VersionRetention` in the same transaction; once
`keep_until` has passed, the coordinators' sweeper archives it (a terminal
status), the shards drop its data, and a rollback to it is refused naming
when and why. Pure functions over plain data and snapshots.
"""

from __future__ import annotations

import datetime

from core.domain import AttrType, VersionRef
from core.errors import FailedPrecondition, InvalidArgument, NotFound
from registry.model import DualWrite, EmbeddingFamily, IndexVersion, Status, VersionRetention
from registry.snapshot import Snapshot

__all__ = ["DualWrite", "VersionRetention"]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def iso(t: datetime.datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def mirror_version(snap: Snapshot, ref: VersionRef) -> VersionRef | None:
    """The embedding version a write of `ref` is copied to, if dual-write is on."""
    dw = snap.dual_writes.get(ref.name)
    if dw is None or not dw.enabled or dw.from_version != ref.version:
        return None
    return VersionRef(ref.name, dw.to_version)


def validate_dual_write(snap: Snapshot, dw: DualWrite) -> None:
    if dw.family not in snap.families:
        raise NotFound(f"dual-write: unknown embedding family {dw.family!r}")
    if dw.from_version == dw.to_version:
        raise InvalidArgument(f"dual-write of {dw.family}: from and to are both {dw.to_version!r}")
    for version in (dw.from_version, dw.to_version):
        ref = VersionRef(dw.family, version)
        found = snap.embedding_versions.get(ref)
        if found is None:
            raise NotFound(f"dual-write of {dw.family}: unknown embedding version {ref}")
        if dw.enabled and found.status in (Status.FAILED, Status.ARCHIVED):
            raise FailedPrecondition(
                f"dual-write of {dw.family}: {ref} is {found.status.value}; expected a live version"
            )
    target = VersionRef(dw.family, dw.to_version)
    if dw.enabled and not _live(snap, target):
        raise FailedPrecondition(
            f"dual-write of {dw.family}: {target} has no index version to write to; create one first"
        )
    if dw.enabled:
        check_attribute_types(snap, dw)
        untrained = [
            ix.ref
            for ix in _live(snap, target)
            if ix.placement == "centroid" and not snap.placement(ix.ref).centroids
        ]
        if untrained:
            # Every write of the old version is copied into these: each would
            # fail until they are trained (an outage of the serving version).
            raise FailedPrecondition(
                f"dual-write of {dw.family}: index version(s) {', '.join(map(str, untrained))} of "
                f"{target} use centroid placement but their centroids are not trained, so no "
                "write could be copied into them; train them first (`vecshard registry "
                "train-placement`), then enable dual-write"
            )


def _live(snap: Snapshot, ref: VersionRef) -> list[IndexVersion]:
    return sorted(
        (
            ix
            for ix in snap.indexes.values()
            if ix.embedding == ref and ix.status not in (Status.FAILED, Status.ARCHIVED)
        ),
        key=lambda ix: (ix.name, ix.version),
    )


def _carries(declared: AttrType, into: AttrType) -> bool:
    """A value valid for `declared` is valid for `into` (an int is a valid float)."""
    return declared is into or (declared is AttrType.INT and into is AttrType.FLOAT)


def check_attribute_types(snap: Snapshot, dw: DualWrite) -> None:
    """Refuses dual-write when an index of the new version declares an
    attribute that an index of the old version declares with a type whose
    values it refuses. Why: every write of the old version is checked against
    the new version's indexes too (the copy must land), so each write carrying
    that attribute would fail — an outage of the version that serves. (An
    attribute only the new version declares cannot be checked in advance: a
    write carrying it with another type fails naming the dual-write.)"""
    source = VersionRef(dw.family, dw.from_version)
    target = VersionRef(dw.family, dw.to_version)
    for old in _live(snap, source):
        for new in _live(snap, target):
            for name, kind in sorted(old.attributes.items()):
                into = new.attributes.get(name)
                if into is not None and not _carries(kind, into):
                    raise FailedPrecondition(
                        f"dual-write of {dw.family}: attribute {name!r} is {kind.value} in "
                        f"index {old.ref} (of {source}) but {into.value} in index {new.ref} "
                        f"(of {target}): every write of {source} carrying it would be refused "
                        f"by {new.ref}; create a version of {new.ref.name} typing it "
                        f"{kind.value} (or not declaring it) first"
                    )


def retention_for(
    index: IndexVersion, family: EmbeddingFamily, now: datetime.datetime
) -> VersionRetention:
    keep = now + datetime.timedelta(seconds=family.rollback_retention_seconds)
    return VersionRetention(index.ref, iso(now), iso(keep))


def due_for_archive(snap: Snapshot, now: datetime.datetime) -> list[VersionRef]:
    """Deprecated index versions whose rollback retention has ended."""
    due = []
    for ref, index in sorted(snap.indexes.items(), key=lambda kv: (kv[0].name, kv[0].version)):
        kept = snap.retention.get(ref)
        if (
            index.status is Status.DEPRECATED
            and kept is not None
            and datetime.datetime.fromisoformat(kept.keep_until) <= now
        ):
            due.append(ref)
    return due


def check_archivable(
    ref: VersionRef, kept: VersionRetention | None, now: datetime.datetime
) -> None:
    if kept is None:
        raise FailedPrecondition(f"index version {ref} has no retention record; deprecate it first")
    until = datetime.datetime.fromisoformat(kept.keep_until)
    if until > now:
        raise FailedPrecondition(
            f"index version {ref} is kept as a rollback target until {kept.keep_until}; "
            "it is archived when that retention ends"
        )


def archived_reason(snap: Snapshot, ref: VersionRef) -> str:
    """Why a bundle on `ref` can no longer serve (for rollback refusals)."""
    kept = snap.retention.get(ref)
    when = f" at {kept.archived_at}" if kept and kept.archived_at else ""
    since = f" (deprecated at {kept.deprecated_at}, kept until {kept.keep_until})" if kept else ""
    return (
        f"index version {ref} was archived{when}{since}: its rollback retention ended and its "
        "data was dropped from the shards, so it cannot serve again; rebuild it as a new version"
    )
