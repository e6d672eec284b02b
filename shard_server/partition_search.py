"""Searching one index partition's segments: a batch of queries as one
matrix per segment, merged per query; later pages by cursor.

Searches take no write lock. What keeps a racing write from hiding a key
is the order of both sides: an upsert appends the key's new row to the
growing segment before it masks the old row in the sealed ones, and a search
reads the sealed segments first and the growing one last — so it finds the
new row, or the old one, or both (deduplicated by sequence). A seal breaks
that order when it swaps the growing segment out during a search: the new
row lands in a growing segment the search never reads. `search_partition`
notices (the growing segment is no longer the one it read last) and
searches again with the newer segments too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from core import tracing
from core.domain import EntityKey
from core.ordering import order_key
from core.scoring import canonical_scores
from registry.model import EmbeddingFamily, IndexVersion
from shard_server import metrics
from shard_server import records as rec
from shard_server.aggregate import merge_segment_columns
from shard_server.lifecycle import SegmentLifecycle
from shard_server.model import REFERENCE_SAMPLE, Query, SearchResult
from shard_server.query_batch import prepared_queries
from shard_server.segment import Segment
from shard_server.storage import RECORDS, SEQUENCES, ShardStore, decode_sequence

# Searches again after a seal swapped the growing segment out at most this
# often; seals come seconds apart (20,000 rows or a minute), searches take
# milliseconds, so a second pass all but never meets another.
SEAL_RACE_RETRIES = 4


class SearchedPartition(Protocol):
    """What a search reads of `IndexPartition`."""

    index: IndexVersion
    family: EmbeddingFamily
    store: ShardStore
    lifecycle: SegmentLifecycle

    @property
    def normalize(self) -> bool: ...


def search_partition(part: SearchedPartition, queries: Sequence[Query]) -> list[SearchResult]:
    """Every query of a batch, answered as if it came alone: the batch is
    validated and prepared as one matrix, and each segment searches it at
    once (`Segment.search_batch`). Later pages go one by one."""
    if not queries:
        return []
    matrix = prepared_queries(queries, part.family, part.index, part.normalize)
    sequence = part.store.sequence
    first = [i for i, q in enumerate(queries) if q.after is None and q.max_sequence is None]
    with contextlib.ExitStack() as held:
        segments = held.enter_context(part.lifecycle.set.acquire())
        for _ in range(SEAL_RACE_RETRIES):
            out = _search_view(part, segments, matrix, queries, first, sequence)
            if part.lifecycle.set.growing is segments[-1]:
                return out
            # A seal swapped the growing segment out during the search (see
            # the module's docstring): again with the newer segments as well,
            # the newest growing one last.
            newer = held.enter_context(part.lifecycle.set.acquire())
            segments = (*[s for s in segments if all(s is not n for n in newer)], *newer)
        return out


def _search_view(
    part: SearchedPartition,
    segments: Sequence[Segment],
    matrix: np.ndarray,
    queries: Sequence[Query],
    first: list[int],
    sequence: int,
) -> list[SearchResult]:
    out: list[SearchResult | None] = [None] * len(queries)
    if first:
        batch = [queries[i] for i in first]
        answers = search_segments(part, segments, matrix[first], batch, sequence)
        for i, answer in zip(first, answers, strict=True):
            out[i] = answer
    for i, q in enumerate(queries):
        if out[i] is None:
            out[i] = replace(_search_page(part, segments, matrix[i], q), sequence=sequence)
    return [r for r in out if r is not None]


def search_segments(
    part: SearchedPartition,
    segments: Sequence[Segment],
    matrix: np.ndarray,
    queries: Sequence[Query],
    sequence: int = 0,
) -> list[SearchResult]:
    per_segment = []
    for seg in segments:
        start = time.perf_counter()
        with tracing.span("shard.segment", kind=seg.kind, rows=len(seg)):
            per_segment.append(seg.search_batch(matrix, queries))
        metrics.observe_segment_batch(seg.kind, per_segment[-1], time.perf_counter() - start)
    out = []
    for qi, q in enumerate(queries):
        parts = [answers[qi] for answers in per_segment]
        plans: dict[str, int] = {}
        candidates = 0
        approximate = False
        for res in parts:
            if res.plan != "empty":
                plans[res.plan] = plans.get(res.plan, 0) + 1
            candidates += res.candidates
            approximate |= res.approximate
        scores, keys, buckets, seqs = merge_segment_columns(parts, q.k)
        reference: tuple[float, ...] = ()
        if approximate and keys:
            reference = _exact_scores(part, matrix[qi], keys[:REFERENCE_SAMPLE])
        out.append(
            SearchResult(
                scores,
                keys,
                buckets,
                seqs,
                candidates,
                plans,
                approximate,
                sequence,
                reference,
            )  # fmt: skip
        )
    return out


def _search_page(
    part: SearchedPartition, segments: Sequence[Segment], vector: np.ndarray, q: Query
) -> SearchResult:
    """A later page: the best k items after the cursor's key among records
    written no later than its watermark. Over-fetches (doubling) until k
    such items are found or the candidates run out."""
    after = order_key(*q.after) if q.after is not None else None
    fetch = q.k + q.served
    while True:
        (res,) = search_segments(
            part, segments, vector[None, :], [replace(q, k=fetch, after=None, max_sequence=None)]
        )
        hits = [h for h in res.hits if after is None or order_key(h.score, h.key) > after]
        if q.max_sequence is not None and hits:
            raw = [rec.record_key(part.index.ref, h.key) for h in hits]
            seqs = part.store.multi_get(SEQUENCES, raw)
            hits = [
                h
                for h, s in zip(hits, seqs, strict=True)
                if s is not None and decode_sequence(s) <= q.max_sequence
            ]
        if len(hits) >= q.k or len(res.keys) < fetch:
            return SearchResult.from_hits(
                hits[: q.k],
                res.candidates,
                plans=res.plans,
                approximate=res.approximate,
                reference_scores=res.reference_scores,
            )
        fetch *= 2


def _exact_scores(
    part: SearchedPartition, vector: np.ndarray, keys: Sequence[EntityKey]
) -> tuple[float, ...]:
    """Canonical scores of a few hits, from their stored vectors: the
    reference sample for calibrating approximate scores (coordinator)."""
    raws = part.store.multi_get(RECORDS, [rec.record_key(part.index.ref, k) for k in keys])
    vectors = [
        rec.decode_record(k, raw).vector
        for k, raw in zip(keys, raws, strict=True)
        if raw is not None
    ]
    if len(vectors) != len(keys):
        return ()  # deleted meanwhile: no sample this time
    return tuple(float(s) for s in canonical_scores(part.family.metric, vector, np.stack(vectors)))
