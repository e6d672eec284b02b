"""The segments of one index partition over their life: growing → sealing →
sealed → compacted → released.

- `SegmentSet` is the copy-on-write list searches read: one tuple swapped
  atomically (sealed segments + the growing one last), with reference counts
  so a replaced segment is released (its files deleted) only after the last
  search holding it has finished.
- `SegmentLifecycle` applies writes to the set (under the partition's write
  lock), and seals and compacts in the caller's thread — the shard's
  maintenance thread or a Flush — with builds outside every lock that
  searches or writes take: queries never wait for a build.

Order of a swap (seal or compaction): build the new segment from a snapshot
of the old rows and write its files; under the write lock copy onto it the
rows deleted since the snapshot and swap it in; write the manifest; only then
retire the old segments. A crash anywhere leaves a manifest whose files
exist, and RocksDB decides which of their rows are live.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from core.domain import EntityKey
from core.durable_files import write_file_atomic
from registry.index_params import IndexParams, IvfPqParams
from registry.model import EmbeddingFamily, IndexKind, IndexVersion
from shard_server import metrics
from shard_server.compaction import CompactionPolicy, SegmentStat, plan_compaction
from shard_server.growing_segment import GrowingSegment
from shard_server.ivfpq_segment import IvfPqTemplate
from shard_server.manifest import Manifest, SegmentEntry, write_manifest
from shard_server.memory import release_free_memory
from shard_server.planner import PlannerPolicy
from shard_server.quality_metrics import INDEXING_LAG
from shard_server.row_batch import RowBatch
from shard_server.sealed_segment import BuildSettings, SealedSegment, build_sealed
from shard_server.segment import Segment
from shard_server.segment_files import save_segment
from shard_server.segment_rows import SegmentRows

log = logging.getLogger(__name__)

TEMPLATE_FILE = "ivfpq-template.faiss"


@dataclass(frozen=True)
class LifecyclePolicy:
    # Seal the growing segment at this many rows (deleted ones included) ...
    seal_rows: int = 20_000
    # ... or this long after its first write.
    seal_age_seconds: float = 60.0
    build: BuildSettings = field(default_factory=BuildSettings)
    compaction: CompactionPolicy = field(default_factory=CompactionPolicy)
    planner: PlannerPolicy = field(default_factory=PlannerPolicy)

    def __post_init__(self) -> None:
        if self.seal_rows < 1:
            raise ValueError("seal_rows must be ≥ 1")
        if self.seal_age_seconds <= 0:
            raise ValueError("seal_age_seconds must be > 0")


class LifecycleEvents(Protocol):
    """Observer of builds (logging, tests that interleave with a build)."""

    def build_started(self, operation: str, rows: int) -> None: ...

    def build_finished(self, operation: str, segment: SealedSegment | None) -> None: ...


class SegmentSet:
    def __init__(self, sealed: Sequence[Segment], growing: GrowingSegment) -> None:
        self._view: tuple[Segment, ...] = (*sorted(sealed, key=lambda s: s.id), growing)
        self._lock = threading.Lock()
        self._refs: dict[int, int] = {}
        self._retired: dict[int, Segment] = {}

    @property
    def view(self) -> tuple[Segment, ...]:
        return self._view

    @property
    def growing(self) -> GrowingSegment:
        growing = self._view[-1]
        assert isinstance(growing, GrowingSegment)
        return growing

    @property
    def sealed(self) -> tuple[Segment, ...]:
        """Sealed segments and frozen growing ones being sealed."""
        return self._view[:-1]

    @contextlib.contextmanager
    def acquire(self) -> Iterator[tuple[Segment, ...]]:
        """The current segments, held until the block ends."""
        with self._lock:
            view = self._view
            for s in view:
                self._refs[id(s)] = self._refs.get(id(s), 0) + 1
        try:
            yield view
        finally:
            done = []
            with self._lock:
                for s in view:
                    left = self._refs[id(s)] - 1
                    if left:
                        self._refs[id(s)] = left
                    else:
                        del self._refs[id(s)]
                        if id(s) in self._retired:
                            done.append(self._retired.pop(id(s)))
            for s in done:
                s.release()

    def swap(
        self,
        remove: Sequence[Segment],
        add: Sequence[Segment],
        growing: GrowingSegment | None = None,
    ) -> None:
        """Replaces segments in one step (callers hold the partition write lock)."""
        with self._lock:
            gone = {id(s) for s in remove}
            sealed = [s for s in self._view[:-1] if id(s) not in gone] + list(add)
            sealed.sort(key=lambda s: s.id)
            self._view = (*sealed, growing if growing is not None else self._view[-1])

    def retire(self, segments: Sequence[Segment]) -> None:
        """Releases swapped-out segments now, or when their last search ends."""
        done = []
        with self._lock:
            for s in segments:
                if id(s) in self._refs:
                    self._retired[id(s)] = s
                else:
                    done.append(s)
        for s in done:
            s.release()

    def held(self) -> int:
        """Segments some search still holds (for tests and diagnostics)."""
        with self._lock:
            return len(self._refs)


class SegmentLifecycle:
    def __init__(
        self,
        index: IndexVersion,
        family: EmbeddingFamily,
        params: IndexParams,
        directory: Path,
        policy: LifecyclePolicy,
        write_lock: threading.Lock,
        events: LifecycleEvents | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index = index
        self.family = family
        self.params = params
        self.directory = directory
        self.policy = policy
        self.events = events
        self._clock = clock
        self._write_lock = write_lock
        # Serializes seals, compactions and manifest writes of this partition.
        self._maintain_lock = threading.Lock()
        self._retired = False  # archived: no seal or compaction writes files
        self._id_lock = threading.Lock()
        self._next_id = 1
        self.template: IvfPqTemplate | None = None
        self._template_files: dict[str, str] = {}
        self.set = SegmentSet([], self._new_growing())
        self.label = str(index.ref)

    # -- start-up -----------------------------------------------------------

    def start(
        self,
        sealed: Sequence[SealedSegment],
        template: IvfPqTemplate | None,
        template_files: dict[str, str],
        next_id: int,
        rewrite_manifest: bool,
    ) -> None:
        """Installs what recovery loaded (before the partition serves)."""
        with self._id_lock:
            self._next_id = max(self._next_id, next_id)
        self.template, self._template_files = template, dict(template_files)
        self.set = SegmentSet(sealed, self._new_growing())
        if rewrite_manifest:
            with self._maintain_lock:
                self._write_manifest()

    def _new_id(self) -> str:
        with self._id_lock:
            n = self._next_id
            self._next_id += 1
        return f"seg-{n:08d}"

    def _new_growing(self) -> GrowingSegment:
        return GrowingSegment(
            self._new_id(),
            self.family.dimension,
            self.family.metric,
            self.index.attributes,
            clock=self._clock,
        )

    # -- writes (the caller holds the write lock) ---------------------------

    def extend_schema(self, index: IndexVersion) -> None:
        """Attributes added to the index version (a metadata backfill): the
        growing segment and every later one carry them; sealed segments
        answer "missing" for them until their rows are written again."""
        added = {n: k for n, k in index.attributes.items() if n not in self.index.attributes}
        self.index = index
        self.set.growing.extend_schema(added)

    def upsert(self, rows: RowBatch, seq: int | np.ndarray) -> None:
        """New rows (keys distinct) in the growing segment first, then their
        old rows masked: a racing search sees the new version or both
        (deduplicated by sequence), never neither."""
        self.set.growing.append(
            rows.keys,
            rows.vectors,
            rows.tenants,
            rows.tenant_names,
            rows.buckets,
            np.broadcast_to(np.asarray(seq, dtype=np.int64), (len(rows),)),
            rows.columns,
        )
        for seg in self.set.sealed:
            seg.delete_many(rows.keys)

    def delete(self, key: EntityKey) -> None:
        for seg in self.set.view:
            seg.delete(key)

    def seal_due(self) -> bool:
        g = self.set.growing
        if not len(g):
            return False
        if len(g) >= self.policy.seal_rows:
            return True
        return g.first_write is not None and (
            self._clock() - g.first_write >= self.policy.seal_age_seconds
        )

    # -- maintenance --------------------------------------------------------

    def retire(self) -> None:
        """Waits for a seal or compaction in progress; none runs after. Their
        files written after the version's directory was dropped would stay
        for good (a restart skips a version without its directory)."""
        with self._maintain_lock:
            self._retired = True

    def maintain(self) -> bool:
        """One step of background work; True if something was done."""
        return self.seal() or self.compact()

    def seal(self, force: bool = False) -> bool:
        """Seals the growing segment when due (or forced, if it has rows).
        A frozen segment whose earlier build failed is retried first."""
        with self._maintain_lock:
            if self._retired:
                return False
            frozen = [s for s in self.set.sealed if isinstance(s, GrowingSegment)]
            if frozen:
                target = frozen[0]
            else:
                with self._write_lock:
                    target = self.set.growing
                    if not len(target) or not (force or self.seal_due()):
                        return False
                    target.freeze()
                    self.set.swap([], [target], growing=self._new_growing())
            rows, src = target.live_rows()
            seg = self._build("seal", rows)
            with self._write_lock:
                if seg is not None:
                    seg.mark_deleted(target.deleted_at(src))
                self.set.swap([target], [seg] if seg is not None else [])
            self._write_manifest()
            if target.first_write is not None:
                INDEXING_LAG.labels(self.label).observe(self._clock() - target.first_write)
        self.set.retire([target])
        release_free_memory()  # the growing segment's arrays and the build's copies
        return True

    def _stat(self, seg: SealedSegment) -> SegmentStat:
        return SegmentStat(
            seg.id,
            len(seg),
            seg.deleted_count,
            upgradable=seg.kind == "flat" and self._indexable(seg.live_count),
        )

    def _indexable(self, rows: int) -> bool:
        if self.index.kind is IndexKind.FLAT or rows < self.policy.build.min_index_rows:
            return False
        if isinstance(self.params, IvfPqParams):
            return self.template is not None or rows >= self.params.min_train_rows
        return True

    def compact(self, force: bool = False) -> bool:
        """Merges segments the compaction policy picks (all of them if forced)."""
        with self._maintain_lock:
            if self._retired:
                return False
            sealed = [s for s in self.set.sealed if isinstance(s, SealedSegment)]
            ids = set(
                plan_compaction([self._stat(s) for s in sealed], self.policy.compaction, force)
            )
            if not ids:
                return False
            group = [s for s in sealed if s.id in ids]
            live = [s.live_row_numbers() for s in group]
            rows = SegmentRows.concat(
                self.index.attributes, [s.rows.take(n) for s, n in zip(group, live, strict=True)]
            )
            seg = self._build("compact", rows)
            with self._write_lock:
                if seg is not None:
                    seg.mark_deleted(
                        np.concatenate([s.deleted_at(n) for s, n in zip(group, live, strict=True)])
                    )
                self.set.swap(group, [seg] if seg is not None else [])
            self._write_manifest()
        self.set.retire(group)
        release_free_memory()
        return True

    def _build(self, operation: str, rows: SegmentRows) -> SealedSegment | None:
        if self.events is not None:
            self.events.build_started(operation, len(rows))
        seg = None
        if len(rows):
            self._ensure_template(rows)
            start = time.perf_counter()
            seg = build_sealed(
                self._new_id(),
                rows,
                self.family.metric,
                self.params,
                self.template,
                self.policy.build,
                self.policy.planner,
            )
            save_segment(self.directory, seg)
            metrics.BUILD_SECONDS.labels(self.label, operation, seg.kind).observe(
                time.perf_counter() - start
            )
            log.info(
                "%s %s: built %s segment %s with %d rows in %.2fs",
                operation,
                self.label,
                seg.kind,
                seg.id,
                len(rows),
                time.perf_counter() - start,
            )
        if self.events is not None:
            self.events.build_finished(operation, seg)
        return seg

    def _ensure_template(self, rows: SegmentRows) -> None:
        """Trains the IVF-PQ quantizer and codebooks once per index version,
        on the first rows numerous enough, and persists them."""
        p = self.params
        if (
            not isinstance(p, IvfPqParams)
            or self.template is not None
            or len(rows) < max(p.min_train_rows, self.policy.build.min_index_rows)
        ):
            return
        start = time.perf_counter()
        template = IvfPqTemplate.train(
            rows.vectors, self.family.metric, p, self.policy.build.threads
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        digest = write_file_atomic(self.directory / TEMPLATE_FILE, template.save)
        self.template, self._template_files = template, {TEMPLATE_FILE: digest}
        seconds = time.perf_counter() - start
        metrics.BUILD_SECONDS.labels(self.label, "train", "ivfpq").observe(seconds)
        log.info(
            "trained IVF-PQ template of %s on %d rows in %.2fs", self.label, len(rows), seconds
        )

    def _write_manifest(self) -> None:
        sealed = [s for s in self.set.sealed if isinstance(s, SealedSegment)]
        self.directory.mkdir(parents=True, exist_ok=True)
        write_manifest(
            self.directory,
            Manifest(
                index=str(self.index.ref),
                kind=self.index.kind.value,
                params=dict(self.index.params),
                dimension=self.family.dimension,
                metric=self.family.metric.value,
                next_segment=self._next_id,
                sequence=max((s.max_seq for s in sealed), default=0),
                template=self._template_files,
                segments=tuple(
                    SegmentEntry(s.id, s.kind, len(s), s.max_seq, s.files) for s in sealed
                ),
            ),
        )
