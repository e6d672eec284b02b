"""Cached shard summaries for bounded fanout and bucket exclusion.

Each shard publishes, per index version, balls covering its segments' rows
(centroids with radii) and per-bucket attribute ranges and tenants
(`Describe(include_summaries)`). From them the coordinator bounds the best
score a shard could return for a query, and proves buckets empty for a filter.

Why freshness rules: a bound computed from a summary older than the shard's
latest write could be too low and skip a shard holding a winner. So a summary
is used only while younger than `max_age`, and a coordinator drops a shard's
summary the moment it writes to that shard (until the next refresh); an
unknown bound is +inf and never skips. Writes through another coordinator are
covered by `max_age` (default 2 s).
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
from coordinator.model import IndexSummary, ShardIndex
from core.bounds import score_upper_bound
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

    def bound(self, shard_id: str, index: VersionRef, vector: np.ndarray) -> float | None:
        s = self._fresh(shard_id, index)
        if s is None:
            return None
        snap = self.cache.snapshot
        ix = snap.indexes.get(index)
        family = snap.families.get(ix.embedding.name) if ix else None
        q = np.asarray(vector, dtype=np.float64)
        if family is not None and family.normalize:
            norm = float(np.sqrt(q @ q))
            q = q / norm if norm > 0 else q
        return score_upper_bound(s.metric, q, s.centroids, s.radii)

    def bucket(self, index: VersionRef, bucket: int) -> tuple[BucketStats, frozenset[str]] | None:
        """Stats of a bucket from any shard with a fresh summary of it."""
        for (sid, ix), e in self._entries.items():
            if ix == index and bucket in e.summary.buckets and self._fresh(sid, ix) is not None:
                return e.summary.buckets[bucket]
        return None

    async def refresh_once(self) -> None:
        snap = self.cache.snapshot
        shards = {m.shard_id: m.address for m in snap.shards.values()}
        epochs = {sid: self._epochs.get(sid, 0) for sid in shards}
        results = await asyncio.gather(
            *(self.describe(sid, addr) for sid, addr in shards.items()), return_exceptions=True
        )
        now = time.monotonic()
        for sid, result in zip(shards, results, strict=True):
            if isinstance(result, BaseException):
                self.invalidate(sid)
                continue
            if self._epochs.get(sid, 0) != epochs[sid]:
                continue  # written to meanwhile: what we read may miss it
            for ix in result:
                if ix.summary is not None:
                    self._entries[(sid, ix.index)] = _Entry(ix.summary, now)

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh_once()
            except Exception as exc:  # noqa: BLE001 - summaries are an optimization
                log.debug("summary refresh failed: %s", exc)
            await asyncio.sleep(self.interval)
