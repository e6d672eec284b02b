"""Where a placed object's document puts it: `shards` and `replicas`, the two
fields a document carries beside `kind` and `spec` for an index version or a
feature group.

Why checked here, before anything is written: a placement is fixed when the
version is created (versions are immutable; moving data is a new version),
so a wrong one cannot be mended later. Unchecked, `shards: shard-0` (a string)
placed the version on the shards "s", "h", "a", "r", "d", "-" and "0", a
mistyped shard id on a shard that never comes, `shards: [1, 2]` stored a
placement no reader could decode, and `replica: 2` (a typo) was ignored:
each an index version or feature group whose every write fails, or a group
without the replicas its owner asked for.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import FailedPrecondition, InvalidArgument, NotFound
from registry.model import Placement

DOCUMENT_FIELDS = ("kind", "spec", "shards", "replicas")
PLACED_KINDS = ("IndexVersion", "FeatureGroup")


@dataclass(frozen=True)
class PlacementOptions:
    # None: every shard registered when the version is created.
    shards: tuple[str, ...] | None = None
    # Distinct shards holding each bucket; None: not given (one).
    replicas: int | None = None

    @property
    def replica_count(self) -> int:
        return self.replicas or 1


def placement_options(doc: Mapping[str, Any], kind: str, where: str) -> PlacementOptions:
    """The document's placement fields, typed; refuses a field no document
    has, and placement fields on a kind that is not placed."""
    unknown = [str(k) for k in doc if k not in DOCUMENT_FIELDS]
    if unknown:
        raise InvalidArgument(
            f"{where}: unknown field(s) {unknown}; a document has {list(DOCUMENT_FIELDS)}"
        )
    given = [f for f in ("shards", "replicas") if doc.get(f) is not None]
    if given and kind not in PLACED_KINDS:
        raise InvalidArgument(
            f"{where}: {' and '.join(given)} place an IndexVersion or a FeatureGroup; "
            f"a {kind} is not placed"
        )
    shards = doc.get("shards")
    if shards is not None:
        if (
            not isinstance(shards, list)
            or not shards
            or not all(isinstance(s, str) and s for s in shards)
        ):
            raise InvalidArgument(
                f"{where}: shards {shards!r:.80}; expected a list of shard ids, "
                "e.g. [shard-0, shard-1]"
            )
        if len(set(shards)) != len(shards):
            raise InvalidArgument(f"{where}: shards {shards!r:.80} names a shard twice")
    replicas = doc.get("replicas")
    if replicas is not None and (
        isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1
    ):
        raise InvalidArgument(
            f"{where}: replicas {replicas!r:.40}; expected a whole number of at least 1"
        )
    return PlacementOptions(tuple(shards) if shards is not None else None, replicas)


def shards_to_place(
    options: PlacementOptions, where: str, registered: Collection[str]
) -> list[str]:
    """The shards a new version goes on: those the document names — each
    must be registered — or every registered one."""
    if options.shards is not None:
        unknown = [s for s in options.shards if s not in registered]
        if unknown:
            raise NotFound(
                f"{where}: shard(s) {unknown} are not registered (registered: "
                f"{sorted(registered)}); start them first, or name registered ones"
            )
        shards = list(options.shards)
    else:
        shards = sorted(registered)
    if not shards:
        raise FailedPrecondition(f"{where}: no shards to place it on (none registered)")
    check_replicas(where, options.replica_count, shards)
    return shards


def check_replicas(where: str, replicas: int, shards: Sequence[str], write_quorum: int = 0) -> None:
    """Replicas are distinct shards, and a write quorum is one they can meet."""
    if not 1 <= replicas <= len(set(shards)):
        raise InvalidArgument(
            f"{where}: replicas {replicas}, but it is placed on {len(set(shards))} shard(s); "
            "the replicas of a bucket are distinct shards"
        )
    check_write_quorum(where, write_quorum, replicas)


def check_unchanged(options: PlacementOptions, where: str, placement: Placement | None) -> None:
    """A document applied again may not ask for other replicas than its
    version was placed with: answering "unchanged" would leave its owner
    believing a group had replicas it has not."""
    if options.replicas is None or placement is None or not placement.buckets:
        return
    placed = max(len(b) for b in placement.buckets)
    if placed != options.replicas:
        raise FailedPrecondition(
            f"{where} was placed with {placed} replica(s); replicas cannot change on an existing "
            f"version (asked: {options.replicas}). Create a new version with replicas: "
            f"{options.replicas} and switch to it"
        )


def check_write_quorum(where: str, quorum: int, replicas: int) -> None:
    """A write quorum above the replica count could never be met."""
    if not 0 <= quorum <= replicas:
        raise InvalidArgument(
            f"{where}: write_quorum {quorum}, but it has {replicas} replica(s) per bucket; "
            "expected 0 (every replica) up to the replicas"
        )
