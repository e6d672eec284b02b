"""Segment lifecycle on a real RocksDB and real files: seal thresholds,
searches and writes while a build runs (interleaved deterministically through
the lifecycle's build events), compaction, release after the last search,
restart from segment files plus the RocksDB tail, corrupt files, the IVF-PQ
template trained once, and the engine's metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from core.domain import AttrType, EntityKey, Metric, VersionRef
from core.filters import Eq
from core.ordering import order_key
from core.scoring import canonical_scores
from registry.model import EmbeddingFamily, IndexKind, IndexVersion
from shard_server.compaction import CompactionPolicy
from shard_server.lifecycle import TEMPLATE_FILE, LifecyclePolicy
from shard_server.maintenance import Maintainer
from shard_server.manifest import MANIFEST, read_manifest
from shard_server.model import Query
from shard_server.partition import IndexPartition
from shard_server.records import Record
from shard_server.sealed_segment import BuildSettings, SealedSegment
from shard_server.segment import SearchOptions
from shard_server.storage import ShardStore

DIM = 16
FAMILY = EmbeddingFamily("f", "item", DIM, Metric.L2)
PARAMS = {
    IndexKind.FLAT: {},
    IndexKind.HNSW: {"M": 8, "ef_construction": 40, "ef_search": 32},
    IndexKind.IVFPQ: {"nlist": 8, "m": 4, "nbits": 4, "nprobe": 8, "refine_factor": 20},
}
POLICY = LifecyclePolicy(
    seal_rows=400,
    seal_age_seconds=30.0,
    build=BuildSettings(min_index_rows=100, summary_centroids=4),
    compaction=CompactionPolicy(min_segments=3, small_rows=5000, deleted_ratio=0.25),
)


def index(kind: IndexKind) -> IndexVersion:
    return IndexVersion(
        f"ix_{kind.value}",
        "v1",
        VersionRef("f", "v1"),
        kind=kind,
        params=PARAMS[kind],
        num_buckets=4,
        attributes={"cat": AttrType.STRING},
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Builds:
    """Build events; with `hold`, each build waits (before building) until released."""

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.started = threading.Event()
        self.release = threading.Event()
        self.log: list[tuple[str, int]] = []

    def build_started(self, operation: str, rows: int) -> None:
        self.log.append((operation, rows))
        self.started.set()
        if self.hold:
            assert self.release.wait(60), "the test never released the build"

    def build_finished(self, operation: str, segment: SealedSegment | None) -> None:
        pass


class Shard:
    """A partition and its store on a directory that outlives reopenings."""

    def __init__(self, path: Path, kind: IndexKind, events: Builds | None = None) -> None:
        self.path, self.kind = path, kind
        self.clock = Clock()
        self.events = events
        self.store: ShardStore | None = None
        self.part: IndexPartition | None = None
        self.vectors: dict[EntityKey, np.ndarray] = {}
        self.sv = 0
        self.open()

    def open(self) -> IndexPartition:
        self.store = ShardStore(self.path / "rocksdb")
        self.part = IndexPartition(
            index(self.kind),
            FAMILY,
            self.store,
            self.path / "segments",
            POLICY,
            self.events,
            self.clock,
        )
        self.part.load()
        return self.part

    def close(self) -> None:
        assert self.store is not None
        self.store.close()

    @property
    def segdir(self) -> Path:
        assert self.part is not None
        return self.part.lifecycle.directory

    def upsert(self, ids: range | list[int], seed: int = 0) -> None:
        rng = np.random.default_rng(seed + 7919 * (ids[0] if len(ids) else 0))
        self.sv += 1
        recs = []
        for i in ids:
            key = EntityKey("t", "item", f"id-{i:05d}")
            vec = rng.normal(size=DIM).astype(np.float32)
            recs.append(Record(key, vec, self.sv, attributes={"cat": "ab"[i % 2]}, bucket=i % 4))
            self.vectors[key] = vec
        assert self.part is not None
        self.part.upsert(recs)

    def delete(self, ids: list[int]) -> None:
        self.sv += 1
        keys = [EntityKey("t", "item", f"id-{i:05d}") for i in ids]
        assert self.part is not None
        self.part.delete(keys, self.sv)
        for key in keys:
            self.vectors.pop(key, None)

    def expected(self, q: np.ndarray, k: int) -> list[tuple[float, EntityKey]]:
        keys = list(self.vectors)
        scores = canonical_scores(Metric.L2, q, np.stack([self.vectors[x] for x in keys]))
        return sorted(zip(scores.tolist(), keys, strict=True), key=lambda t: order_key(*t))[:k]

    def check_exact(self, queries: int = 5, k: int = 10) -> None:
        """Exact search equals brute force over what was acknowledged."""
        assert self.part is not None
        rng = np.random.default_rng(queries)
        for _ in range(queries):
            q = rng.normal(size=DIM).astype(np.float32)
            (res,) = self.part.search([Query(q, k, "t", None, SearchOptions(exact=True))])
            assert [(h.score, h.key) for h in res.hits] == self.expected(q, k)

    def segments(self) -> list[tuple[str, str, int, int]]:
        assert self.part is not None
        return [(s.kind, s.state, len(s), s.deleted_count) for s in self.part.current_segments()]


@pytest.fixture
def shards(tmp_path: Path) -> Iterator[list[Shard]]:
    opened: list[Shard] = []
    yield opened
    for s in opened:
        s.close()


def make(shards: list[Shard], path: Path, kind: IndexKind, events: Builds | None = None) -> Shard:
    s = Shard(path, kind, events)
    shards.append(s)
    return s


def test_seals_at_the_size_and_the_age_threshold(tmp_path: Path, shards: list[Shard]) -> None:
    s = make(shards, tmp_path, IndexKind.HNSW)
    assert s.part is not None
    due = threading.Event()
    s.part.on_seal_due = due.set
    s.upsert(range(0, 150))
    assert not s.part.maintain() and not due.is_set()
    s.clock.now += POLICY.seal_age_seconds
    assert s.part.maintain()  # old enough
    assert s.segments() == [("hnsw", "sealed", 150, 0), ("flat", "growing", 0, 0)]
    s.upsert(range(150, 550))  # 400 rows: big enough
    assert due.is_set()
    assert s.part.maintain()
    assert [k for k, *_ in s.segments()] == ["hnsw", "hnsw", "flat"]
    s.upsert(range(550, 600))  # small and young: nothing to do
    assert not s.part.maintain()
    s.check_exact()


@pytest.mark.parametrize("kind", [IndexKind.HNSW, IndexKind.IVFPQ], ids=lambda k: k.value)
def test_searches_and_writes_proceed_while_a_seal_and_a_compaction_build(
    tmp_path: Path, shards: list[Shard], kind: IndexKind
) -> None:
    builds = Builds(hold=True)
    s = make(shards, tmp_path, kind, builds)
    assert s.part is not None
    s.upsert(range(0, 700))
    for operation, run in (
        ("seal", lambda: s.part.lifecycle.seal(force=True)),
        ("compact", lambda: s.part.lifecycle.compact(force=True)),
    ):
        builds.started.clear()
        builds.release.clear()
        worker = threading.Thread(target=run)
        worker.start()
        assert builds.started.wait(60)
        # The build is held: searches answer (from the old segments) and writes land.
        assert builds.log[-1][0] == operation
        s.check_exact()
        q = np.zeros(DIM, np.float32)
        (res,) = s.part.search([Query(q, 10, "t")])
        assert len(res.hits) == 10
        s.delete(list(range(0, 40)))  # rows inside the segment being built
        s.upsert(list(range(40, 60)), seed=1)  # new versions of rows being built
        s.upsert(range(700, 720))
        s.check_exact()
        builds.release.set()
        worker.join(60)
        builds.hold = operation == "seal"  # the seal below must not wait
        assert not worker.is_alive()
        # After the swap, the writes made during the build still hold.
        s.check_exact()
        sealed = [seg for seg in s.part.current_segments() if isinstance(seg, SealedSegment)]
        assert sum(seg.live_count for seg in sealed) + len(s.part.lifecycle.set.growing) >= len(
            s.vectors
        )
        for seg in sealed:
            for i in range(0, 60):
                row = seg.rows.row_of(EntityKey("t", "item", f"id-{i:05d}"))
                assert row is None or seg.deleted_at(np.array([row]))[0]
    assert [k for k, *_ in s.segments()] == [kind.value, "flat"]
    builds.hold = False
    s.part.flush(compact=True)
    assert [k for k, *_ in s.segments()] == [kind.value, "flat"]
    assert s.part.live_count == len(s.vectors)
    s.check_exact()


def test_replaced_files_are_deleted_only_after_the_last_search_releases_them(
    tmp_path: Path, shards: list[Shard]
) -> None:
    s = make(shards, tmp_path, IndexKind.HNSW)
    assert s.part is not None
    s.upsert(range(0, 300))
    s.part.flush(compact=False)
    s.upsert(range(300, 600))
    s.part.flush(compact=False)
    old = {p.name for p in s.segdir.iterdir()} - {MANIFEST}
    assert len(old) == 6  # two segments: rows, vectors and graph each
    with s.part.lifecycle.set.acquire() as held:  # an in-flight search
        s.part.flush(compact=True)
        manifest = read_manifest(s.segdir)
        assert manifest is not None and len(manifest.segments) == 1
        assert not old & set(manifest.segments[0].files)
        assert all((s.segdir / name).exists() for name in old), "released under a search"
        assert len(held) == 3
    assert not any((s.segdir / name).exists() for name in old)
    assert s.part.lifecycle.set.held() == 0
    s.check_exact()


def test_compaction_drops_deleted_rows_and_merges_small_segments(
    tmp_path: Path, shards: list[Shard]
) -> None:
    s = make(shards, tmp_path, IndexKind.HNSW)
    assert s.part is not None
    for start in (0, 200, 400):
        s.upsert(range(start, start + 200))
        s.part.flush(compact=False)
    assert s.part.maintain()  # three small segments: merged
    assert s.segments() == [("hnsw", "sealed", 600, 0), ("flat", "growing", 0, 0)]
    s.delete(list(range(0, 600, 3)))
    assert s.segments()[0] == ("hnsw", "sealed", 600, 200)
    assert s.part.maintain()  # a third deleted: rewritten
    assert s.segments() == [("hnsw", "sealed", 400, 0), ("flat", "growing", 0, 0)]
    assert not s.part.maintain()
    s.check_exact()


def test_restart_loads_segments_and_rebuilds_only_the_tail(
    tmp_path: Path, shards: list[Shard]
) -> None:
    s = make(shards, tmp_path, IndexKind.HNSW)
    assert s.part is not None
    s.upsert(range(0, 600))
    s.part.flush(compact=False)
    sealed_id = list(s.part.current_segments())[0].id
    s.upsert(range(600, 650))  # the tail
    s.delete(list(range(0, 10)))  # deletes since the manifest
    s.upsert(list(range(10, 15)), seed=3)  # overwrites since the manifest
    builds = REGISTRY.get_sample_value(
        "vecshard_shard_build_seconds_count",
        {"index": "ix_hnsw@v1", "operation": "seal", "kind": "hnsw"},
    )
    s.close()
    part = s.open()
    assert (
        REGISTRY.get_sample_value(
            "vecshard_shard_build_seconds_count",
            {"index": "ix_hnsw@v1", "operation": "seal", "kind": "hnsw"},
        )
        == builds
    ), "restart rebuilt a segment"
    segs = list(part.current_segments())
    assert segs[0].id == sealed_id
    assert s.segments() == [("hnsw", "sealed", 600, 15), ("flat", "growing", 55, 0)]
    assert part.live_count == 640
    s.check_exact()
    q = s.vectors[EntityKey("t", "item", "id-00012")]
    (res,) = part.search([Query(q, 1, "t")])
    assert res.hits[0].key.entity_id == "id-00012" and res.hits[0].score == 0.0


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage", ["flip_rows", "flip_graph", "missing_graph", "garbage_manifest", "orphan"]
)
def test_damaged_segment_files_are_rebuilt_from_rocksdb_with_a_warning(
    tmp_path: Path, shards: list[Shard], caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    s = make(shards, tmp_path, IndexKind.HNSW)
    assert s.part is not None
    s.upsert(range(0, 500))
    s.part.flush(compact=False)
    s.upsert(range(500, 520))
    seg_id = list(s.part.current_segments())[0].id
    s.close()
    if damage == "flip_rows":
        _corrupt(s.segdir / f"{seg_id}.npz")
    elif damage == "flip_graph":
        _corrupt(s.segdir / f"{seg_id}.hnsw")
    elif damage == "missing_graph":
        (s.segdir / f"{seg_id}.hnsw").unlink()
    elif damage == "garbage_manifest":
        (s.segdir / MANIFEST).write_text("{not json")
    else:
        (s.segdir / "seg-99999999.npz").write_bytes(b"left by a crash")
    with caplog.at_level(logging.WARNING, logger="shard_server"):
        part = s.open()
    assert part.live_count == 520
    s.check_exact()
    if damage == "orphan":
        assert not caplog.records and not (s.segdir / "seg-99999999.npz").exists()
        assert s.segments()[0] == ("hnsw", "sealed", 500, 0)
        return
    assert any("rebuilt from RocksDB" in r.getMessage() for r in caplog.records)
    assert s.segments() == [("flat", "growing", 520, 0)]
    manifest = read_manifest(s.segdir)  # rewritten, without the damaged segment
    assert manifest is not None and manifest.segments == ()
    assert {p.name for p in s.segdir.iterdir()} == {MANIFEST}
    part.flush(compact=False)  # and the rows seal again
    assert s.segments()[0] == ("hnsw", "sealed", 520, 0)


def test_ivfpq_template_is_trained_once_and_survives_restarts(
    tmp_path: Path, shards: list[Shard], caplog: pytest.LogCaptureFixture
) -> None:
    labels = {"index": "ix_ivfpq@v1", "operation": "train", "kind": "ivfpq"}
    trained_before = REGISTRY.get_sample_value("vecshard_shard_build_seconds_count", labels) or 0
    s = make(shards, tmp_path, IndexKind.IVFPQ)
    assert s.part is not None
    s.upsert(range(0, 50))
    s.part.flush(compact=False)  # too few rows to train: sealed flat
    assert s.segments()[0][0] == "flat" and s.part.lifecycle.template is None
    s.upsert(range(50, 750))
    s.part.flush(compact=False)
    template = s.part.lifecycle.template
    manifest = read_manifest(s.segdir)
    assert manifest is not None and manifest.template is not None
    digest = manifest.template[TEMPLATE_FILE]
    s.upsert(range(750, 1000))
    s.part.flush(compact=True)
    assert s.part.lifecycle.template is template
    assert [k for k, *_ in s.segments()] == ["ivfpq", "flat"]
    s.close()
    part = s.open()
    s.upsert(range(1000, 1200))
    part.flush(compact=False)
    manifest = read_manifest(s.segdir)
    assert manifest is not None and manifest.template is not None
    assert manifest.template[TEMPLATE_FILE] == digest
    trained = REGISTRY.get_sample_value("vecshard_shard_build_seconds_count", labels)
    assert trained == trained_before + 1
    s.check_exact()
    # A damaged template is trained again, with a warning.
    s.close()
    _corrupt(s.segdir / TEMPLATE_FILE)
    with caplog.at_level(logging.WARNING, logger="shard_server"):
        part = s.open()
    assert any("template" in r.getMessage() for r in caplog.records)
    assert part.lifecycle.template is None
    assert [k for k, *_ in s.segments()] == ["ivfpq", "ivfpq", "flat"]
    s.upsert(range(1200, 1400))
    part.flush(compact=True)
    assert part.lifecycle.template is not None
    assert [k for k, *_ in s.segments()] == ["ivfpq", "flat"]
    s.check_exact()


def test_metrics_report_segments_ingest_builds_and_searches(
    tmp_path: Path, shards: list[Shard]
) -> None:
    s = make(shards, tmp_path, IndexKind.HNSW)
    assert s.part is not None
    label = "ix_hnsw@v1"

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    written = value("vecshard_shard_records_total", index=label, outcome="written")
    s.upsert(range(0, 300))
    s.part.upsert(
        [Record(EntityKey("t", "item", "id-00001"), np.ones(DIM, np.float32), 0, bucket=1)]
    )  # stale
    s.part.flush(compact=False)
    s.upsert(range(300, 320))
    s.delete(list(range(0, 60)))
    s.part.search([Query(np.ones(DIM, np.float32), 5, "t", Eq("cat", "a"))])
    assert value("vecshard_shard_records_total", index=label, outcome="written") == written + 320
    assert value("vecshard_shard_records_total", index=label, outcome="ignored_stale") >= 1
    assert value("vecshard_shard_records_total", index=label, outcome="deleted") >= 60
    assert value("vecshard_shard_segments", index=label, kind="hnsw", state="sealed") == 1
    assert value("vecshard_shard_segment_rows", index=label, kind="hnsw", state="sealed") == 300
    assert value("vecshard_shard_segment_rows", index=label, kind="flat", state="growing") == 20
    assert value("vecshard_shard_tombstone_ratio", index=label) == pytest.approx(60 / 320)
    assert value("vecshard_shard_segment_bytes", index=label, kind="hnsw", state="sealed") > 0
    assert value("vecshard_shard_build_seconds_count", index=label, operation="seal", kind="hnsw")
    # 150 allowed rows: the planner scans them exactly
    assert value("vecshard_shard_segment_search_seconds_count", kind="hnsw", plan="exact")


def test_the_maintenance_thread_seals_when_writes_make_a_seal_due(
    tmp_path: Path, shards: list[Shard]
) -> None:
    class Finished(Builds):
        def __init__(self) -> None:
            super().__init__()
            self.done = threading.Event()

        def build_finished(self, operation: str, segment: SealedSegment | None) -> None:
            self.done.set()

    events = Finished()
    s = make(shards, tmp_path, IndexKind.HNSW, events)
    assert s.part is not None
    part = s.part
    maintainer = Maintainer(lambda: [part], interval_seconds=3600)
    s.part.on_seal_due = maintainer.wake
    maintainer.start()
    try:
        s.upsert(range(0, 450))  # past seal_rows: the write wakes the thread
        assert events.done.wait(60), "no seal happened"
    finally:
        maintainer.stop(60)
    assert [k for k, *_ in s.segments()] == ["hnsw", "flat"]
    s.check_exact()
