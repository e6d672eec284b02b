"""Batched search on plain data. Scores: `canonical_scores_rows` (a batch,
gathered and computed a chunk at a time) gives every (query, candidate) the
bytes `canonical_scores` gives it alone, for every metric and chunking.
Ranking: a batch of queries ranked together (`segment_hits_batch`: one lexsort for
the whole batch, keys built in one pass) gives each query exactly what
ranking it alone (`segment_hits`) gives: same scores, keys, buckets and
write sequences, in the global order — ties included, which the small
integer scores here produce often."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core import scoring
from core.domain import EntityKey, Metric
from core.record_columns import PackedStrings
from shard_server import segment
from shard_server.key_table import KeyTable
from shard_server.sealed_segment import key_ranks
from shard_server.segment import ranked_batch, segment_hits, segment_hits_batch


def table_of(n: int, seed: int) -> KeyTable:
    rng = np.random.default_rng(seed)
    keys = [
        EntityKey(f"t{rng.integers(0, 2)}", f"e{rng.integers(0, 2)}", f"id-{i}-é{rng.integers(9)}")
        for i in range(n)
    ]
    return KeyTable.of(keys)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 60),
    b=st.integers(1, 8),
    m=st.integers(1, 40),
    k=st.integers(1, 50),
    seed=st.integers(0, 2**16),
    odd=st.booleans(),
    packed=st.booleans(),
)
def test_a_batch_ranks_each_query_as_alone(
    n: int, b: int, m: int, k: int, seed: int, odd: bool, packed: bool
) -> None:
    """Both of `ranked_batch`'s orders: a lexsort (small batches), and the
    packed order keys (forced here by a threshold of 0)."""
    rng = np.random.default_rng(seed)
    table = table_of(n, seed)
    m = min(m, n)
    rows = np.stack([rng.permutation(n)[:m] for _ in range(b)]).astype(np.int64)
    scores = rng.integers(-3, 3, size=(b, m)).astype(np.float32)
    if odd:  # the float32 values whose bits order unlike their values, and near-ties
        values = np.array(
            [-0.0, 0.0, np.inf, -np.inf, 1e-45, -1e-45, 0.5, -0.5, np.nextafter(0.5, 1)],
            np.float32,
        )
        scores = rng.choice(values, size=(b, m)).astype(np.float32)
    buckets = rng.integers(0, 16, size=n).astype(np.uint32)
    seqs = rng.integers(0, 1000, size=n).astype(np.int64)
    rank = key_ranks(list(table))
    with patch.object(segment, "LEXSORT_MAX_CANDIDATES", 0 if packed else 10**9):
        together = segment_hits_batch(scores, rows, table, buckets, seqs, k, n, "ann", False, rank)
    assert len(together) == b
    for i, got in enumerate(together):
        alone = segment_hits(scores[i], rows[i], table, buckets, seqs, k, n, "ann", False, rank)
        assert got.scores.tobytes() == alone.scores.tobytes()
        assert list(got.keys) == list(alone.keys)
        assert got.buckets.tolist() == alone.buckets.tolist()
        assert got.seqs.tolist() == alone.seqs.tolist()
        assert (got.candidates, got.plan, got.approximate) == (n, "ann", False)


@given(st.lists(st.text(max_size=6), min_size=1, max_size=30), st.data())
def test_keys_at_and_strings_at_are_indexing(ids: list[str], data: st.DataObject) -> None:
    keys = [EntityKey("t", "e", s) for s in ids]
    table = KeyTable.of(keys)
    rows = np.array(data.draw(st.lists(st.integers(0, len(ids) - 1), max_size=40)), dtype=np.int64)
    assert table.keys_at(rows) == [keys[r] for r in rows.tolist()]
    assert table[1:-1] == keys[1:-1] and table[::2] == keys[::2]
    assert PackedStrings.of(ids).strings_at(rows) == [ids[r] for r in rows.tolist()]


@settings(max_examples=60, deadline=None)
@given(
    metric=st.sampled_from(list(Metric)),
    n=st.integers(1, 9),
    c=st.integers(0, 12),
    d=st.integers(1, 24),
    chunk=st.sampled_from([1, 200, 4096, 1 << 20]),
    seed=st.integers(0, 2**16),
)
def test_batched_scores_are_the_single_query_bytes(
    metric: Metric, n: int, c: int, d: int, chunk: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    stored = rng.normal(size=(30, d)).astype(np.float32)
    queries = rng.normal(size=(n, d)).astype(np.float32)
    rows = rng.integers(0, 30, size=(n, c))
    old, scoring.CHUNK_BYTES = scoring.CHUNK_BYTES, chunk
    try:
        gathered = scoring.canonical_scores_rows(metric, queries, stored, rows)
        given_rows = scoring.canonical_scores_rows(metric, queries, stored[rows])
    finally:
        scoring.CHUNK_BYTES = old
    assert gathered.shape == (n, c) and gathered.dtype == np.float32
    for i in range(n):
        alone = scoring.canonical_scores(metric, queries[i], stored[rows[i]])
        assert gathered[i].tobytes() == alone.tobytes()
        assert given_rows[i].tobytes() == alone.tobytes()


def test_ranks_past_32_bits_order_the_same() -> None:
    """A segment with 2**32 rows or more (key ranks past the 32 bits the
    packed order keys give them) takes the lexsort: the same order."""

    class HugeRanks:  # the ranks of a tiny table, claiming 2**33 rows
        def __init__(self, ranks: np.ndarray) -> None:
            self.ranks, self.shape = ranks, (1 << 33,)

        def __getitem__(self, rows: np.ndarray) -> np.ndarray:
            return self.ranks[rows]

    rng = np.random.default_rng(5)
    ranks = rng.permutation(30)
    rows = np.stack([rng.permutation(30)[:12] for _ in range(6)])
    scores = rng.integers(-2, 2, size=(6, 12)).astype(np.float32)
    with patch.object(segment, "LEXSORT_MAX_CANDIDATES", 0):  # the packed keys, were they able
        small = ranked_batch(scores, rows, ranks, 5)
        huge = ranked_batch(scores, rows, HugeRanks(ranks), 5)  # type: ignore[arg-type]
    assert all(np.array_equal(a, b) for a, b in zip(small, huge, strict=True))
