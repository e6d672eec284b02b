"""Dropping the data of archived index versions (DESIGN §11: a deprecated
version stays loadable for its rollback retention, then its data goes).

The registry archives a version only after its retention ended, and no
route may resolve to it any more, so nothing searches it; the shard closes
its partition, then deletes its rows from RocksDB (records, write sequences,
tombstones) and its segment files. Idempotent: a shard that restarts
mid-drop finds the version archived and drops what is left."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from core.domain import VersionRef
from shard_server import records as rec
from shard_server.storage import RECORDS, SEQUENCES, TOMBSTONES, ShardStore

log = logging.getLogger(__name__)
CHUNK = 4096


def drop_index_data(store: ShardStore, ref: VersionRef, directory: Path) -> int:
    """Deletes every row of `ref` and its segment directory; returns the
    number of records removed."""
    prefix = rec.index_prefix(ref)
    removed = 0
    for cf in (RECORDS, SEQUENCES, TOMBSTONES):
        while True:
            keys = []
            for key, _ in store.iter_prefix(cf, prefix):
                keys.append(key)
                if len(keys) >= CHUNK:
                    break
            if not keys:
                break
            store.write(deletes=[(cf, k) for k in keys])
            removed += len(keys) if cf == RECORDS else 0
    shutil.rmtree(directory, ignore_errors=True)
    if removed:
        log.info("dropped archived index %s: %d records", ref, removed)
    return removed
