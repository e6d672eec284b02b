"""The storage engine on a real RocksDB, for every segment kind, on plain data.

Properties (hypothesis) over random interleavings of upserts, deletes, seals
and compactions: every result satisfies tenant and filter, no key appears
twice, a deleted key never appears, scores are the canonical scores of the
key's current vector, results hold min(k, matching rows) hits, and exact
search equals brute force (ties included). Then recall on clustered data,
the planner under selective filters, and skip_rerank.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain import AttrType, AttrValue, EntityKey, Metric, VersionRef
from core.errors import FailedPrecondition, InvalidArgument
from core.filters import And, Eq, Filter, Not, Or, Range, matches
from core.ordering import order_key
from core.scoring import canonical_scores, normalized, prepare_query
from registry.index_params import HnswParams, IvfPqParams, parse_index_params
from registry.model import EmbeddingFamily, IndexKind, IndexVersion
from shard_server.compaction import CompactionPolicy
from shard_server.lifecycle import LifecyclePolicy
from shard_server.model import Query
from shard_server.partition import IndexPartition
from shard_server.planner import PlannerPolicy
from shard_server.records import Record
from shard_server.sealed_segment import BuildSettings
from shard_server.segment import SearchOptions
from shard_server.storage import ShardStore

DIM = 8
SCHEMA = {"cat": AttrType.STRING, "price": AttrType.FLOAT, "tags": AttrType.STRING_LIST}
TENANTS = ("t0", "t1")
PARAMS = {
    IndexKind.FLAT: {},
    IndexKind.HNSW: {"M": 4, "ef_construction": 16, "ef_search": 8},
    IndexKind.IVFPQ: {"nlist": 4, "m": 2, "nbits": 2, "nprobe": 1, "refine_factor": 2},
}
BASE = 200  # rows loaded before the random operations (enough to train IVF-PQ)


def family(metric: Metric) -> EmbeddingFamily:
    return EmbeddingFamily("f", "item", DIM, metric)


def index(kind: IndexKind, params: dict[str, int] | None = None) -> IndexVersion:
    return IndexVersion(
        f"ix_{kind.value}",
        "v1",
        VersionRef("f", "v1"),
        kind=kind,
        params=PARAMS[kind] if params is None else params,
        num_buckets=4,
        attributes=SCHEMA,
        max_k=50,
    )


def policy(force_index: bool, seal_rows: int = 40) -> LifecyclePolicy:
    """Tiny thresholds; `force_index` makes the planner use indexes on any size."""
    return LifecyclePolicy(
        seal_rows=seal_rows,
        seal_age_seconds=3600,
        build=BuildSettings(min_index_rows=16, summary_centroids=4),
        compaction=CompactionPolicy(min_segments=2, small_rows=10_000, deleted_ratio=0.3),
        planner=PlannerPolicy(exact_below_selectivity=0.0, exact_below_rows=0)
        if force_index
        else PlannerPolicy(),
    )


class Model:
    """What the partition must hold: key → (prepared vector, attributes)."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric
        self.live: dict[EntityKey, tuple[np.ndarray, dict[str, AttrValue]]] = {}
        self.deleted: set[EntityKey] = set()

    def prepared(self, v: np.ndarray) -> np.ndarray:
        return normalized(v) if self.metric is Metric.COSINE else v

    def brute_force(self, q: np.ndarray, tenant: str, flt: Filter | None, k: int):
        rows = [
            (key, vec)
            for key, (vec, attrs) in self.live.items()
            if key.tenant_id == tenant and matches(flt, attrs)
        ]
        if not rows:
            return []
        scores = canonical_scores(self.metric, q, np.stack([v for _, v in rows]))
        ranked = sorted(
            zip(scores.tolist(), [key for key, _ in rows], strict=True),
            key=lambda t: order_key(*t),
        )
        return ranked[:k]


def record(rng: np.random.Generator, i: int, tenant: str, sv: int) -> Record:
    attrs: dict[str, AttrValue] = {}
    if rng.random() < 0.9:
        attrs["cat"] = "abc"[int(rng.integers(0, 3))]
    if rng.random() < 0.9:
        attrs["price"] = float(rng.integers(0, 20))
    if rng.random() < 0.5:
        attrs["tags"] = tuple(
            sorted({"x", "y", "z"} & {"xyz"[int(j)] for j in rng.integers(0, 3, 2)})
        )
    vec = rng.integers(-3, 4, size=DIM).astype(np.float32)
    if not vec.any():
        vec[0] = 1.0
    return Record(
        EntityKey(tenant, "item", f"id-{i:04d}"),
        vec,
        sv,
        attributes=attrs,
        bucket=i % 4,
    )


