"""The shard's batch write path (shard_server.row_batch) against the per-record
rules it replaced, row by row: stored bytes (`encode_record`), normalization
and norms (`core.scoring.normalized`), the version rule (`applies`), batch
precedence, and the summary-lease check; and, on a real RocksDB, that the
same records written per record and as columns leave the same bytes and
answer the same searches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain import AttrType, AttrValue, EntityKey, Metric, VersionRef
from core.record_columns import AttributeColumn, PackedStrings, RecordColumns
from core.scoring import normalized
from registry.model import EmbeddingFamily, IndexVersion
from shard_server import records as rec
from shard_server.growing_segment import GrowingSegment
from shard_server.model import Query
from shard_server.partition import IndexPartition
from shard_server.row_batch import RowBatch, latest_rows, prepare_rows, row_dots
from shard_server.segment import DEFAULT_OPTIONS
from shard_server.storage import RECORDS, ShardStore
from shard_server.summary import BucketStats
from shard_server.summary_leases import NewRow, NewRows, SummaryLeases, _outside_balls
from shard_server.version_rules import applies, applying

TEXT = st.text(alphabet='ab"\\é\x00\u2028', max_size=6)
ATTR = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.lists(TEXT, max_size=3).map(tuple),
)
SCHEMA = {"c": AttrType.STRING, "price": AttrType.FLOAT}


@st.composite
def record_lists(draw: st.DrawFn, dim: int = 4) -> list[rec.Record]:
    n = draw(st.integers(0, 10))
    out = []
    for i in range(n):
        vec = draw(st.lists(st.floats(-100, 100, width=32), min_size=dim, max_size=dim))
        out.append(
            rec.Record(
                EntityKey(draw(st.sampled_from(["t", "u", ""])), "item", draw(TEXT) + str(i)),
                np.array(vec, np.float32),
                draw(st.integers(-(2**63), 2**63 - 1)),
                draw(TEXT),
                draw(st.integers(0, 2**62)),
                draw(st.dictionaries(st.sampled_from(["a", "é", 'b"', "zz"]), ATTR, max_size=4)),
                draw(st.floats(0, 1e6, width=32)),
                draw(st.integers(0, 2**32 - 1)),
            )
        )
    return out


@settings(max_examples=200)
@given(record_lists())
def test_a_batch_encodes_every_row_as_encode_record_does(records: list[rec.Record]) -> None:
    b = RowBatch.from_records(records, 4)
    values = rec.encode_rows(
        b.source_versions,
        b.created_at,
        b.norms,  # type: ignore[arg-type]
        b.buckets,
        b.model_versions,
        rec.attributes_json(b.columns, len(b)),
        b.vectors,
    )
    assert values == [rec.encode_record(r) for r in records]
    prefix = rec.index_prefix(VersionRef("ix", "v1"))
    assert rec.row_keys(prefix, b.keys) == [rec.keyed(prefix, r.key) for r in records]


def test_attribute_json_is_what_json_dumps_writes_for_every_type() -> None:
    rows: list[dict[str, AttrValue]] = [
        {"b": 1, "a": "x\u00e9\n", "z": ("p", 'q"')},
        {},
        {"b": -(2**63), "f": 0.1},
        {"f": float("nan"), "g": float("-inf"), "h": -0.0},
    ]
    cols = RowBatch.from_records(
        [
            rec.Record(EntityKey("t", "i", str(i)), np.zeros(2, np.float32), attributes=r)
            for i, r in enumerate(rows)
        ],
        2,
    ).columns
    expected = [
        json.dumps(
            {k: list(v) if isinstance(v, tuple) else v for k, v in r.items()}, sort_keys=True
        )
        for r in rows
    ]
    assert [j.decode() for j in rec.attributes_json(cols, len(rows))] == expected


FAMILIES = [
    EmbeddingFamily("f", "item", 7, Metric.COSINE),
    EmbeddingFamily("f", "item", 7, Metric.L2),
    EmbeddingFamily("f", "item", 7, Metric.INNER_PRODUCT, normalize=True),
]
INDEX = IndexVersion("ix", "v1", VersionRef("f", "v1"), num_buckets=8, attributes=SCHEMA)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f"{f.metric}-{f.normalize}")
def test_vectors_and_norms_are_bit_for_bit_those_of_one_record_at_a_time(
    family: EmbeddingFamily,
) -> None:
    rng = np.random.default_rng(7)
    vectors = (rng.standard_normal((3000, 7)) * rng.uniform(1e-3, 1e3, (3000, 1))).astype(
        np.float32
    )
    records = [rec.Record(EntityKey("t", "item", str(i)), v) for i, v in enumerate(vectors)]
    ready = prepare_rows(RowBatch.from_records(records, 7), family, INDEX)
    for v, got, norm in zip(vectors, ready.vectors, ready.norms, strict=True):  # type: ignore[arg-type]
        v64 = v.astype(np.float64)
        assert norm == float(np.sqrt(v64 @ v64))
        want = normalized(v) if family.metric is Metric.COSINE or family.normalize else v
        assert got.tobytes() == want.tobytes()
    assert row_dots(vectors).tobytes() == np.array([v @ v for v in vectors], np.float32).tobytes()


STORED = st.one_of(st.none(), st.integers(-50, 50))


@given(st.lists(st.tuples(st.integers(-50, 50), STORED, STORED), max_size=30))
def test_the_version_rule_over_arrays_is_applies_row_by_row(
    rows: list[tuple[int, int | None, int | None]],
) -> None:
    def stored(v: int | None) -> bytes | None:
        if v is None:
            return None
        return rec.encode_record(rec.Record(EntityKey("t", "i", "x"), np.zeros(1, np.float32), v))

    versions = np.array([r[0] for r in rows], dtype=np.int64)
    olds = [stored(r[1]) for r in rows]
    tombs = [None if r[2] is None else rec.encode_tombstone(r[2]) for r in rows]
    want = [applies(v, o, t) for v, o, t in zip(versions.tolist(), olds, tombs, strict=True)]
    assert applying(versions, olds, tombs).tolist() == want


@given(st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c"]), st.integers(0, 3)), max_size=20))
def test_within_a_batch_the_highest_version_wins_and_the_last_on_a_tie(
    rows: list[tuple[bytes, int]],
) -> None:
    best: dict[bytes, int] = {}
    for i, (key, v) in enumerate(rows):
        if key not in best or v >= rows[best[key]][1]:
            best[key] = i
    kept = latest_rows([k for k, _ in rows], np.array([v for _, v in rows], dtype=np.int64))
    assert kept.tolist() == sorted(best.values())


# --- summary leases over a whole write ----------------------------------------


def _escapes_one(
    row: NewRow, cov_centroids: np.ndarray, radii: np.ndarray, stats: dict[int, BucketStats]
) -> bool:
    """The per-row rule the array version must agree with."""
    if _outside_balls(row.vector[None, :], cov_centroids, radii)[0]:
        return True
    s = stats.get(row.bucket)
    if s is None:
        return False
    if row.tenant_id not in s.tenants:
        return True
    for name, value in row.attributes.items():
        rng = s.ranges.get(name)
        if rng is None or isinstance(value, str | tuple | bool):
            continue
        if not rng[0] <= float(value) <= rng[1]:
            return True
    return False


ROWS = st.lists(
    st.builds(
        lambda x, y, b, t, attrs: NewRow(np.array([x, y], np.float32), b, t, attrs),
        st.floats(-2, 2, width=32),
        st.floats(-2, 2, width=32),
        st.integers(0, 2),
        st.sampled_from(["t", "u"]),
        st.dictionaries(
            st.sampled_from(["price", "year", "c"]),
            st.one_of(st.integers(-5, 15), st.floats(-5, 15), st.just(float("nan")), TEXT),
            max_size=2,
        ),
    ),
    max_size=12,
)


@settings(max_examples=300)
@given(ROWS)
def test_a_write_waits_exactly_when_one_of_its_rows_escapes_a_live_summary(
    rows: list[NewRow],
) -> None:
    centroids = np.array([[0.0, 0.0], [1.5, 1.5]], np.float32)
    radii = np.array([1.0, 0.5], np.float32)
    stats = {
        0: BucketStats(3, {"price": (1.0, 10.0, 3)}, frozenset({"t"})),
        1: BucketStats(3, {"year": (0.0, 2.0, 1), "price": (0.0, 0.0, 1)}, frozenset({"t", "u"})),
    }
    clock = [100.0]
    leases = SummaryLeases(lambda: clock[0])
    leases.served(centroids, radii, stats, 2.0, "other")
    want = any(_escapes_one(r, centroids, radii, stats) for r in rows)
    assert (leases.hold_until(NewRows.of(rows), "me") > 0.0) is want


# --- per record and as columns, on a real RocksDB -----------------------------


def _partition(path: Path, family: EmbeddingFamily) -> tuple[ShardStore, IndexPartition]:
    store = ShardStore(path / "rocksdb")
    part = IndexPartition(INDEX, family, store, path / "segments")
    part.load()
    return store, part


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_records_as_columns_store_the_bytes_and_answer_the_searches_of_records(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    family = data.draw(st.sampled_from(FAMILIES))
    n = data.draw(st.integers(1, 40))
    ids = data.draw(st.lists(st.sampled_from([f"k{i}" for i in range(25)]), min_size=n, max_size=n))
    vectors = np.asarray(
        data.draw(st.lists(st.floats(0.5, 5, width=32), min_size=n * 7, max_size=n * 7)),
        np.float32,
    ).reshape(n, 7)
    versions = np.asarray(data.draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)), np.int64)
    prices = [data.draw(st.one_of(st.none(), st.floats(-10, 10))) for _ in range(n)]
    cats = [data.draw(st.one_of(st.none(), TEXT)) for _ in range(n)]
    buckets = np.asarray(data.draw(st.lists(st.integers(0, 7), min_size=n, max_size=n)), np.int64)
    records = [
        rec.Record(
            EntityKey("t", "item", ids[i]),
            vectors[i],
            int(versions[i]),
            "m",
            7,
            {k: v for k, v in (("price", prices[i]), ("c", cats[i])) if v is not None},
            bucket=int(buckets[i]),
        )
        for i in range(n)
    ]
    columns = RecordColumns(
        PackedStrings.of(ids),
        vectors,
        versions,
        np.full(n, 7, np.int64),
        {
            "price": AttributeColumn.of(AttrType.FLOAT, prices),
            "c": AttributeColumn.of(AttrType.STRING, cats),
        },
        "m",
        "item",
    )
    base = tmp_path_factory.mktemp("same")
    (s1, p1), (s2, p2) = _partition(base / "a", family), _partition(base / "b", family)
    try:
        # Stale rows on a second write are ignored the same way too.
        for part, write in (
            (p1, lambda p: p.upsert(records)),
            (p2, lambda p: p.upsert_columns("t", columns, buckets)),
        ):
            first = write(part)
            again = write(part)
            assert (again.written, again.ignored_stale) == (first.written, 0)
        stored = [dict(s.iter_prefix(RECORDS, b"")) for s in (s1, s2)]
        assert stored[0] == stored[1]
        query = Query(vectors.mean(axis=0), 10, "t")
        (a,), (b,) = p1.search([query]), p2.search([query])
        assert [(h.key, h.score) for h in a.hits] == [(h.key, h.score) for h in b.hits]
    finally:
        s1.close()
        s2.close()


def test_a_batch_appended_at_once_equals_rows_appended_one_by_one() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, 5)).astype(np.float32)
    keys = [EntityKey("t" if i % 3 else "u", "item", f"k{i % 200}") for i in range(300)]
    one = GrowingSegment("a", 5, Metric.L2, SCHEMA)
    many = GrowingSegment("b", 5, Metric.L2, SCHEMA)
    gone = keys[:30]  # deleted between the two appends; some are written again
    for i, (key, vec) in enumerate(zip(keys, vectors, strict=True)):
        if i == 200:
            one.delete_many(gone)
        one.upsert(key, vec, {"price": float(i)} if i % 2 else {}, i % 4, i)
    for start, end in ((0, 200), (200, 300)):  # keys are distinct within each append
        if start == 200:
            many.delete_many(gone)
        rows = RowBatch.from_records(
            [
                rec.Record(
                    keys[i],
                    vectors[i],
                    attributes={"price": float(i)} if i % 2 else {},
                    bucket=i % 4,
                )
                for i in range(start, end)
            ],
            5,
        )
        many.append(
            rows.keys,
            rows.vectors,
            rows.tenants,
            rows.tenant_names,
            rows.buckets,
            np.arange(start, end),
            rows.columns,
        )
    assert (len(one), one.deleted_count) == (len(many), many.deleted_count)
    assert one.deleted_count == len(set(keys[:200]) & set(keys[200:]) | set(gone)) > 30
    for tenant in ("t", "u"):
        for q in vectors[:20]:
            a = one.search(q, 10, tenant, None, DEFAULT_OPTIONS)
            b = many.search(q, 10, tenant, None, DEFAULT_OPTIONS)
            assert a.hits == b.hits


def test_the_growing_summary_kept_up_to_date_covers_every_row() -> None:
    """Summaries asked for between writes (as coordinators do) are widened
    row by row instead of recomputed: still one ball holding every row, and
    the bucket stats of all rows."""
    rng = np.random.default_rng(11)
    kept = GrowingSegment("g", 6, Metric.L2, SCHEMA)
    whole = GrowingSegment("w", 6, Metric.L2, SCHEMA)
    batches = []
    for step in range(15):
        n = int(rng.integers(1, 60))
        records = [
            rec.Record(
                EntityKey(["t", "u", "v"][int(rng.integers(0, 3))], "item", f"s{step}-{i}"),
                (rng.normal(size=6) * (1 + 10 * (step % 5 == 4))).astype(np.float32),
                attributes={"price": float(rng.normal())} if rng.random() < 0.7 else {},
                bucket=int(rng.integers(0, 8)),
            )
            for i in range(n)
        ]
        batches.append(RowBatch.from_records(records, 6))
    far = [
        rec.Record(
            EntityKey("t", "item", f"far{i}"), np.full(6, 50.0 * (i + 1), np.float32), bucket=9
        )
        for i in range(3)
    ]
    batches.append(RowBatch.from_records(far, 6))  # too few to move the centre: widens the ball
    for b in batches:
        kept.append(
            b.keys, b.vectors, b.tenants, b.tenant_names, b.buckets, np.zeros(len(b)), b.columns
        )
        kept.summary()
    everything = RowBatch.from_records(
        [r for b in batches for r in (b.record(i) for i in range(len(b)))], 6
    )
    whole.append(
        everything.keys,
        everything.vectors,
        everything.tenants,
        everything.tenant_names,
        everything.buckets,
        np.zeros(len(everything)),
        everything.columns,
    )
    s = kept.summary()
    (centre,), (radius,) = s.centroids.astype(np.float64), s.radii.astype(np.float64)
    dist = np.sqrt(((everything.vectors.astype(np.float64) - centre) ** 2).sum(axis=1))
    assert (dist <= radius).all()
    assert s.buckets == whole.summary().buckets
