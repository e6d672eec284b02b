"""Files that must survive a crash: written through a temporary file, fsynced
and renamed into place with their directory made durable, and their content
hash read in blocks (segment files and manifests, audit archives)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(directory: Path) -> None:
    """A created, renamed or removed entry is durable only once its directory is."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> str:
    """Writes through a temporary file and renames it into place; returns the
    sha256 of what was written."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    digest = sha256_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return digest


def write_file_atomic(path: Path, save: Callable[[Path], None]) -> str:
    """Like `write_atomic`, for libraries that only write to a path
    (hnswlib, faiss)."""
    tmp = _saved(path, save)
    digest = sha256_file(tmp)
    _publish(tmp, path)
    return digest


def save_file_atomic(path: Path, save: Callable[[Path], None]) -> None:
    """`write_file_atomic` without the hash, for bulk data nobody checks by
    hash (the offline store's Parquet files): reading it back would cost more
    than writing it."""
    _publish(_saved(path, save), path)


def _saved(path: Path, save: Callable[[Path], None]) -> Path:
    """`save` into a temporary name beside `path`, synced. The name starts
    with a dot, so Arrow dataset discovery and `*.parquet` globs skip it; a
    failed save (disk full) removes what it left."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _publish(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    fsync_dir(path.parent)
