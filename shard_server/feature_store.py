"""Online feature partitions (DESIGN §7) in the shard's RocksDB.

One column family per group version, `features:{group}:{version}`, so a
group version is created, scanned, purged or dropped without touching
another, and a multi-get reads exactly one family. Keys are the entity key,
length-prefixed like `shard_server.records` (`tenant | entity_type |
entity_id`): no id can make two keys collide, and a tenant prefix iterates.
A value is one packed row (`shard_server.feature_rows`): a header with the
row's times, then the values laid out from the group's schema, so a
multi-get decodes into columns without a Python object per value.

Writes follow `GroupRow.supersedes`: an older `(feature_timestamp,
generated_at)` never overwrites a newer one (counted as `ignored_older`);
equal times replace, so a replayed batch is idempotent. Each put is one
RocksDB batch synced to the WAL before it returns (through
`ShardStore.write`), so an acknowledged row survives a SIGKILL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Protocol

import numpy as np

from core.domain import EntityKey, VersionRef
from core.errors import FailedPrecondition
from registry.feature_batches import (
    RowBatch,
    StoredRows,
    batch_to_rows,
    check_batch,
    newest_per_entity,
    rows_to_batch,
)
from registry.feature_values import is_expired
from registry.features import GroupRow, GroupSchema, PutAck
from shard_server.erasure_markers import ErasureMarkers
from shard_server.export_chunks import CHUNK_BYTES, pair_size, sized_chunks
from shard_server.feature_cache import FeatureRowCache, row_bytes
from shard_server.feature_rows import decode_rows, encode_rows, row_times
from shard_server.records import _part, entity_key, parse_entity_key
from shard_server.storage import FEATURE_ERASURES, ShardStore, StoreMemory, dropped_family

log = logging.getLogger(__name__)
FEATURE_FAMILY = "features:"  # the prefix of every feature group version's family
# Purges delete in chunks so one purge never holds the write lock for long.
_PURGE_CHUNK = 4096


def column_family(group: VersionRef) -> str:
    """Names never contain ':' (registry.features validates them), so this
    cannot collide with another group or with the shard's own families."""
    return f"{FEATURE_FAMILY}{group.name}:{group.version}"


