"""Archives deprecated index versions whose rollback retention has ended
(DESIGN §11; rules in `registry.migration`). Every coordinator runs it; the
archive is a compare-and-swap on the index version, so when two race, one
wins and the other loses the compare or finds it archived already — only
the one that archived it logs and counts it. Shards drop the data when the
archived status reaches them through their watch."""

from __future__ import annotations

import asyncio
import logging

from coordinator import quality_metrics
from coordinator.snapshots import SnapshotSource
from core.domain import VersionRef
from core.errors import Conflict, FailedPrecondition
from registry.change_writes import archive
from registry.migration import due_for_archive, utc_now
from registry.registry import Registry

log = logging.getLogger(__name__)


class RetentionSweeper:
    def __init__(self, cache: SnapshotSource, registry: Registry, interval: float) -> None:
        self.cache = cache
        self.registry = registry
        self.interval = interval

    async def sweep(self) -> list[VersionRef]:
        archived = []
        for ref in due_for_archive(self.cache.snapshot, utc_now()):
            try:
                moved = await asyncio.to_thread(archive, self.registry, ref)
            except Conflict:
                # Another coordinator's sweeper (or an operator) changed it while
                # this one tried; the next round sees what became of it.
                log.info("retention of %s: it changed while archiving; next round", ref)
                continue
            except FailedPrecondition as exc:  # re-promoted by a rollback since, ...
                log.info("retention of %s: not archived: %s", ref, exc)
                continue
            if not moved:
                log.debug("retention of %s: archived already (by another coordinator)", ref)
                continue
            log.info("archived %s: its rollback retention ended", ref)
            quality_metrics.ARCHIVED.inc()
            archived.append(ref)
        return archived

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - etcd down: try again next round
                log.warning("retention sweep failed: %s", exc)