FILTERS: list[Filter | None] = [
    None,
    Eq("cat", "a"),
    Range("price", gte=3.0, lt=12.0),
    Not(Eq("cat", "b")),
    Or((Eq("tags", "x"), Range("price", lt=2.0))),
    And((Eq("cat", "c"), Range("price", gte=10.0))),
]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), st.lists(st.integers(0, 260), min_size=1, max_size=30)),
        st.tuples(st.just("delete"), st.lists(st.integers(0, 260), min_size=1, max_size=20)),
        st.tuples(st.just("seal"), st.just([])),
        st.tuples(st.just("compact"), st.just([])),
        st.tuples(st.just("maintain"), st.just([])),
    ),
    max_size=10,
)


def check_results(
    part: IndexPartition, model: Model, rng: np.random.Generator, exact: bool
) -> set[str]:
    """Checks one query per filter and tenant; returns the plans segments used."""
    plans: set[str] = set()
    for flt in FILTERS:
        for tenant in TENANTS:
            k = int(rng.integers(1, 12))
            raw = rng.integers(-3, 4, size=DIM).astype(np.float32) + 0.25
            # Prepared as the partition prepares it (normalizing twice could move an ulp).
            q = prepare_query(raw, model.metric, model.metric is Metric.COSINE)
            query = Query(raw, k, tenant, flt, SearchOptions(exact=exact))
            (res,) = part.search([query])
            plans.update(res.plans)
            want = model.brute_force(q, tenant, flt, k)
            keys = [h.key for h in res.hits]
            assert len(keys) == len(set(keys)), "a key appeared twice"
            assert not set(keys) & model.deleted, "a deleted key appeared"
            assert len(keys) == len(want), "fewer results than matching rows"
            for h in res.hits:
                vec, attrs = model.live[h.key]
                assert h.key.tenant_id == tenant and matches(flt, attrs)
                assert h.score == canonical_scores(model.metric, q, vec[None])[0]
            assert [order_key(h.score, h.key) for h in res.hits] == sorted(
                order_key(h.score, h.key) for h in res.hits
            )
            if exact or part.index.kind is IndexKind.FLAT:
                assert [(h.score, h.key) for h in res.hits] == want
    return plans


@pytest.mark.parametrize("kind", list(IndexKind), ids=lambda k: k.value)
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    metric=st.sampled_from(list(Metric)),
    ops=operations,
    seed=st.integers(0, 2**32 - 1),
    force_index=st.booleans(),
)
def test_results_satisfy_filter_never_repeat_or_resurrect_a_key(
    kind: IndexKind, metric: Metric, ops: list[tuple[str, list[int]]], seed: int, force_index: bool
) -> None:
    rng = np.random.default_rng(seed)
    model = Model(metric)
    sv = 0
    with tempfile.TemporaryDirectory() as tmp:
        store = ShardStore(Path(tmp) / "rocksdb")
        try:
            part = IndexPartition(
                index(kind), family(metric), store, Path(tmp) / "segments", policy(force_index)
            )
            part.load()

            def upsert(ids: list[int]) -> None:
                nonlocal sv
                sv += 1
                recs = [record(rng, i, TENANTS[i % 2], sv) for i in ids]
                part.upsert(recs)
                for r in recs:  # within a batch the last write of a key wins
                    model.live[r.key] = (model.prepared(r.vector), dict(r.attributes))
                    model.deleted.discard(r.key)

            upsert(list(range(BASE)))
            part.flush(compact=False)
            for op, ids in ops:
                if op == "upsert":
                    upsert(ids)
                elif op == "delete":
                    sv += 1
                    keys = [EntityKey(TENANTS[i % 2], "item", f"id-{i:04d}") for i in ids]
                    part.delete(keys, sv)
                    for key in keys:
                        model.live.pop(key, None)
                        model.deleted.add(key)
                elif op == "seal":
                    part.flush(compact=False)
                elif op == "compact":
                    part.flush(compact=True)
                else:
                    while part.maintain():
                        pass
            assert part.live_count == len(model.live)
            plans = check_results(part, model, rng, exact=False)
            if force_index and kind is not IndexKind.FLAT:
                assert plans & {"ann", "filtered_ann"}, plans
            assert check_results(part, model, rng, exact=True) <= {"exact"}
            if kind is IndexKind.IVFPQ:
                assert part.lifecycle.template is not None
        finally:
            store.close()


