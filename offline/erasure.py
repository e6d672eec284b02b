"""A subject's erasure from the offline store (Parquet): rewrite, then verify.

Every Parquet file under the store's root that holds a row of the subject
(`tenant_id`, `entity_type`, `entity_id` columns: feature tables and
embedding tables alike) is rewritten without those rows under a new name —
its own with `.e{n}` before `.parquet` — written through a temporary file,
fsynced and renamed into place, and then the original is removed. A reader
sees the old file or the new one (for a moment both: the same rows twice),
never a torn one, and a rewrite killed midway is simply done again
(idempotent: a file without the subject is left alone). A file left with no
rows is removed. Materialization reads these files, so a later backfill
cannot bring the subject back online.

Why a new name: the checkpoints of materialization and backfill refuse a
file whose size changed (they cannot tell which of its batches were sent),
so a rewrite in place stopped them for good. A new name is a new file to
them; `original_name` tells them which file it replaces, so one they already
sent whole is not sent again. The offline store's names are fixed-width up
to the first dot, so the suffix keeps the file's place in read order, which
breaks ties between equal rows (`offline.parquet_store.file_order`).

A key part a file lacks as a column is read from its hive partition
directories (`entity_type=item/`, `tenant_id=acme/`), the way pyarrow and
Spark read it. A file with an `entity_id` but a key part that is neither a
column nor a partition is left alone and reported by `find_offline`: matching
it on the remaining parts would erase other subjects' rows (item 42 when
erasing user 42), and skipping it silently would verify an erasure that did
not happen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.domain import EntityKey
from core.durable_files import fsync_dir, save_file_atomic

_KEYS = ("tenant_id", "entity_type", "entity_id")


@dataclass(frozen=True)
class OfflineErasure:
    files_scanned: int
    files_rewritten: int
    rows_removed: int
    # Files that may hold the subject but name it only in part (see the module
    # docstring), relative to the root: left alone, for a person to look at.
    files_unresolved: tuple[str, ...] = ()


def partition_values(root: Path, path: Path) -> dict[str, str]:
    """The hive partition keys of `path`'s directories below `root`
    (percent-decoded, as pyarrow's hive partitioning reads them)."""
    out = {}
    for part in path.relative_to(root).parent.parts:
        key, sep, value = part.partition("=")
        if sep and key:
            out[key] = unquote(value)
    return out


def _key_parts(table: pa.Table, partitions: dict[str, str]) -> dict[str, pa.ChunkedArray | str]:
    """Each key part the file names its rows by: its column, or else its
    partition value."""
    out: dict[str, pa.ChunkedArray | str] = {}
    for key in _KEYS:
        if key in table.column_names:
            out[key] = table.column(key)
        elif key in partitions:
            out[key] = partitions[key]
    return out


def _missing(table: pa.Table, partitions: dict[str, str]) -> list[str]:
    """The key parts a file of subjects lacks; empty also for a file without
    an `entity_id` (no row of it is any one subject's)."""
    parts = _key_parts(table, partitions)
    if "entity_id" not in parts:
        return []
    return [k for k in _KEYS if k not in parts]


def _mask(
    table: pa.Table, partitions: dict[str, str], subject: EntityKey
) -> pa.Array | pa.ChunkedArray | None:
    """True for the subject's rows; None when the file does not name all of
    the subject's key parts (see `_missing`), so nothing of it is matched."""
    parts = _key_parts(table, partitions)
    if len(parts) < len(_KEYS):
        return None
    mask: pa.Array | pa.ChunkedArray = pa.array(np.ones(table.num_rows, dtype=bool))
    for key, wanted in zip(_KEYS, subject, strict=True):
        value = parts[key]
        if isinstance(value, str):
            if value != wanted:
                return pa.array(np.zeros(table.num_rows, dtype=bool))
            continue
        # A null key is nobody's: kept (a null in the mask would drop the row).
        mask = pc.and_(mask, pc.fill_null(pc.equal(value, wanted), False))
    return mask


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.parquet") if p.is_file())


_REWRITTEN = re.compile(r"(?P<base>.+)\.e(?P<n>\d+)\.parquet")


def original_name(name: str) -> str:
    """The name (or relative path) of the file that `name` is a rewrite of,
    through any number of erasures; `name` itself for one never rewritten."""
    m = _REWRITTEN.fullmatch(name)
    return f"{m['base']}.parquet" if m else name


def rewritten_name(name: str) -> str:
    """The name the next rewrite of file `name` takes."""
    m = _REWRITTEN.fullmatch(name)
    if m:
        return f"{m['base']}.e{int(m['n']) + 1}.parquet"
    return f"{name.removesuffix('.parquet')}.e1.parquet"


def _rewrite(path: Path, table: pa.Table) -> None:
    save_file_atomic(
        path.with_name(rewritten_name(path.name)), lambda tmp: pq.write_table(table, tmp)
    )
    _remove(path)


def _remove(path: Path) -> None:
    path.unlink()
    fsync_dir(path.parent)


def erase_offline(root: Path, subject: EntityKey) -> OfflineErasure:
    files = _files(root)
    rewritten = removed = 0
    unresolved = []
    for path in files:
        table = pq.read_table(path, partitioning=None)
        partitions = partition_values(root, path)
        if _missing(table, partitions):
            unresolved.append(str(path.relative_to(root)))
            continue
        mask = _mask(table, partitions, subject)
        if mask is None:
            continue
        hits = int(pc.sum(mask).as_py() or 0)
        if not hits:
            continue
        kept = table.filter(pc.invert(mask))
        if kept.num_rows:
            _rewrite(path, kept)
        else:
            _remove(path)
        rewritten += 1
        removed += hits
    return OfflineErasure(len(files), rewritten, removed, tuple(unresolved))


def find_offline(root: Path, subject: EntityKey) -> list[str]:
    """Files still holding a row of the subject (empty after an erasure),
    and files that may hold one but cannot be checked, with why."""
    out = []
    for path in _files(root):
        rel = str(path.relative_to(root))
        table = pq.read_table(path, partitioning=None)
        partitions = partition_values(root, path)
        missing = _missing(table, partitions)
        if missing:
            out.append(
                f"{rel} (has entity_id but no {', '.join(missing)} column or "
                "hive partition: cannot tell the subject's rows, so it was not erased)"
            )
            continue
        mask = _mask(table, partitions, subject)
        if mask is not None and pc.any(mask).as_py():
            out.append(rel)
    return out
