"""What keeps an embedding or index version live: a route arm serving it
(it must stay ready or production) and an enabled dual-write writing into
it (its writes need an index version to land in). A status move that would
take a version out from under either is refused, naming who depends on it.

Both sides commit with compare-and-swap: a status move compares the
version's revision read before the snapshot it checked, and a route switch
(`registry.retired_versions.guard_route`) or a dual-write enabled
(`registry.change_writes.put_dual_write`) touches the versions it relies on,
so whichever commits second fails its compare."""

from __future__ import annotations

from core.domain import VersionRef
from core.errors import FailedPrecondition
from registry.model import SERVABLE, Status
from registry.retired_versions import arms
from registry.snapshot import Snapshot

_DEAD = (Status.FAILED, Status.ARCHIVED)


def check_status_move(snap: Snapshot, kind: str, ref: VersionRef, status: Status) -> None:
    """Refuses `kind` `ref` becoming `status` while something in `snap`
    depends on it. The caller reads the version's revision before `snap` and
    commits comparing it (see the module's note)."""
    if status not in SERVABLE:
        for route in sorted(snap.routes.values(), key=lambda r: r.name):
            for arm, name in arms(route):
                bundle = snap.bundles.get(name)
                used = bundle is not None and (
                    bundle.index == ref
                    if kind == "IndexVersion"
                    else ref in (bundle.query_embedding, bundle.item_embedding)
                )
                if used:
                    raise FailedPrecondition(
                        f"{kind} {ref} cannot become {status.value}: route {route.name!r} "
                        f"({arm} bundle {name!r}) serves it; switch the route to another "
                        "bundle first (or roll it back)"
                    )
    if kind == "EmbeddingVersion" and status is Status.ARCHIVED:
        check_indexes_archived(snap, ref)
    index = snap.indexes.get(ref) if kind == "IndexVersion" else None
    family = index.embedding.name if index is not None else ref.name
    dw = snap.dual_writes.get(family)
    if dw is None or not dw.enabled or status not in _DEAD:
        return
    target = VersionRef(dw.family, dw.to_version)
    if ref == target if index is None else live_targets(snap, target) == [ref]:
        raise FailedPrecondition(
            f"{kind} {ref} cannot become {status.value}: dual-write of family {dw.family!r} "
            f"copies writes of {dw.from_version!r} into {target} and needs it live (every write "
            "of the old version would fail); turn dual-write off first"
        )


def live_targets(snap: Snapshot, target: VersionRef) -> list[VersionRef]:
    """The index versions an enabled dual-write into `target` writes to."""
    return sorted(
        (
            ix.ref
            for ix in snap.indexes.values()
            if ix.embedding == target and ix.status not in _DEAD
        ),
        key=lambda r: (r.name, r.version),
    )


def check_indexes_archived(snap: Snapshot, ref: VersionRef) -> None:
    """An embedding version is archived after its index versions. Why: a
    deprecated index version is the rollback target until its retention
    ends, and a rollback serves its embedding version again — archived, the
    rollback was refused (and writes still went to its indexes)."""
    live = sorted(
        (ix for ix in snap.indexes.values() if ix.embedding == ref and ix.status not in _DEAD),
        key=lambda ix: (ix.name, ix.version),
    )
    if live:
        states = []
        for ix in live:
            kept = snap.retention.get(ix.ref)
            until = f", kept as a rollback target until {kept.keep_until}" if kept else ""
            states.append(f"{ix.ref} ({ix.status.value}{until})")
        raise FailedPrecondition(
            f"EmbeddingVersion {ref} cannot become archived while index version(s) built on it "
            f"are not: {', '.join(states)}; it can be archived once they are (the retention "
            "sweeper archives a deprecated index version when its rollback retention ends)"
        )