# -- recall and the planner on clustered data ---------------------------------


def clustered(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(24, dim)) * 4
    labels = rng.integers(0, 24, n)
    base = (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32)
    queries = (centres[rng.integers(0, 24, 60)] + rng.normal(size=(60, dim))).astype(np.float32)
    return base, queries


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[IndexKind, IndexPartition]:
    """6,000 clustered rows per kind, sealed into two segments each."""
    base, _ = clustered(6000, 32, 1)
    fam = EmbeddingFamily("f", "item", 32, Metric.L2)
    out = {}
    params = {
        IndexKind.HNSW: {"M": 16, "ef_construction": 100, "ef_search": 48},
        IndexKind.IVFPQ: {"nlist": 32, "m": 8, "nbits": 6, "nprobe": 6, "refine_factor": 10},
    }
    for kind, p in params.items():
        tmp = tmp_path_factory.mktemp(kind.value)
        store = ShardStore(tmp / "rocksdb")
        part = IndexPartition(
            index(kind, p),
            fam,
            store,
            tmp / "segments",
            LifecyclePolicy(
                seal_rows=3000,
                seal_age_seconds=3600,
                planner=PlannerPolicy(exact_below_selectivity=0.03, exact_below_rows=256),
            ),
        )
        part.load()
        recs = [
            Record(
                EntityKey("t0", "item", f"id-{i}"),
                base[i],
                1,
                attributes={"price": float(i % 100), "cat": "abcd"[i % 4]},
                bucket=i % 4,
            )
            for i in range(len(base))
        ]
        for start in range(0, len(recs), 1000):
            part.upsert(recs[start : start + 1000])
            while part.maintain():
                pass
        out[kind] = part
    return out


def recall(part: IndexPartition, queries: np.ndarray, flt: Filter | None = None, **opts: Any):
    found = part.search([Query(q, 10, "t0", flt, SearchOptions(**opts)) for q in queries])
    exact = part.search([Query(q, 10, "t0", flt, SearchOptions(exact=True)) for q in queries])
    hits = sum(
        len({h.key for h in f.hits} & {h.key for h in e.hits})
        for f, e in zip(found, exact, strict=True)
    )
    plans: dict[str, int] = {}
    for f in found:
        for plan, n in f.plans.items():
            plans[plan] = plans.get(plan, 0) + n
    return hits / sum(len(e.hits) for e in exact), plans


@pytest.mark.parametrize("kind", [IndexKind.HNSW, IndexKind.IVFPQ], ids=lambda k: k.value)
def test_recall_and_the_planner_under_filters(
    loaded: dict[IndexKind, IndexPartition], kind: IndexKind
) -> None:
    part = loaded[kind]
    assert [s.kind for s in part.current_segments()] == [kind.value, kind.value, "flat"]
    _, queries = clustered(6000, 32, 1)
    r, plans = recall(part, queries)
    assert r >= 0.9 and set(plans) == {"ann"}
    # 25% of rows pass: the filter is pushed down into the index
    r, plans = recall(part, queries, Eq("cat", "b"))
    assert r >= 0.9 and set(plans) == {"filtered_ann"}
    # 1% pass: the planner scans the allowed rows exactly
    r, plans = recall(part, queries, Range("price", lt=1.0))
    assert r == 1.0 and set(plans) == {"exact"}


def test_skip_rerank_returns_flagged_approximate_scores(
    loaded: dict[IndexKind, IndexPartition],
) -> None:
    part = loaded[IndexKind.IVFPQ]
    _, queries = clustered(6000, 32, 1)
    (approx,) = part.search([Query(queries[0], 10, "t0", None, SearchOptions(skip_rerank=True))])
    (exact,) = part.search([Query(queries[0], 10, "t0")])
    assert approx.approximate and not exact.approximate
    assert [h.score for h in approx.hits] != [h.score for h in exact.hits]


