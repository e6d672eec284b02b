"""A subject's erasure on one shard: feature rows, physical purge, byte scan.

Embedding records are tombstoned through the normal delete path (a delete
wins over every write of its version or older, so no retry brings them
back). What this module adds:

- `delete_feature_rows`: the entity's rows in every feature group here, and
  a marker that refuses its history written (or copied) again;
- `purge`: seal and compact every index partition (compaction rebuilds
  segments from live rows only, and replaced segment files are deleted), then
  compact every RocksDB column family into the bottom level, which drops
  deleted keys with their values and retires the WALs that held them;
- `scan`: read every file under the data directory for the subject's bytes.
  Its stored vectors must appear nowhere. Its key may appear only in deletion
  markers — the `tombstones` and `feature_erasures` column families' files
  and RocksDB's MANIFEST (which records each file's key range) — because
  the markers are what keep a replica that missed the delete, a late retry
  or a replayed history from bringing it back.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.domain import EntityKey
from registry.model import Status
from shard_server.feature_store import FeatureStore, entity_key
from shard_server.service import ShardNode
from shard_server.storage import FEATURE_ERASURES, TOMBSTONES, ShardStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileMatch:
    file: str  # relative to the data directory
    kind: str  # data | key | marker
    pattern: int


class ShardEraser:
    def __init__(
        self, node: ShardNode, store: ShardStore, data_dir: Path, features: FeatureStore
    ) -> None:
        self.node = node
        self.store = store
        self.data_dir = data_dir
        self.features = features

    def delete_feature_rows(self, keys: Sequence[EntityKey], erased_at: int) -> int:
        """The entities' rows out of every feature group here, and erasure
        markers that refuse their history written again
        (`FeatureStore.erase`)."""
        return self.features.erase([entity_key(k) for k in keys], erased_at)

    def purge(self) -> int:
        """Every index partition this shard holds, then RocksDB."""
        snap = self.node.registry.snapshot
        refs = [
            ref
            for ref, placement in snap.placements.items()
            if ref in snap.indexes
            and snap.indexes[ref].status is not Status.ARCHIVED  # dropped: nothing to flush
            and self.node.shard_id in placement.shards()
        ]
        for ref in refs:
            self.node.flush(ref, compact=True)
        self.store.compact_all()
        return len(refs)

    def scan(
        self, data_patterns: Sequence[bytes], key_pattern: bytes
    ) -> tuple[int, list[FileMatch]]:
        markers = self.store.sst_files(TOMBSTONES) | self.store.sst_files(FEATURE_ERASURES)
        files = sorted(p for p in self.data_dir.rglob("*") if p.is_file())
        matches: list[FileMatch] = []
        for path in files:
            rel = str(path.relative_to(self.data_dir))
            found = _find(path, [*data_patterns, key_pattern] if key_pattern else data_patterns)
            for i in found:
                if i < len(data_patterns):
                    matches.append(FileMatch(rel, "data", i))
                elif path.name in markers or path.name.startswith("MANIFEST-"):
                    matches.append(FileMatch(rel, "marker", -1))
                else:
                    matches.append(FileMatch(rel, "key", -1))
        return len(files), matches


def _find(path: Path, patterns: Sequence[bytes]) -> list[int]:
    """Indexes of the patterns the file contains (mmap: no file is read whole)."""
    try:
        with open(path, "rb") as f:
            if path.stat().st_size == 0:
                return []
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return [i for i, p in enumerate(patterns) if p and mm.find(p) != -1]
    except (FileNotFoundError, ValueError):
        return []  # deleted meanwhile (a released segment), or emptied
