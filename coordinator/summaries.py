"""Cached shard summaries for bounded fanout and bucket exclusion.

Each shard publishes, per index version, balls covering its segments' rows
(centroids with radii) and per-bucket attribute ranges and tenants
(`Describe(include_summaries)`). From them the coordinator bounds the best
score a shard could return for a query, and proves buckets empty for a filter.

Why freshness rules: a bound computed from a summary older than the shard's
latest write could be too low and skip a shard holding a winner. A summary is
a lease: used for at most `max_age` counted from when it was asked for, and
the shard acknowledges a write that escapes a live lease only once that lease
has expired (`shard_server.summary_leases`) — so no query that begins after a
write was acknowledged, through any coordinator, skips on a summary missing
it. A coordinator also drops a shard's summary the moment it writes to that
shard (its own leases never delay its writes). An unknown bound is +inf and
never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from coordinator.exclusion import BucketStats
from coordinator.model import IndexSummary, ShardBounds, ShardIndex
from core.bounds import score_upper_bounds
from core.domain import VersionRef
from registry.watcher import SnapshotCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    summary: IndexSummary
    fetched_at: float


@dataclass
class SummaryCache:
    cache: SnapshotCache
    # (shard_id, address) → what the shard says of its index versions
    describe: Callable[[str, str], Awaitable[list[ShardIndex]]]
    interval: float = 0.5
    max_age: float = 2.0
    _entries: dict[tuple[str, VersionRef], _Entry] = field(default_factory=dict)
    # Bumped by every write to the shard (when sent and when acknowledged): a
    # refresh that began under an older epoch must not store what it read.
    _epochs: dict[str, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def invalidate(self, shard_id: str) -> None:
        """Called on every write to the shard: its summary no longer covers it."""
        self._epochs[shard_id] = self._epochs.get(shard_id, 0) + 1
        for key in [k for k in self._entries if k[0] == shard_id]:
            del self._entries[key]

    def _fresh(self, shard_id: str, index: VersionRef) -> IndexSummary | None:
        e = self._entries.get((shard_id, index))
        if e is None or time.monotonic() - e.fetched_at > self.max_age:
            return None
        return e.summary

    def bounds(self, shard_id: str, index: VersionRef, vectors: np.ndarray) -> ShardBounds | None:
        """Per row of `vectors` (one search's query, or a SearchBatch's),
        the bound on the shard's scores; each row's the same alone or in a
        batch (`core.bounds.score_upper_bounds`). None: no fresh summary, or
        one that does not say which writes it covers (a shard from before
        `summary_sequence`): a shard skipped on it could not be pinned for
        the search's next pages."""
        s = self._fresh(shard_id, index)
        if s is None or s.sequence is None:
            return None
        snap = self.cache.snapshot
        ix = snap.indexes.get(index)
        family = snap.families.get(ix.embedding.name) if ix else None
        q = np.asarray(vectors, dtype=np.float64)
        if family is not None and family.normalize:
            norms = np.sqrt(np.einsum("ij,ij->i", q, q))
            q = q / np.where(norms > 0, norms, 1.0)[:, None]
        return ShardBounds(score_upper_bounds(s.metric, q, s.centroids, s.radii), s.sequence)

    def bucket(self, index: VersionRef, bucket: int) -> tuple[BucketStats, frozenset[str]] | None:
        """Stats of a bucket over *every* replica of it, or None (never
        exclude) unless each replica has a fresh summary listing the bucket.

        Why every replica: with a write quorum below the replica count, a
        write is acknowledged once some replicas took it; a replica that has
        not may still hold a lease on stats without it. Its peers that did
        acknowledge hold no such stale lease (shard_server.summary_leases), so
        the union over all replicas always includes the write."""
        placement = self.cache.snapshot.placements.get(index)
        if placement is None or not 0 <= bucket < len(placement.buckets):
            return None
        ranges: dict[str, tuple[float, float]] = {}
        tenants: set[str] = set()
        for sid in placement.buckets[bucket]:
            summary = self._fresh(sid, index)
            if summary is None or bucket not in summary.buckets:
                return None
            stats, names = summary.buckets[bucket]
            tenants |= names
            for attr, (lo, hi) in stats.items():
                cur = ranges.get(attr)
                ranges[attr] = (lo, hi) if cur is None else (min(lo, cur[0]), max(hi, cur[1]))
        if not placement.buckets[bucket]:
            return None
        return ranges, frozenset(tenants)

    async def refresh_once(self) -> None:
        snap = self.cache.snapshot
        shards = {m.shard_id: m.address for m in snap.shards.values()}
        epochs = {sid: self._epochs.get(sid, 0) for sid in shards}
        # A summary's lease counts from when it was asked for: the shard
        # counts from when it answered, which is later (summary_leases).
        sent = time.monotonic()
        results = await asyncio.gather(
            *(self.describe(sid, addr) for sid, addr in shards.items()), return_exceptions=True
        )
        for sid, result in zip(shards, results, strict=True):
            if isinstance(result, BaseException):
                self.invalidate(sid)
                continue
            if self._epochs.get(sid, 0) != epochs[sid]:
                continue  # written to meanwhile: what we read may miss it
            for ix in result:
                if ix.summary is not None:
                    self._entries[(sid, ix.index)] = _Entry(ix.summary, sent)

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh_once()
            except Exception as exc:  # noqa: BLE001 - summaries are an optimization
                log.debug("summary refresh failed: %s", exc)
            await asyncio.sleep(self.interval)