def test_search_effort_overrides_change_recall(loaded: dict[IndexKind, IndexPartition]) -> None:
    _, queries = clustered(6000, 32, 1)
    low, _ = recall(loaded[IndexKind.IVFPQ], queries, nprobe=1, refine_factor=1)
    high, _ = recall(loaded[IndexKind.IVFPQ], queries, nprobe=32, refine_factor=20)
    assert low < high and high >= 0.99


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        (IndexKind.HNSW, {"ef": 3}, "unknown key(s) ['ef']"),
        (IndexKind.HNSW, {"M": 1}, "M=1, expected 2..256"),
        (IndexKind.HNSW, {"M": "16"}, "expected an integer"),
        (IndexKind.IVFPQ, {"m": 3}, "m=3 must divide the dimension 8"),
        (IndexKind.IVFPQ, {"nlist": 4, "nprobe": 8}, "nprobe=8 exceeds nlist=4"),
        (IndexKind.IVFPQ, {"nlist": 64, "train_size": 100}, "train_size=100 is below 9984"),
    ],
)
def test_index_params_are_validated(
    kind: IndexKind, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_index_params(kind, params, DIM)
    assert message in str(err.value)
    with tempfile.TemporaryDirectory() as tmp:
        store = ShardStore(Path(tmp))
        try:
            with pytest.raises(FailedPrecondition, match="ix_"):
                IndexPartition(index(kind, params), family(Metric.L2), store, Path(tmp) / "s")  # type: ignore[arg-type]  # invalid params are the point
        finally:
            store.close()


def test_index_params_defaults() -> None:
    assert parse_index_params(IndexKind.HNSW, {}, 128) == HnswParams()
    p = parse_index_params(IndexKind.IVFPQ, {"nlist": 256}, 128)
    assert isinstance(p, IvfPqParams) and (p.m, p.train_size) == (32, 10_000)


# -- faiss's OpenMP threads in the threads that call it -----------------------


def _in_a_new_thread(call: Any) -> int:
    """Runs ``call`` in a thread whose OpenMP default is 2 threads (what a gRPC
    worker, the maintenance thread or the recall sampler get on any multi-core
    machine: the count is per thread) and returns the count ``call`` left."""
    import threading

    import faiss

    seen: list[int] = []

    def run() -> None:
        faiss.omp_set_num_threads(2)
        call()
        seen.append(faiss.omp_get_max_threads())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen, "the call raised"
    return seen[0]


def test_ivfpq_searches_use_one_openmp_thread_in_whatever_thread_runs_them(
    loaded: dict[IndexKind, IndexPartition],
) -> None:
    part = loaded[IndexKind.IVFPQ]
    _, queries = clustered(6000, 32, 1)
    one = [Query(queries[0], 10, "t0")]
    batch = [Query(q, 10, "t0") for q in queries[:8]]
    filtered = [Query(queries[0], 10, "t0", Eq("cat", "b"))]
    for queries_ in (one, batch, filtered):
        assert _in_a_new_thread(lambda q=queries_: part.search(q)) == 1, (
            "an IVF-PQ search forked an OpenMP team of the thread's default size"
        )


def test_ivfpq_builds_use_the_build_threads_in_whatever_thread_runs_them(
    tmp_path: Path,
) -> None:
    base, _ = clustered(1200, 32, 2)
    store = ShardStore(tmp_path / "rocksdb")
    try:
        part = IndexPartition(
            index(IndexKind.IVFPQ, {"nlist": 16, "m": 8, "nbits": 4, "train_size": 1200}),
            EmbeddingFamily("f", "item", 32, Metric.L2),
            store,
            tmp_path / "segments",
            LifecyclePolicy(seal_rows=10_000, seal_age_seconds=3600),  # build threads: 1
        )
        part.load()
        part.upsert(
            [
                Record(EntityKey("t0", "item", f"id-{i}"), v, 1, bucket=i % 4)
                for i, v in enumerate(base)
            ]
        )
        # Trains the template, adds the rows and summarises the segment (faiss k-means).
        assert _in_a_new_thread(lambda: part.flush(compact=False)) == 1
        assert part.lifecycle.template is not None
        assert "ivfpq" in {s.kind for s in part.current_segments()}
    finally:
        store.close()