class FeatureStorage(Protocol):
    """What the feature store needs from the shard's RocksDB: the existing
    `ShardStore` surface plus runtime column families."""

    def ensure_column_family(self, name: str) -> None:
        """Creates the column family if it does not exist (idempotent)."""

    def has_column_family(self, name: str) -> bool: ...

    def multi_get(self, cf: str, keys: Sequence[bytes]) -> list[bytes | None]: ...

    def serve(self, cf: str, keys: Sequence[bytes]) -> list[bytes | None]:
        """`multi_get` for a serving read: only these count as the family
        being read (the row cache keeps memory for those)."""
        ...

    def write(
        self,
        puts: Sequence[tuple[str, bytes, bytes]] = (),
        deletes: Sequence[tuple[str, bytes]] = (),
    ) -> int: ...

    def iter_prefix(self, cf: str, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...

    def drop_column_family(self, name: str) -> int: ...

    def column_families(self) -> list[str]: ...


class FeatureShardStore(ShardStore):
    """`ShardStore` with column families created at runtime (one per feature
    group version); `ShardStore` opens the ones already on disk. Feature
    rows that fit `StoreMemory.feature_cache_bytes` are also kept in memory
    (`FeatureRowCache`) and read from there: the feature families on disk
    are copied by a background scan after open, new ones as they are made."""

    def __init__(
        self,
        path: Path,
        memory: StoreMemory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(path, memory)
        self._cf_lock = threading.Lock()
        self.row_cache = FeatureRowCache(
            self.memory.feature_cache_bytes,
            idle_seconds=self.memory.feature_cache_idle_seconds,
            clock=clock,
        )
        self._closing = threading.Event()
        existing = [cf for cf in self._cfs if cf.startswith(FEATURE_FAMILY)]
        self._warmer = threading.Thread(
            target=self._warm, args=(existing,), name="feature-cache-warm", daemon=True
        )
        self._warmer.start()
        # Copies of groups read while over budget (FeatureRowCache.due).
        self._rewarmers: list[threading.Thread] = []
        # Families dropped since open: never created again by a late write.
        self._retired: set[str] = set()

    def ensure_column_family(self, name: str) -> None:
        # Why a lock: two writers creating the same family at once would make
        # RocksDB fail the second create ("column family already exists").
        with self._cf_lock:
            if name in self._cfs:
                return
            if name in self._retired:
                raise FailedPrecondition(
                    f"column family {name!r} was dropped on this shard (its feature group "
                    "version was retired); a retired version is never written again"
                )
            cf = self._db.create_column_family(name, self._cf_options())
            self._handles[name] = self._db.get_column_family_handle(name)
            with self._seq_lock:
                self.row_cache.created(name)
            self._cfs[name] = cf

    def has_column_family(self, name: str) -> bool:
        return name in self._cfs

    def drop_column_family(self, name: str) -> int:
        with self._cf_lock:  # not racing a create of the same family
            self._retired.add(name)
            return super().drop_column_family(name)

    def _dropped(self, name: str) -> None:
        self.row_cache.removed(name)

    def serve(self, cf: str, keys: Sequence[bytes]) -> list[bytes | None]:
        rows = self.row_cache.rows(cf)
        if rows is None:
            if self.row_cache.due(cf):
                self._rewarm(cf)
            with dropped_family():  # a read racing its group's retirement
                return super().multi_get(cf, keys)
        get = rows.get
        return [get(k) for k in keys]

    def multi_get(self, cf: str, keys: Sequence[bytes]) -> list[bytes | None]:
        """Reads of the write side (puts, copies, erasure, purge): they use
        the cache but do not count as the family being read — a version only
        written (a producer still writing it during a model change) kept its
        memory from the one the models read (found in review)."""
        rows = self.row_cache.rows(cf, touch=False)
        if rows is None:
            with dropped_family():
                return super().multi_get(cf, keys)
        get = rows.get
        return [get(k) for k in keys]

    def _written(
        self, puts: Sequence[tuple[str, bytes, bytes]], deletes: Sequence[tuple[str, bytes]]
    ) -> None:
        # One pass: `applied` skips rows of families it does not copy.
        self.row_cache.applied(chain(puts, ((cf, k, None) for cf, k in deletes)))

    def _written_columns(
        self,
        puts: Sequence[tuple[str, Sequence[bytes], Sequence[bytes]]],
        deletes: Sequence[tuple[str, Sequence[bytes]]],
    ) -> None:
        # The vector write path: its families are never copied, so they are
        # skipped whole, before anything is built per row.
        tracks = self.row_cache.tracks
        self.row_cache.applied(
            chain(
                (
                    (cf, k, v)
                    for cf, keys, values in puts
                    if tracks(cf)
                    for k, v in zip(keys, values, strict=True)
                ),
                ((cf, k, None) for cf, keys in deletes if tracks(cf) for k in keys),
            )
        )

    def _rewarm(self, cf: str) -> None:
        """Copies `cf` again in the background (reads go to RocksDB meanwhile)."""
        with self._cf_lock:
            if self._closing.is_set():
                return
            self._rewarmers = [t for t in self._rewarmers if t.is_alive()]
            t = threading.Thread(
                target=self._warm, args=([cf],), name="feature-cache-rewarm", daemon=True
            )
            self._rewarmers.append(t)
            t.start()

    def wait_for_row_cache(self, timeout: float | None = None) -> bool:
        """True once the families on disk at open have been copied (or found
        too large), and any copy a read started since; for tests and tools —
        reads never wait for it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cf_lock:
            threads = [self._warmer, *self._rewarmers]
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    def _warm(self, families: list[str]) -> None:
        cache = self.row_cache
        started = time.monotonic()
        copied = 0
        for name in families:
            with self._seq_lock:
                family = self._cfs.get(name)  # None: dropped since (retired)
                if family is None or not cache.begin_warm(name):
                    continue
                room = cache.room_for(name)
            # Opened after begin_warm: whatever it misses, begin_warm recorded.
            if not room:  # not even its last known size fits: no scan
                with self._seq_lock:
                    cache.refuse_warm(name, 0)
                continue
            rows: dict[bytes, bytes] = {}
            size = 0
            complete = True
            it = family.iter()
            it.seek_to_first()
            while it.valid():
                key, value = it.key(), it.value()
                rows[key] = value
                size += row_bytes(key, value)
                if size > room or self._closing.is_set():
                    complete = False
                    break
                it.next()
            del it
            with self._seq_lock:
                if complete:
                    copied += cache.finish_warm(name, rows, size)
                elif self._closing.is_set():
                    cache.abandon_warm(name)
                    return
                else:
                    cache.refuse_warm(name, size)
        if families:
            log.info(
                "feature cache: %d of %d group version(s) copied in %.1f s, %.1f MiB in memory",
                copied,
                len(families),
                time.monotonic() - started,
                cache.used_bytes / 2**20,
            )

    def close(self) -> None:
        with self._cf_lock:
            self._closing.set()
        for t in [self._warmer, *self._rewarmers]:
            t.join()
        super().close()


class FeatureStore:
    """The shard's online feature partitions, on top of its `ShardStore`."""

    def __init__(self, storage: FeatureStorage) -> None:
        self._storage = storage
        # Why a lock: put is read-compare-write; two puts of the same entity
        # interleaving could let the older row land last.
        self._write_lock = threading.Lock()
        self.markers = ErasureMarkers(storage.iter_prefix(FEATURE_ERASURES, b""))

    def has_group(self, group: VersionRef) -> bool:
        """False when this shard holds no data for the group version at all:
        its values are then `not_computed`, not `entity_not_found`."""
        return self._storage.has_column_family(column_family(group))

    def erase(self, keys: Sequence[bytes], erased_at: int) -> int:
        """Deletes the entities' rows (`entity_key`s) from every feature group
        version here and marks each erased — at `erased_at` (µs), or its newest
        row's stamp if later (a producer's clock ahead) — in one synced batch:
        a row stamped at or before the mark (a replay, a replica's copy) is
        refused, a later one (new activity) accepted. Returns rows deleted."""
        with self._write_lock:  # no put, copy or drop in between
            rows = self._rows_of(keys)
            marks = self.markers.erased(keys, erased_at, [(k, row_times(v)[0]) for _, k, v in rows])
            self._storage.write(puts=self.markers.puts(marks), deletes=[r[:2] for r in rows])
            self.markers.written(marks)
        return len(rows)

    def apply_markers(self, marks: Mapping[bytes, int]) -> int:
        """A peer's erasure markers, where later than ours, with the erasure
        this shard missed: its rows of those entities stamped at or before
        their marker go in the same batch. Returns how many markers changed."""
        with self._write_lock:
            if raised := self.markers.raised(marks):
                rows = self._rows_of(list(raised))
                gone = [(cf, k) for cf, k, v in rows if row_times(v)[0] <= raised[k]]
                self._storage.write(puts=self.markers.puts(raised), deletes=gone)
                self.markers.written(raised)
        return len(raised)

    def _rows_of(self, keys: Sequence[bytes]) -> list[tuple[str, bytes, bytes]]:
        """(family, key, value) of the entities' rows in every group version."""
        found = []
        for cf in self._storage.column_families():
            if not cf.startswith(FEATURE_FAMILY):
                continue
            try:
                values = self._storage.multi_get(cf, list(keys))
            except FailedPrecondition:
                continue  # dropped (its group retired): nothing of it is left
            found += [(cf, k, v) for k, v in zip(keys, values, strict=True) if v is not None]
        return found

    def drop_group(self, group: VersionRef) -> int:
        """Drops every row of a retired group version (its column family);
        returns the bytes RocksDB frees. Under the write lock: a put or a
        copy in progress finishes first, and a later one is refused."""
        with self._write_lock:
            return self._storage.drop_column_family(column_family(group))

    def ensure_group(self, group: VersionRef) -> None:
        """Creates the group's column family (e.g. when the registry announces
        it), so an empty partition reads as `entity_not_found`."""
        self._storage.ensure_column_family(column_family(group))

    def put(self, group: GroupSchema, rows: Sequence[GroupRow]) -> PutAck:
        """`put_batch` of rows (each checked by `GroupSchema.check_row`)."""
        return self.put_batch(group, rows_to_batch(group, rows))

    def put_batch(self, group: GroupSchema, batch: RowBatch) -> PutAck:
        """Writes the rows that are at least as new as what is stored, synced.

        Every row is checked before anything is written (one bad row rejects
        the batch, naming it). Within the batch the newest row per entity
        wins, on a tie the later one — the order a replay repeats.
        """
        batch = check_batch(group, batch)
        if not len(batch):
            return PutAck(0, 0)
        latest = batch.take(newest_per_entity(batch))
        cf = column_family(group.ref)
        keys = [entity_key(k) for k in latest.entities]
        ts, gen = latest.feature_timestamp.tolist(), latest.generated_at.tolist()
        with self._write_lock:
            self._storage.ensure_column_family(cf)
            stored = self._storage.multi_get(cf, keys)
            wins = [
                i
                for i, old in enumerate(stored)
                if old is None or (ts[i], gen[i]) >= row_times(old)
            ]
            if self.markers:
                wins = [i for i in wins if not self.markers.refuses(keys[i], ts[i])]
            if wins:
                rows = latest.take(np.array(wins, dtype=np.int64))
                values = encode_rows(group, rows.feature_timestamp, rows.generated_at, rows.columns)
                self._storage.write(
                    puts=[(cf, keys[i], v) for i, v in zip(wins, values, strict=True)]
                )
        return PutAck(len(wins), len(batch) - len(wins))

    def read(self, group: GroupSchema, keys: Sequence[bytes]) -> StoredRows:
        """Stored rows of `keys` (`entity_key`s) as columns, in `keys` order;
        TTL and staleness are for the resolution (`resolve_columns`)."""
        cf = column_family(group.ref)
        if not keys or not self._storage.has_column_family(cf):
            return decode_rows(group, [None] * len(keys))
        return decode_rows(group, self._storage.serve(cf, list(keys)))

    def multi_get(
        self,
        group: GroupSchema,
        keys: Sequence[EntityKey],
        request_time: int | None = None,
    ) -> list[GroupRow | None]:
        """Stored rows in `keys` order as `GroupRow`s, None where there is
        none (a per-row view for tests and tools; serving reads `read`).

        With `request_time`, rows past the group's TTL read as None — the
        same answer `resolve_value` gives for them (`entity_not_found`).
        """
        stored = self.read(group, [entity_key(k) for k in keys])
        live = np.flatnonzero(stored.present)
        rows = batch_to_rows(
            group,
            RowBatch(
                [keys[i] for i in live.tolist()],
                stored.feature_timestamp[live],
                stored.generated_at[live],
                {name: c.take(live) for name, c in stored.columns.items()},
            ),
        )
        out: list[GroupRow | None] = [None] * len(keys)
        ttl = group.group.ttl_seconds
        for i, r in zip(live.tolist(), rows, strict=True):
            if request_time is None or not is_expired(ttl, r.feature_timestamp, request_time):
                out[i] = r
        return out

    def scan(self, group: GroupSchema, tenant_id: str | None = None) -> Iterator[GroupRow]:
        """Every stored row of the group (of one tenant), in key order."""
        cf = column_family(group.ref)
        if not self._storage.has_column_family(cf):
            return
        prefix = _part(tenant_id) if tenant_id is not None else b""
        for raw_key, raw in self._storage.iter_prefix(cf, prefix):
            key = parse_entity_key(raw_key)
            stored = decode_rows(group, [raw])
            (row,) = batch_to_rows(
                group,
                RowBatch([key], stored.feature_timestamp, stored.generated_at, stored.columns),
            )
            yield row

    def purge_expired(self, group: GroupSchema, now: int) -> int:
        """Deletes rows past the group's TTL; returns how many.

        Invisible to readers by construction: an expired row already reads as
        absent. Candidates are re-checked under the write lock, because a put
        may have refreshed a row since the scan saw it.
        """
        ttl = group.group.ttl_seconds
        cf = column_family(group.ref)
        if ttl is None or not self._storage.has_column_family(cf):
            return 0
        candidates = [
            k
            for k, raw in self._storage.iter_prefix(cf, b"")
            if is_expired(ttl, row_times(raw)[0], now)
        ]
        purged = 0
        for start in range(0, len(candidates), _PURGE_CHUNK):
            chunk = candidates[start : start + _PURGE_CHUNK]
            with self._write_lock:
                current = self._storage.multi_get(cf, chunk)
                dead = [
                    (cf, k)
                    for k, raw in zip(chunk, current, strict=True)
                    if raw is not None and is_expired(ttl, row_times(raw)[0], now)
                ]
                if dead:
                    self._storage.write(deletes=dead)
            purged += len(dead)
        return purged

    def iter_raw(
        self, group: VersionRef, chunk: int = 2048, max_bytes: int = CHUNK_BYTES
    ) -> Iterator[list[tuple[bytes, bytes]]]:
        """Every stored row of the group as (key, value) as stored, in chunks
        of at most `chunk` rows and `max_bytes` (`shard_server.export_chunks`):
        what a replica of its buckets copies (`shard_server.feature_replication`)."""
        cf = column_family(group)
        if not self._storage.has_column_family(cf):
            return
        yield from sized_chunks(self._storage.iter_prefix(cf, b""), pair_size, chunk, max_bytes)

    def apply_raw(self, group: VersionRef, rows: Sequence[tuple[bytes, bytes]]) -> int:
        """Writes copied rows (key, value as stored) newer than the row stored
        (by `(feature_timestamp, generated_at)`, the write rule), so copying
        twice, or a copy crossing a fresh write, changes nothing; on equal
        times the greater bytes win, so two replicas that kept different rows
        of equal times agree once each copied the other's (anti-entropy).
        Returns how many were written."""
        cf = column_family(group)
        with self._write_lock:
            self._storage.ensure_column_family(cf)
            if not rows:
                return 0
            stored = self._storage.multi_get(cf, [k for k, _ in rows])
            wins = [
                (cf, key, value)
                for (key, value), old in zip(rows, stored, strict=True)
                if old is None or (row_times(value), value) > (row_times(old), old)
            ]
            if self.markers:
                wins = [w for w in wins if not self.markers.refuses(w[1], row_times(w[2])[0])]
            if wins:
                self._storage.write(puts=wins)
        return len(wins)
