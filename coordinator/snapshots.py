"""The coordinator's view of the registry: the watched snapshot, and re-reads
that never block the event loop.

A re-read (`registry.reread`: fresh for its caller, single-flight,
rate-limited, skipped at an unchanged revision) blocks on etcd, so it runs in
a worker thread. Awaiting callers coalesce on one future: while one read is in
a thread, everyone who arrives waits for the next one together, so a burst of
misses costs one thread and one etcd round trip, not one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from coordinator.access import require_tenant
from coordinator.buckets import require_trained
from coordinator.dual_write import mirror_indexes
from core.domain import VersionRef
from core.errors import FailedPrecondition, NotFound, Unavailable
from registry.model import EmbeddingFamily, IndexVersion
from registry.snapshot import Snapshot, indexes_for_embedding, require_writable

T = TypeVar("T")


class SnapshotSource(Protocol):
    """`registry.watcher.SnapshotCache`, as the coordinator uses it."""

    @property
    def snapshot(self) -> Snapshot: ...

    def reread(self) -> Snapshot:
        """Blocking; at least as new as etcd when the call began."""
        ...


def _retrieved(fut: asyncio.Future[Snapshot]) -> None:
    """Every caller may have given up (cancelled): the outcome is still read,
    so asyncio does not log it as never retrieved."""
    if not fut.cancelled():
        fut.exception()


class RegistryView:
    def __init__(self, source: SnapshotSource) -> None:
        self.source = source
        # Callers waiting for a read that has not begun yet (joinable).
        self._next: asyncio.Future[Snapshot] | None = None
        # The read now in a worker thread (not joinable: it may predate a caller).
        self._running: asyncio.Future[Snapshot] | None = None
        self._leaders: set[asyncio.Task[None]] = set()

    @property
    def snapshot(self) -> Snapshot:
        return self.source.snapshot

    async def reread(self) -> Snapshot:
        """A snapshot at least as new as etcd when this call began."""
        loop = asyncio.get_running_loop()
        for left in (self._next, self._running):
            if left is not None and left.get_loop() is not loop:
                self._next = self._running = None  # left by a loop that has ended
        if self._next is None:
            self._next = loop.create_future()
            self._next.add_done_callback(_retrieved)
            task = asyncio.ensure_future(self._lead(self._next))
            self._leaders.add(task)  # a strong reference until it finishes
            task.add_done_callback(self._leaders.discard)
        return await asyncio.shield(self._next)

    async def _lead(self, fut: asyncio.Future[Snapshot]) -> None:
        try:
            if self._running is not None and not self._running.done():
                await asyncio.wait([self._running])
            # Why here: the thread's read begins after this point, hence after
            # every caller that joined `fut`; later callers need a later read.
            self._next = None
            self._running = asyncio.ensure_future(asyncio.to_thread(self.source.reread))
            fut.set_result(await self._running)
        except Exception as exc:  # noqa: BLE001 - every caller sharing the read gets it
            if not fut.done():
                fut.set_exception(exc)
        finally:
            if self._next is fut:
                self._next = None
            if not fut.done():
                fut.cancel()

    async def fresh(
        self,
        lookup: Callable[[Snapshot], T],
        retry_on: tuple[type[Exception], ...] = (NotFound,),
    ) -> tuple[Snapshot, T]:
        """`lookup` on the current snapshot; if it raises `retry_on`, once more
        on a re-read: what a request names may have been created a moment
        ago and not have reached the watch yet."""
        snap = self.snapshot
        try:
            return snap, lookup(snap)
        except retry_on:
            snap = await self.reread()
            return snap, lookup(snap)

    async def embedding_indexes(
        self, ref: VersionRef, tenant_id: str | None = None
    ) -> tuple[Snapshot, EmbeddingFamily, list[IndexVersion]]:
        """The index versions built on an embedding version (lookups read the
        first). Created a moment ago, the version may reach the watch before
        its index does: FAILED_PRECONDITION re-reads too."""

        def found(s: Snapshot) -> list[IndexVersion]:
            if tenant_id is not None:
                require_tenant(s, tenant_id)  # registered a moment ago elsewhere?
            return indexes_for_embedding(s, ref)

        snap, indexes = await self.fresh(found, (NotFound, FailedPrecondition))
        return snap, snap.family(ref.name), indexes

    async def write_indexes(
        self, ref: VersionRef, tenant_id: str
    ) -> tuple[Snapshot, EmbeddingFamily, list[IndexVersion], list[IndexVersion]]:
        """What a write of `ref` goes to: its own index versions, and those
        dual-write copies it into (`coordinator.dual_write`), all read from
        one snapshot — re-read, like a missing version, when a centroid-placed
        one has no centroids here yet (trained a moment ago through another
        coordinator?)."""

        def writable(s: Snapshot) -> tuple[list[IndexVersion], list[IndexVersion]]:
            require_tenant(s, tenant_id)
            require_writable(s, ref)
            indexes = indexes_for_embedding(s, ref)
            for index in indexes:
                require_trained(s, index)
            return indexes, mirror_indexes(s, ref)

        snap, (indexes, mirrored) = await self.fresh(writable, (NotFound, FailedPrecondition))
        return snap, snap.family(ref.name), indexes, mirrored

    async def moved(self, snap: Snapshot, deadline: float | None = None) -> Snapshot | None:
        """After a shard was unreachable: the re-read snapshot if shards moved
        since `snap` (a restarted shard comes back on a new address), else None.

        None too when the registry cannot be read (etcd unreachable) or not
        before `deadline` (event-loop time): nothing is known to have moved,
        and the caller keeps what it has — the answers of the other shards
        from the last good snapshot (DESIGN §3, §5). Raising here failed a
        whole search that had a partial answer in hand."""
        left = None if deadline is None else deadline - asyncio.get_running_loop().time()
        if left is not None and left <= 0:
            return None
        try:
            # The read is shared (see `reread`): giving up on it leaves it running
            # for the others who wait on it.
            fresh = await asyncio.wait_for(self.reread(), left)
        except (Unavailable, TimeoutError):
            return None
        return None if dict(fresh.shards) == dict(snap.shards) else fresh

    async def retry_if_moved(self, snap: Snapshot, op: Callable[[Snapshot], Awaitable[T]]) -> T:
        """Runs `op` on the snapshot; if a shard was unreachable and shards
        have moved since, once more on the fresh snapshot. Every shard
        operation is idempotent (writes carry their source_version), so a
        retry is safe."""
        try:
            return await op(snap)
        except Unavailable:
            fresh = await self.moved(snap)
            if fresh is None:
                raise
            return await op(fresh)
