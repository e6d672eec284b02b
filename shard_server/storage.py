"""The shard's RocksDB: one database, column families for records, tombstones,
record write sequences and metadata. Every write batch is synced to the WAL
before it returns, so an acknowledged write survives a SIGKILL.

The write sequence of each live record (`record_seqs`) is what lets a
restarted shard tell which rows of its persisted segments are still the
current version of their key, so only the rest is rebuilt.

RocksDB's own memory is bounded (`StoreMemory`): memtables of every column
family together, and one block cache shared by all of them. Left at its
defaults, each column family keeps up to two 64 MiB memtables and its own
block cache, which on a shard of a few hundred thousand vectors is more
memory than the vectors themselves."""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rocksdict import (
    BlockBasedOptions,
    BottommostLevelCompaction,
    Cache,
    CompactOptions,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

from core.errors import FailedPrecondition, ResourceExhausted
from shard_server import metrics

log = logging.getLogger(__name__)

RECORDS = "records"
TOMBSTONES = "tombstones"
META = "meta"
# record key → write sequence (int64 LE) of the batch that wrote the record
SEQUENCES = "record_seqs"
# entity key → the time (µs, int64 LE) its subject was erased at: feature rows
# stamped at or before it are refused (shard_server/feature_store.py).
FEATURE_ERASURES = "feature_erasures"
COLUMN_FAMILIES = (RECORDS, TOMBSTONES, META, SEQUENCES, FEATURE_ERASURES)
_SEQUENCE_KEY = b"sequence"
MIB = 1 << 20


@dataclass(frozen=True)
class StoreMemory:
    # Memtables of all column families together: past it RocksDB flushes the
    # largest to disk (every write is in the WAL already; nothing waits on it).
    memtable_bytes: int = 64 * MIB
    # One memtable of one column family.
    write_buffer_bytes: int = 16 * MIB
    # Block cache shared by every column family (index and filter blocks too).
    block_cache_bytes: int = 32 * MIB
    # The in-memory copy of feature rows (shard_server.feature_cache); 0: none.
    feature_cache_bytes: int = 256 * MIB
    # A group version not read for this long gives its copy up to one that is.
    feature_cache_idle_seconds: float = 300.0

    def __post_init__(self) -> None:
        if min(self.memtable_bytes, self.write_buffer_bytes, self.block_cache_bytes) < MIB:
            raise ValueError("RocksDB memory bounds must be at least 1 MiB each")
        if self.feature_cache_bytes < 0:
            raise ValueError(f"feature_cache_bytes {self.feature_cache_bytes} must be ≥ 0")
        if self.feature_cache_idle_seconds <= 0:
            raise ValueError(
                f"feature_cache_idle_seconds {self.feature_cache_idle_seconds} must be > 0"
            )


class ShardStore:
    def __init__(self, path: Path, memory: StoreMemory | None = None) -> None:
        """Opens every column family on disk (RocksDB refuses to open a
        database without naming them all), creating the fixed ones."""
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.memory = memory or StoreMemory()
        self._cache = Cache(self.memory.block_cache_bytes)
        opts = self._cf_options()
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        opts.set_db_write_buffer_size(self.memory.memtable_bytes)
        on_disk = Rdict.list_cf(str(path), opts) if (path / "CURRENT").exists() else []
        names = list(dict.fromkeys([*COLUMN_FAMILIES, *(n for n in on_disk if n != "default")]))
        self._db = Rdict(
            str(path),
            options=opts,
            column_families={cf: self._cf_options() for cf in names},
        )
        self._cfs = {cf: self._db.get_column_family(cf) for cf in names}
        self._handles = {cf: self._db.get_column_family_handle(cf) for cf in names}
        self._sync = WriteOptions()
        self._sync.sync = True
        raw = self._cfs[META].get(_SEQUENCE_KEY)
        self._sequence = int(raw) if raw is not None else 0
        self._seq_lock = threading.Lock()

    def _cf_options(self) -> Options:
        opts = Options(raw_mode=True)
        opts.set_write_buffer_size(self.memory.write_buffer_bytes)
        table = BlockBasedOptions()
        table.set_block_cache(self._cache)
        table.set_cache_index_and_filter_blocks(True)
        # Every write looks its keys up first; most are new: a bloom filter
        # (10 bits a key) answers "absent" without reading data blocks.
        table.set_bloom_filter(10, False)
        opts.set_block_based_table_factory(table)
        return opts

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
            with dropped_family(WRITE_REFUSED):
                for cf, key, value in puts:
                    batch.put(key, value, self._handles[cf])
                stamp = encode_sequence(seq)
                for cf, key in stamps:
                    batch.put(key, stamp, self._handles[cf])
                for cf, key in deletes:
                    batch.delete(key, self._handles[cf])
            batch.put(_SEQUENCE_KEY, str(seq).encode(), self._handles[META])
            self._commit(batch)
            self._sequence = seq
            self._written(puts, deletes)
            return seq

    def _commit(self, batch: WriteBatch) -> None:
        """One synced batch; a failure names what the operator must do.
        RocksDB applies nothing of a batch whose WAL append failed, and after
        one it refuses every later write until the database is reopened (its
        background error; rocksdict has no Resume): reads go on meanwhile."""
        try:
            self._db.write(batch, self._sync)
        except Exception as exc:  # rocksdict raises Exception carrying RocksDB's status text
            message = str(exc)
            full = "No space left on device" in message
            metrics.STORAGE_WRITE_FAILURES.labels("disk_full" if full else "io_error").inc()
            if full:
                raise ResourceExhausted(
                    f"the shard's disk is full ({self.path}): nothing of this write was applied. "
                    "Free disk space, then restart the shard (it serves reads until then)"
                ) from exc
            raise

    def _written(
        self, puts: Sequence[tuple[str, bytes, bytes]], deletes: Sequence[tuple[str, bytes]]
    ) -> None:
        """Called with the sequence lock held once a batch is durable, so a
        subclass keeping a copy of some column families (the feature row
        cache) updates it in write order, before the write returns."""

    def write_columns(
        self,
        puts: Iterable[tuple[str, Sequence[bytes], Sequence[bytes]]] = (),
        deletes: Iterable[tuple[str, Sequence[bytes]]] = (),
        stamps: Iterable[tuple[str, Sequence[bytes]]] = (),
    ) -> int:
        """`write` for keys and values given as parallel lists per column
        family: one batch, synced, no tuple per row."""
        put_cols, delete_cols = list(puts), list(deletes)  # read twice: here and _written_columns
        with self._seq_lock:
            seq = self._sequence + 1
            batch = WriteBatch(raw_mode=True)
            with dropped_family(WRITE_REFUSED):
                put, delete = batch.put, batch.delete
                for cf, keys, values in put_cols:
                    handle = self._handles[cf]
                    for key, value in zip(keys, values, strict=True):
                        put(key, value, handle)
                stamp = encode_sequence(seq)
                for cf, keys in stamps:
                    handle = self._handles[cf]
                    for key in keys:
                        put(key, stamp, handle)
                for cf, keys in delete_cols:
                    handle = self._handles[cf]
                    for key in keys:
                        delete(key, handle)
            batch.put(_SEQUENCE_KEY, str(seq).encode(), self._handles[META])
            self._commit(batch)
            self._sequence = seq
            self._written_columns(put_cols, delete_cols)
            return seq

    def _written_columns(
        self,
        puts: Sequence[tuple[str, Sequence[bytes], Sequence[bytes]]],
        deletes: Sequence[tuple[str, Sequence[bytes]]],
    ) -> None:
        """`_written` for a `write_columns` batch."""

    def flush_memtables(self) -> None:
        """Writes every memtable to disk and frees it (Flush before a planned
        restart: less WAL to replay, and the memory back)."""
        for cf in list(self._cfs.values()):  # a drop (retired feature group) may race it
            cf.flush(True)

    def memtable_bytes(self) -> int:
        return sum(
            int(cf.property_int_value("rocksdb.cur-size-all-mem-tables") or 0)
            for cf in list(self._cfs.values())  # a drop may race the metrics scrape
        )

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

    def drop_column_family(self, name: str) -> int:
        """Drops `name` and everything in it; returns the bytes of its SST
        files, which RocksDB deletes once no iterator holds them. Under the
        sequence lock: a write naming it afterwards fails before anything
        is applied (`dropped_family`). 0 when there is no such family."""
        if name in COLUMN_FAMILIES:
            raise ValueError(f"column family {name!r} is the store's own; it is never dropped")
        with self._seq_lock:
            cf = self._cfs.pop(name, None)
            if cf is None:
                return 0
            self._handles.pop(name, None)
            size = int(cf.property_int_value("rocksdb.total-sst-files-size") or 0)
            self._dropped(name)
            self._db.drop_column_family(name)
        return size

    def _dropped(self, name: str) -> None:
        """Called with the sequence lock held when `name` is dropped."""

    def close(self) -> None:
        """Closes column families before the database: RocksDB keeps its LOCK
        file while any handle is open, and a restart in the same process (or a
        test reopening the directory) would fail to acquire it."""
        cfs, self._cfs, self._handles = self._cfs, {}, {}
        try:
            for cf in cfs.values():
                cf.close()
            self._db.close()
        except Exception:  # a database refusing writes (disk full) cannot flush
            # Everything acknowledged is in the WAL already: the next open
            # replays it. A stop must not fail on it.
            log.exception(
                "closing RocksDB at %s failed; its WAL is replayed on the next start", self.path
            )


WRITE_REFUSED = "; nothing of this write was applied"


@contextlib.contextmanager
def dropped_family(consequence: str = "") -> Iterator[None]:
    """A read or write naming a dropped column family (a retired feature
    group's, racing its drop) fails whole, with a reason, not a KeyError."""
    try:
        yield
    except KeyError as exc:
        raise FailedPrecondition(
            f"column family {exc.args[0]!r} was dropped (its feature group version was "
            f"retired){consequence}"
        ) from None


def encode_sequence(seq: int) -> bytes:
    return struct.pack("<q", seq)


def decode_sequence(raw: bytes) -> int:
    return int(struct.unpack("<q", raw)[0])
