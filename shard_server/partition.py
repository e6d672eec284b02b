"""One index version's data on this shard: the durable records in RocksDB and
the segments that search them, kept in step under one write lock.

Write semantics: an upsert replaces (one live vector per key, across every
segment); a write whose source_version is older than the stored one (or than a
delete's) is ignored and counted; replaying the same batch is idempotent; the
batch is synced to the WAL before any segment sees it, so whatever a search
can return is durable, and a delete masks the key's row before it is
acknowledged, so it takes effect at once and, being a RocksDB tombstone,
survives sealing, compaction and restarts.

Search: every segment answers on its own (exact, index, or index with the
filter pushed down, as the planner decides) and `aggregate` merges them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from core.domain import EntityKey, Metric
from core.errors import FailedPrecondition, InvalidArgument
from core.limits import DEFAULT_LIMITS, Limits
from core.record_columns import RecordColumns
from registry.index_params import parse_index_params
from registry.model import EmbeddingFamily, IndexVersion
from shard_server import metrics
from shard_server import records as rec
from shard_server.lifecycle import LifecycleEvents, LifecyclePolicy, SegmentLifecycle
from shard_server.model import (
    Lookup,
    LookupStatus,
    Query,
    SearchResult,
    WriteResult,
)
from shard_server.partition_search import search_partition
from shard_server.recovery import records_to_rebuild, recover_segments
from shard_server.row_batch import RowBatch, latest_rows, prepare_rows
from shard_server.segment import Segment
from shard_server.storage import (
    RECORDS,
    SEQUENCES,
    TOMBSTONES,
    ShardStore,
)
from shard_server.summary import SegmentSummary, merge_bucket_stats
from shard_server.summary_leases import NewRows, SummaryLeases
from shard_server.version_rules import applying, copy_applies, delete_applies

log = logging.getLogger(__name__)


def _new_rows(rows: RowBatch) -> NewRows:
    return NewRows(
        rows.vectors, rows.buckets, rows.tenants, rows.tenant_names, rows.numeric_columns()
    )


class IndexPartition:
    def __init__(
        self,
        index: IndexVersion,
        family: EmbeddingFamily,
        store: ShardStore,
        segments_dir: Path,
        policy: LifecyclePolicy | None = None,
        events: LifecycleEvents | None = None,
        clock: Callable[[], float] = time.monotonic,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.index = index
        self.limits = limits
        self.family = family
        self.store = store
        try:
            self.params = parse_index_params(index.kind, index.params, family.dimension)
        except InvalidArgument as exc:
            raise FailedPrecondition(f"index version {index.ref}: {exc.message}") from None
        self._prefix = rec.index_prefix(index.ref)
        self._write_lock = threading.Lock()
        self.retired = False  # archived and being dropped (`retire`)
        self._clock = clock
        # Summaries handed to coordinators, and the writes that must wait for
        # them to expire (shard_server.summary_leases).
        self.leases = SummaryLeases(clock)
        self.tombstones = 0
        self.lifecycle = SegmentLifecycle(
            index,
            family,
            self.params,
            segments_dir,
            policy or LifecyclePolicy(),
            self._write_lock,
            events,
            clock,
        )
        # Called after writes that make a seal due (the shard's maintenance thread).
        self.on_seal_due: Callable[[], None] = lambda: None
        metrics.watch(self)

    @property
    def normalize(self) -> bool:
        return self.family.normalize or self.family.metric is Metric.COSINE

    @property
    def metrics_label(self) -> str:
        return str(self.index.ref)

    def extend_schema(self, index: IndexVersion) -> None:
        """Filterable attributes added to this index version in the registry."""
        with self._write_lock:
            self.index = index
            self.lifecycle.extend_schema(index)

    def current_segments(self) -> Iterable[Segment]:
        return self.lifecycle.set.view

    def load(self) -> int:
        """Opens the partition at start-up: loads persisted segments, masks
        their rows that RocksDB (the source of truth) no longer holds in that
        version, and rebuilds only the rest — the growing tail — from RocksDB.
        Returns the number of live records."""
        found = recover_segments(
            self.lifecycle.directory, self.index, self.family, self.params, self.lifecycle.policy
        )
        tail = records_to_rebuild(self.store, self._prefix, found)
        self.lifecycle.start(
            found.segments,
            found.template,
            found.template_files,
            found.next_id,
            rewrite_manifest=found.damaged,
        )
        dim = self.family.dimension
        for start in range(0, len(tail), 4096):
            chunk = tail[start : start + 4096]
            rows = RowBatch.from_records([r for _, r in chunk], dim)
            self.lifecycle.upsert(rows, np.array([seq for seq, _ in chunk], dtype=np.int64))
        self.tombstones = sum(1 for _ in self.store.iter_prefix(TOMBSTONES, self._prefix))
        if tail:
            log.info(
                "%s: %d records from %d segment(s), %d rebuilt from RocksDB",
                self.index.ref,
                sum(s.live_count for s in found.segments),
                len(found.segments),
                len(tail),
            )
        return sum(s.live_count for s in found.segments) + len(tail)

    def upsert(self, records: Sequence[rec.Record], writer: str = "") -> WriteResult:
        """Per-record writes (`ShardService.Upsert`): the same path as columns."""
        return self.write(RowBatch.from_records(records, self.family.dimension), writer)

    def upsert_columns(
        self, tenant_id: str, records: RecordColumns, buckets: np.ndarray, writer: str = ""
    ) -> WriteResult:
        """Rows of one tenant as columns (`ShardService.UpsertColumns`)."""
        return self.write(RowBatch.from_columns(tenant_id, records, buckets), writer)

    def write(self, batch: RowBatch, writer: str = "") -> WriteResult:
        """Checks every row before anything is written (one bad row rejects
        the batch, naming its key), keeps the newest version of each key,
        applies the version rules against RocksDB and writes what applies in
        one batch synced to the WAL, then appends it to the growing segment.
        `writer` names the coordinator that sent the write (summary leases)."""
        ready = prepare_rows(batch, self.family, self.index, self.limits)
        raw_keys = rec.row_keys(self._prefix, ready.keys)
        keep = latest_rows(raw_keys, ready.source_versions)
        if keep.shape[0] != len(ready):
            ready = ready.take(keep)
            raw_keys = [raw_keys[i] for i in keep.tolist()]
        with self._write_lock:
            self._check_live()
            tombs = self.store.multi_get(TOMBSTONES, raw_keys)
            applies_now = applying(
                ready.source_versions, self.store.multi_get(RECORDS, raw_keys), tombs
            )
            rows = np.flatnonzero(applies_now)
            if rows.shape[0] != len(ready):
                ready = ready.take(rows)
                picked = rows.tolist()
                raw_keys = [raw_keys[i] for i in picked]
                tombs = [tombs[i] for i in picked]
            revived = [k for k, t in zip(raw_keys, tombs, strict=True) if t is not None]
            values = rec.encode_rows(
                ready.source_versions,
                ready.created_at,
                ready.norms if ready.norms is not None else np.zeros(len(ready)),
                ready.buckets,
                ready.model_versions,
                rec.attributes_json(ready.columns, len(ready)),
                ready.vectors,
            )
            seq = self.store.write_columns(
                puts=[(RECORDS, raw_keys, values)],
                deletes=[(TOMBSTONES, revived)],
                stamps=[(SEQUENCES, raw_keys)],
            )
            self.lifecycle.upsert(ready, seq)
            self.tombstones -= len(revived)
            due = self.lifecycle.seal_due()
            hold = self.leases.hold_until(_new_rows(ready), writer)
        self._wait_for_leases(hold)
        ignored = len(keep) - len(ready)
        metrics.RECORDS.labels(self.metrics_label, "written").inc(len(ready))
        metrics.RECORDS.labels(self.metrics_label, "ignored_stale").inc(ignored)
        if due:
            self.on_seal_due()
        return WriteResult(len(ready), ignored, seq)

    def delete(
        self,
        keys: Sequence[EntityKey],
        source_version: int,
        still: Callable[[bytes], bool] | None = None,
        mark: bool = True,
    ) -> WriteResult:
        """`still`, if given, is asked of each stored record under the write
        lock: a record it refuses is kept. Expiry re-checks a record's age
        that way, and leaves no tombstone (`mark`): an expired key is missing,
        not deleted, and a late copy of it is as expired as the original."""
        unique = list(dict.fromkeys(keys))
        raw_keys = [rec.keyed(self._prefix, k) for k in unique]
        with self._write_lock:
            self._check_live()
            stored = self.store.multi_get(RECORDS, raw_keys)
            tombs = self.store.multi_get(TOMBSTONES, raw_keys)
            puts, deletes, removed = [], [], []
            new_tombs = 0
            for raw_key, key, old, tomb in zip(raw_keys, unique, stored, tombs, strict=True):
                if not delete_applies(source_version, old, tomb):
                    continue
                if still is not None and (old is None or not still(old)):
                    continue
                if mark:
                    new_tombs += tomb is None
                    puts.append((TOMBSTONES, raw_key, rec.encode_tombstone(source_version)))
                if old is not None:
                    deletes.append((RECORDS, raw_key))
                    deletes.append((SEQUENCES, raw_key))
                    removed.append(key)
            seq = self.store.write(puts=puts, deletes=deletes)
            for key in removed:
                self.lifecycle.delete(key)
            self.tombstones += new_tombs
        metrics.RECORDS.labels(self.metrics_label, "deleted").inc(len(removed))
        return WriteResult(len(removed), 0, seq)

    def apply_replicated(
        self, records: Sequence[tuple[bytes, bytes]], tombstones: Sequence[tuple[bytes, int]]
    ) -> int:
        """Applies a peer's records and tombstones with the same version rules
        as client writes (newer wins; a delete wins over its version and older),
        byte for byte. Idempotent: applying the same export twice changes nothing."""
        applied = 0
        hold = 0.0
        with self._write_lock:
            self._check_live()
            if records:
                raw_keys = [k for k, _ in records]
                stored = self.store.multi_get(RECORDS, raw_keys)
                tombs = self.store.multi_get(TOMBSTONES, raw_keys)
                picked = [
                    (k, v, tomb is not None)
                    for (k, v), old, tomb in zip(records, stored, tombs, strict=True)
                    if copy_applies(v, old, tomb)
                ]
                take = [(k, v) for k, v, _ in picked]
                if take:
                    self.tombstones -= sum(revived for _, _, revived in picked)
                    seq = self.store.write(
                        puts=[(RECORDS, k, v) for k, v in take],
                        deletes=[(TOMBSTONES, k) for k, _ in take],
                        stamps=[(SEQUENCES, k) for k, _ in take],
                    )
                    taken = RowBatch.from_records(
                        [rec.decode_record(rec.parse_record_key(k)[1], v) for k, v in take],
                        self.family.dimension,
                    )
                    self.lifecycle.upsert(taken, seq)
                    hold = max(hold, self.leases.hold_until(_new_rows(taken)))
                    applied += len(take)
            if tombstones:
                raw_keys = [k for k, _ in tombstones]
                stored = self.store.multi_get(RECORDS, raw_keys)
                mine = self.store.multi_get(TOMBSTONES, raw_keys)
                puts, deletes, removed = [], [], []
                for (k, version), old, tomb in zip(tombstones, stored, mine, strict=True):
                    if not delete_applies(version, old, tomb):
                        continue
                    self.tombstones += tomb is None
                    puts.append((TOMBSTONES, k, rec.encode_tombstone(version)))
                    if old is not None:
                        deletes += [(RECORDS, k), (SEQUENCES, k)]
                        removed.append(rec.parse_record_key(k)[1])
                if puts:
                    self.store.write(puts=puts, deletes=deletes)
                    for key in removed:
                        self.lifecycle.delete(key)
                    applied += len(puts)
        self._wait_for_leases(hold)
        return applied

    def retire(self) -> None:
        """Archived: a write, copy, seal or compaction in progress finishes
        before the data is dropped; a later one is refused (it would leave
        rows or files that nothing deletes again)."""
        with self._write_lock:
            self.retired = True
        self.lifecycle.retire()

    def _check_live(self) -> None:
        if self.retired:  # its data is being deleted: a write would outlive it
            raise FailedPrecondition(f"index version {self.index.ref} is archived; not written")

    def serve_summaries(
        self, lease_seconds: float, holder: str = ""
    ) -> tuple[list[tuple[Segment, SegmentSummary | None]], int | None]:
        """Every segment with its summary, recorded as handed to `holder`, who
        may skip this shard on it for `lease_seconds`, and the write sequence
        they cover. Under the write lock, so every write is either in the
        summary or checked against it, and every write of this index version
        at or before that sequence is in it: a search that skipped the shard
        on it reads the shard at that sequence on its next pages
        (coordinator.cursor). During the quiet period after a write that
        waited, no summaries (never skipped) and no sequence."""
        with self._write_lock:
            if not self.leases.may_serve():
                return [(seg, None) for seg in self.current_segments()], None
            sequence = self.store.sequence
            out = [(seg, seg.summary()) for seg in self.current_segments()]
            # Recorded even with no segments: "empty" is a summary too (a
            # coordinator skips an empty shard), and the first write escapes it.
            dim = self.family.dimension
            self.leases.served(
                np.concatenate([np.zeros((0, dim), np.float32), *(s.centroids for _, s in out)]),
                np.concatenate([np.zeros(0, np.float32), *(s.radii for _, s in out)]),
                merge_bucket_stats(s.buckets for _, s in out),
                lease_seconds,
                holder,
            )
            return [(seg, s) for seg, s in out], sequence

    def _wait_for_leases(self, until: float) -> None:
        """Holds an acknowledgement (never the data: it is durable and
        searchable already) until the summaries it escapes have expired."""
        delay = until - self._clock()
        if delay > 0:
            metrics.LEASE_WAITS.labels(self.metrics_label).inc()
            metrics.LEASE_WAIT_SECONDS.labels(self.metrics_label).observe(delay)
            time.sleep(delay)

    def get(self, keys: Sequence[EntityKey]) -> list[Lookup]:
        raw_keys = [rec.keyed(self._prefix, k) for k in keys]
        stored = self.store.multi_get(RECORDS, raw_keys)
        missing = [rk for rk, v in zip(raw_keys, stored, strict=True) if v is None]
        tombs = dict(zip(missing, self.store.multi_get(TOMBSTONES, missing), strict=True))
        out = []
        for key, raw_key, value in zip(keys, raw_keys, stored, strict=True):
            if value is not None:
                out.append(Lookup(key, LookupStatus.FOUND, rec.decode_record(key, value)))
            elif tombs.get(raw_key) is not None:
                out.append(Lookup(key, LookupStatus.DELETED))
            else:
                out.append(Lookup(key, LookupStatus.MISSING))
        return out

    def search(self, queries: Sequence[Query]) -> list[SearchResult]:
        """Every query of a batch, answered as if it came alone
        (`shard_server.partition_search`)."""
        return search_partition(self, queries)

    # -- maintenance (the shard's maintenance thread, or Flush) -------------

    def maintain(self) -> bool:
        return self.lifecycle.maintain()

    def flush(self, compact: bool) -> None:
        """Seals the growing segment now and, if asked, merges all sealed ones."""
        self.lifecycle.seal(force=True)
        if compact:
            self.lifecycle.compact(force=True)

    @property
    def live_count(self) -> int:
        return sum(len(s) - s.deleted_count for s in self.lifecycle.set.view)
