"""A subject's erasure from the offline store (Parquet): rewrite, then verify.

Every Parquet file under the store's root that holds a row of the subject
(`tenant_id`, `entity_type`, `entity_id` columns: feature tables and
embedding tables alike) is rewritten without those rows — written to a
temporary file, fsynced, renamed over the original — so a reader sees the old
file or the new one, never a torn one, and a rewrite killed midway is simply
done again (idempotent: a file without the subject is left alone). A file
left with no rows is removed. Materialization reads these files, so a later
backfill cannot bring the subject back online.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.domain import EntityKey

_KEYS = ("tenant_id", "entity_type", "entity_id")


@dataclass(frozen=True)
class OfflineErasure:
    files_scanned: int
    files_rewritten: int
    rows_removed: int


def _mask(table: pa.Table, subject: EntityKey) -> pa.ChunkedArray | None:
    """True for the subject's rows; None when the table has no key columns
    (or has `entity_type` only as a hive partition)."""
    names = set(table.column_names)
    if not {"tenant_id", "entity_id"} <= names:
        return None
    mask = pc.and_(
        pc.equal(table.column("tenant_id"), subject.tenant_id),
        pc.equal(table.column("entity_id"), subject.entity_id),
    )
    if "entity_type" in names:
        mask = pc.and_(mask, pc.equal(table.column("entity_type"), subject.entity_type))
    return mask


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.parquet") if p.is_file())


def _rewrite(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.erasing")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def erase_offline(root: Path, subject: EntityKey) -> OfflineErasure:
    files = _files(root)
    rewritten = removed = 0
    for path in files:
        table = pq.read_table(path, partitioning=None)
        mask = _mask(table, subject)
        if mask is None:
            continue
        hits = int(pc.sum(mask).as_py() or 0)
        if not hits:
            continue
        kept = table.filter(pc.invert(mask))
        if kept.num_rows:
            _rewrite(path, kept)
        else:
            path.unlink()
        rewritten += 1
        removed += hits
    return OfflineErasure(len(files), rewritten, removed)


def find_offline(root: Path, subject: EntityKey) -> list[str]:
    """Files still holding a row of the subject (empty after an erasure)."""
    out = []
    for path in _files(root):
        mask = _mask(pq.read_table(path, columns=None, partitioning=None), subject)
        if mask is not None and pc.any(mask).as_py():
            out.append(str(path.relative_to(root)))
    return out
