"""What a sealed HNSW segment's batched search costs in process, and how much
of it the canonical rerank takes: hnswlib alone (the floor), the segment's
`search_batch` as it runs (rescoring only the candidates that can still be
among the k best, `core.scoring.rescore_width`), and the same rescoring every
candidate hnswlib returned (ef of them: what the shards did before).

    python -m benchmarks.rerank_cost [--n 100000] [--dim 128] [--batch 32]
        [--queries 3200] [--ef 64] [--k 10] [--metric l2] [--out FILE]

Clustered data (`benchmarks.synthetic_data.gaussian_mixture`, the search
benchmark's), one segment, process CPU time per query, best of three rounds
of each; also checks that both rerank ways give the same answers, byte for byte.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np

from benchmarks.run_record import machine, write_json
from benchmarks.synthetic_data import gaussian_mixture
from core.domain import Metric
from core.scoring import prepare_queries, rescore_width
from registry.index_params import HnswParams
from shard_server.hnsw_segment import HnswIndex
from shard_server.model import Query
from shard_server.planner import PlannerPolicy
from shard_server.sealed_segment import BuildSettings, SealedSegment, build_sealed
from shard_server.segment import SearchOptions, SegmentHits
from shard_server.segment_rows import SegmentRows

ROUNDS = 3


def _segment(vectors: np.ndarray, metric: Metric, ef: int) -> SealedSegment:
    rows = SegmentRows.numbered(vectors, tenant="bench", buckets=8)
    params = HnswParams(M=16, ef_construction=100, ef_search=ef)
    return build_sealed(
        "bench", rows, metric, params, None, BuildSettings(threads=2), PlannerPolicy()
    )


def _cpu_ms_per_query(work: Callable[[], object], queries: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best / queries * 1e3


def measure(
    n: int, dim: int, batch: int, n_queries: int, ef: int, k: int, metric: Metric
) -> dict[str, Any]:
    data = gaussian_mixture(n, dim, max(8, n // 1000), n_queries, seed=7, metric=metric.value)
    cosine = metric is Metric.COSINE
    vectors = prepare_queries(data.base, metric, cosine)
    queries = prepare_queries(data.queries, metric, cosine)
    seg = _segment(vectors, metric, ef)
    index = seg.index
    assert isinstance(index, HnswIndex)
    requests = [Query(q, k, "bench") for q in queries[:batch]]  # what a segment reads of them
    options = SearchOptions()
    starts = range(0, n_queries - batch + 1, batch)
    asked = len(starts) * batch

    def answers() -> list[SegmentHits]:
        return [h for i in starts for h in seg.search_batch(queries[i : i + batch], requests)]

    def hnswlib_only() -> None:
        for i in starts:
            index.search_many(queries[i : i + batch], k, n, options)

    widths: list[int] = []

    def counted(approx: np.ndarray, kk: int, window: np.ndarray) -> int:
        widths.append(rescore_width(approx, kk, window))
        return widths[-1]

    with patch("shard_server.sealed_segment.rescore_width", counted):
        trimmed = answers()
    with patch.object(HnswIndex, "rescore_window", lambda *_: None):
        every = answers()
        every_ms = _cpu_ms_per_query(answers, asked)
    same = all(
        a.scores.tobytes() == b.scores.tobytes() and list(a.keys) == list(b.keys)
        for a, b in zip(trimmed, every, strict=True)
    )
    return {
        "n": n,
        "dim": dim,
        "metric": metric.value,
        "batch": batch,
        "queries": asked,
        "ef_search": ef,
        "k": k,
        "hnswlib_ms_per_query": _cpu_ms_per_query(hnswlib_only, asked),
        "search_batch_ms_per_query": _cpu_ms_per_query(answers, asked),
        "rescore_every_candidate_ms_per_query": every_ms,
        "mean_rescored_candidates": float(np.mean(widths)),
        "candidates_per_query": min(max(ef, k), n),
        "identical_answers": same,
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--queries", type=int, default=3200)
    parser.add_argument("--ef", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--metric", choices=[m.value for m in Metric], default="l2")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if min(args.n, args.dim, args.batch, args.ef, args.k) < 1 or args.queries < args.batch:
        parser.error("--n, --dim, --batch, --ef and --k must be ≥ 1, --queries ≥ --batch")
    found = measure(
        args.n, args.dim, args.batch, args.queries, args.ef, args.k, Metric(args.metric)
    )
    print(
        f"{found['n']:,} × {found['dim']} {found['metric']}, HNSW ef {found['ef_search']}, "
        f"k {found['k']}, batches of {found['batch']}: CPU ms a query — hnswlib alone "
        f"{found['hnswlib_ms_per_query']:.4f}, search_batch "
        f"{found['search_batch_ms_per_query']:.4f} (rescoring "
        f"{found['mean_rescored_candidates']:.1f} of {found['candidates_per_query']} "
        f"candidates), rescoring every candidate "
        f"{found['rescore_every_candidate_ms_per_query']:.4f}; answers identical: "
        f"{'yes' if found['identical_answers'] else 'NO'}"
    )
    if args.out is not None:
        print(f"wrote {write_json(args.out, found)}")
    return 0 if found["identical_answers"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
