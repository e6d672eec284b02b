"""Dual-write during a model change: the index versions a write of one
embedding version is also copied to, by the family's `DualWrite` setting
(`registry.migration`). The write path sends the same records (same
`source_version`) to these as to its own, under the same quorum, so a write
acknowledged mid-migration is in the new version too, and a retried write
or a later backfill row is ordered by the usual version rules."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from coordinator.buckets import require_trained
from core.domain import VersionRef
from core.errors import FailedPrecondition, InvalidArgument
from registry.migration import mirror_version
from registry.model import IndexVersion
from registry.snapshot import Snapshot, indexes_for_embedding


def mirror_indexes(snap: Snapshot, ref: VersionRef) -> list[IndexVersion]:
    """The new version's index versions, or [] when dual-write is off for `ref`."""
    target = mirror_version(snap, ref)
    if target is None:
        return []
    indexes = indexes_for_embedding(snap, target)
    for index in indexes:
        try:
            require_trained(snap, index)
        except FailedPrecondition as exc:
            # The registry refuses enabling dual-write before the target is
            # trained; an untrained centroid index of it created since lands here.
            raise FailedPrecondition(
                f"dual-write of family {ref.name!r} copies writes of {ref} into {target}: "
                f"{exc.message}; or turn dual-write off "
                f"(`vecshard embeddings dual-write {ref.name} ... --off`)"
            ) from None
    return indexes


@contextlib.contextmanager
def copy_into(index: IndexVersion) -> Iterator[None]:
    """A record refused by a dual-write target's index (`index`): the write
    itself is valid for the version it names, so the error says that the
    copy failed, where to, and what to do — not just "expected int"."""
    try:
        yield
    except InvalidArgument as exc:
        family = index.embedding.name
        raise FailedPrecondition(
            f"dual-write of family {family!r} copies this write into index {index.ref} "
            f"(of {index.embedding}), which refuses it: {exc.message}; fix the record, or turn "
            f"dual-write off (`vecshard embeddings dual-write {family} ... --off`)"
        ) from None
