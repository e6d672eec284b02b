"""How good is this shard's index, measured against exact search over the
same rows (DESIGN §11):

- `check_recall`: stored vectors sampled as queries; each segment answers
  approximately and exactly, per segment kind, and the shard's merged answer
  is compared with its exact one. The "recall vs exact" evaluation gate.
- `RecallSampler`: a share of live queries re-run exactly in a background
  thread; the running mean is `vecshard_recall_estimate{index}`. It never
  delays the query it samples (the answer is already computed; the re-check
  is queued, and dropped when the queue is full).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from core.domain import EntityKey, VersionRef
from core.recall import check_recall_sample, mean, recall_at_k
from core.scoring import prepare_queries
from shard_server import quality_metrics
from shard_server import records as rec
from shard_server.model import Query, SearchResult
from shard_server.partition import IndexPartition
from shard_server.segment import DEFAULT_OPTIONS, SearchOptions, SegmentHits
from shard_server.storage import RECORDS

log = logging.getLogger(__name__)
EXACT = SearchOptions(exact=True)


@dataclass(frozen=True)
class KindRecall:
    kind: str
    queries: int
    recall: float
    rows: int


@dataclass(frozen=True)
class RecallCheck:
    queries: int
    recall: float
    kinds: tuple[KindRecall, ...]
    rows: int


def sample_queries(part: IndexPartition, n: int, seed: int, k: int) -> list[Query]:
    """Up to `n` stored records (reservoir sample over RocksDB, reproducible
    by seed) as queries, each scoped to its record's tenant."""
    rng = random.Random(seed)
    chosen: list[tuple[bytes, bytes]] = []
    prefix = rec.index_prefix(part.index.ref)
    for seen, (raw_key, value) in enumerate(part.store.iter_prefix(RECORDS, prefix)):
        if len(chosen) < n:
            chosen.append((raw_key, value))
        else:
            j = rng.randrange(seen + 1)
            if j < n:
                chosen[j] = (raw_key, value)
    out = []
    for raw_key, value in chosen:
        key = rec.parse_record_key(raw_key)[1]
        record = rec.decode_record(key, value)
        out.append(Query(record.vector, k, key.tenant_id))
    return out


def _recall(found: Sequence[EntityKey], exact: Sequence[EntityKey], k: int) -> float:
    return recall_at_k(list(found), list(exact[:k]), k)


def _before(result: SearchResult | SegmentHits, sequence: int) -> list[EntityKey]:
    """The hits written at or before `sequence`: rows written between the
    approximate and the exact search must not count as misses."""
    seqs = result.seqs.tolist()
    return [key for key, seq in zip(result.keys, seqs, strict=True) if seq <= sequence]


def check_recall(part: IndexPartition, k: int, sample: int, seed: int) -> RecallCheck:
    check_recall_sample(sample)  # the coordinator checks too; a shard must not trust its caller
    queries = sample_queries(part, sample, seed, k)
    if not queries:
        return RecallCheck(0, 1.0, (), 0)
    sequence = part.store.sequence
    approx = part.search(queries)
    exact = part.search([replace(q, options=EXACT) for q in queries])
    shard = mean(
        [
            _recall(_before(a, sequence), _before(e, sequence), k)
            for a, e in zip(approx, exact, strict=True)
        ]
    )
    matrix = prepare_queries(
        np.stack([q.vector for q in queries]), part.family.metric, part.normalize
    )
    per_kind: dict[str, list[float]] = {}
    rows: dict[str, int] = {}
    with part.lifecycle.set.acquire() as segments:
        for seg in segments:
            live = len(seg) - seg.deleted_count
            if live <= 0:
                continue
            rows[seg.kind] = rows.get(seg.kind, 0) + live
            got = seg.search_batch(matrix, queries)
            want = seg.search_batch(matrix, [replace(q, options=EXACT) for q in queries])
            per_kind.setdefault(seg.kind, []).extend(
                _recall(_before(g, sequence), _before(w, sequence), k)
                for g, w in zip(got, want, strict=True)
                if len(w)
            )
    kinds = tuple(
        KindRecall(kind, len(values), mean(values), rows[kind])
        for kind, values in sorted(per_kind.items())
    )
    return RecallCheck(len(queries), shard, kinds, sum(rows.values()))


def _sampleable(q: Query) -> bool:
    """First pages of ordinary queries: an exact or un-reranked query has no
    exact counterpart worth comparing, and a later page depends on its cursor."""
    o = q.options
    return q.after is None and q.max_sequence is None and not o.exact and not o.skip_rerank


