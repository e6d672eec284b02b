"""The shard's RocksDB: one database, column families for records, tombstones,
record write sequences and metadata. Every write batch is synced to the WAL
before it returns, so an acknowledged write survives a SIGKILL.

The write sequence of each live record (`record_seqs`) is what lets a
restarted shard tell which rows of its persisted segments are still the
current version of their key, so only the rest is rebuilt."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from rocksdict import (
    BottommostLevelCompaction,
    CompactOptions,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

RECORDS = "records"
TOMBSTONES = "tombstones"
META = "meta"
# record key → write sequence (int64 LE) of the batch that wrote the record
SEQUENCES = "record_seqs"
COLUMN_FAMILIES = (RECORDS, TOMBSTONES, META, SEQUENCES)
_SEQUENCE_KEY = b"sequence"


class ShardStore:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        self._db = Rdict(
            str(path),
            options=opts,
            column_families={cf: Options(raw_mode=True) for cf in COLUMN_FAMILIES},
        )
        self._cfs = {cf: self._db.get_column_family(cf) for cf in COLUMN_FAMILIES}
        self._handles = {cf: self._db.get_column_family_handle(cf) for cf in COLUMN_FAMILIES}
        self._sync = WriteOptions()
        self._sync.sync = True
        raw = self._cfs[META].get(_SEQUENCE_KEY)
        self._sequence = int(raw) if raw is not None else 0
        self._seq_lock = threading.Lock()

    @property
    def sequence(self) -> int:
        return self._sequence

    def multi_get(self, cf: str, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        return list(self._cfs[cf].get(list(keys)))  # type: ignore[arg-type]  # rocksdict stub: get() -> Any | None, a list for a list of keys

    def write(
        self,
        puts: Sequence[tuple[str, bytes, bytes]] = (),
        deletes: Sequence[tuple[str, bytes]] = (),
        stamps: Sequence[tuple[str, bytes]] = (),
    ) -> int:
        """Applies puts and deletes atomically with a new sequence number, synced.
        Each `stamps` key gets that sequence number as its value."""
        with self._seq_lock:
            seq = self._sequence + 1
            batch = WriteBatch(raw_mode=True)
            for cf, key, value in puts:
                batch.put(key, value, self._handles[cf])
            stamp = encode_sequence(seq)
            for cf, key in stamps:
                batch.put(key, stamp, self._handles[cf])
            for cf, key in deletes:
                batch.delete(key, self._handles[cf])
            batch.put(_SEQUENCE_KEY, str(seq).encode(), self._handles[META])
            self._db.write(batch, self._sync)
            self._sequence = seq
            return seq

    def iter_prefix(self, cf: str, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        it = self._cfs[cf].iter()
        it.seek(prefix)
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                break
            yield key, it.value()
            it.next()

    def compact_all(self) -> None:
        """Flushes every column family and compacts it into the bottom level,
        so deleted keys and their values leave the SST files and the WALs that
        held them become obsolete (a subject erasure's physical purge)."""
        opts = CompactOptions()
        opts.set_bottommost_level_compaction(BottommostLevelCompaction.force())
        cfs = list(self._cfs.values())
        for cf in cfs:
            cf.flush(True)
        self._db.flush_wal(True)
        for cf in cfs:
            cf.compact_range(None, None, opts)

    def sst_files(self, cf: str) -> set[str]:
        """Names of the SST files that hold column family `cf` now."""
        listing = self._cfs[cf].property_value("rocksdb.sstables") or ""
        out = set()
        for line in listing.splitlines():
            number, sep, _ = line.strip().partition(":")
            if sep and number.isdigit():
                out.add(f"{int(number):06d}.sst")
        return out

    def column_families(self) -> list[str]:
        return list(self._cfs)

    def close(self) -> None:
        """Closes column families before the database: RocksDB keeps its LOCK
        file while any handle is open, and a restart in the same process (or a
        test reopening the directory) would fail to acquire it."""
        cfs, self._cfs, self._handles = self._cfs, {}, {}
        for cf in cfs.values():
            cf.close()
        self._db.close()


def encode_sequence(seq: int) -> bytes:
    return struct.pack("<q", seq)


def decode_sequence(raw: bytes) -> int:
    return int(struct.unpack("<q", raw)[0])