class CpuBudget:
    """A token bucket of CPU seconds: `share` of one core, refilled with wall
    time, at most `burst_seconds` of it banked. An exact re-check scans every
    row of the shard, so at a fixed sample rate its cost grows with the shard
    (measured: 6–10 % of a shard's CPU under SearchBatch load at 50,000 rows);
    spending from a budget keeps it bounded however large the shard grows.
    The credit may go below zero after a costly check; it refills first."""

    def __init__(
        self,
        share: float,
        burst_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 < share <= 1.0 or burst_seconds <= 0:
            raise ValueError(
                f"CPU budget: share {share} must be in (0, 1] and burst {burst_seconds} s > 0"
            )
        self.share = share
        self.cap = share * burst_seconds
        self._credit = self.cap
        self._clock = clock
        self._at = clock()
        self._lock = threading.Lock()

    def available(self) -> bool:
        with self._lock:
            now = self._clock()
            self._credit = min(self.cap, self._credit + (now - self._at) * self.share)
            self._at = now
            return self._credit > 0

    def spend(self, cpu_seconds: float) -> None:
        with self._lock:
            self._credit -= cpu_seconds


class RecallSampler:
    """Re-runs `rate` of live queries exactly, off the query path, within a
    CPU budget (`cpu_share` of one core; what finds it spent is counted
    `over_budget` and skipped)."""

    def __init__(
        self,
        rate: float,
        window: int = 200,
        capacity: int = 64,
        cpu_share: float = 0.02,
        budget: CpuBudget | None = None,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"recall sample rate {rate}: expected a share in [0, 1]")
        self.budget = budget or CpuBudget(cpu_share)
        self.rate = rate
        self.window = window
        self._queue: queue.Queue[tuple[IndexPartition, Query, tuple[EntityKey, ...]] | None] = (
            queue.Queue(maxsize=capacity)
        )
        self._recent: dict[VersionRef, deque[float]] = {}
        # Orders `forget` and a re-check finishing on the same index version.
        self._estimates = threading.Lock()
        self._random = random.random
        self._thread: threading.Thread | None = None
        self.on_measured: Callable[[VersionRef, float], None] = lambda ref, value: None

    def start(self) -> None:
        if self.rate > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recall-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def offer(
        self, part: IndexPartition, queries: Sequence[Query], results: Sequence[SearchResult]
    ) -> None:
        if self._thread is None:
            return
        for q, r in zip(queries, results, strict=True):
            if self._random() < self.rate and _sampleable(q):
                if not self.budget.available():
                    quality_metrics.RECALL_SAMPLES.labels(str(part.index.ref), "over_budget").inc()
                    continue
                try:
                    self._queue.put_nowait((part, q, tuple(r.keys)))
                except queue.Full:
                    quality_metrics.RECALL_SAMPLES.labels(str(part.index.ref), "dropped").inc()

    def estimate(self, ref: VersionRef) -> float | None:
        recent = self._recent.get(ref)
        return mean(list(recent)) if recent else None

    def forget(self, ref: VersionRef) -> None:
        """An index version dropped from the shard (archived): its estimate
        goes, or `vecshard_recall_estimate{index}` stays at its last value
        for good and VecshardRecallEstimateLow fires on what nobody serves.
        Its partition is retired first, so no re-check sets it again."""
        with self._estimates:
            self._recent.pop(ref, None)
            with contextlib.suppress(KeyError):  # never measured
                quality_metrics.RECALL_ESTIMATE.remove(str(ref))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            part, q, found = item
            label = str(part.index.ref)
            started = time.thread_time()
            try:
                (exact,) = part.search([replace(q, options=replace(DEFAULT_OPTIONS, exact=True))])
            except Exception as exc:  # noqa: BLE001 - a re-check must never take the shard down
                log.warning("recall re-check on %s failed: %s", label, exc)
                quality_metrics.RECALL_SAMPLES.labels(label, "failed").inc()
                continue
            finally:
                self.budget.spend(time.thread_time() - started)
            if not exact.keys:
                continue
            value = _recall(found, exact.keys, q.k)
            with self._estimates:
                if part.retired:  # dropped while it was re-checked: forgotten
                    continue
                recent = self._recent.setdefault(part.index.ref, deque(maxlen=self.window))
                recent.append(value)
                quality_metrics.RECALL_ESTIMATE.labels(label).set(mean(list(recent)))
            quality_metrics.RECALL_SAMPLES.labels(label, "measured").inc()
            self.on_measured(part.index.ref, value)
