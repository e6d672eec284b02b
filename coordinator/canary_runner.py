"""The canary query set run on a schedule through each route (DESIGN §11):
recall@k of the route's primary bundle on its labelled queries, exported as
`vecshard_canary_recall{route}` next to the baseline its index version
recorded when it was evaluated for promotion
(`vecshard_canary_recall_baseline{route}`), so an alert fires when live
recall drifts below what the version was promoted on (the data changed, a
shard rebuilt a worse index, a replica lost rows).

The queries go through the route's own search path (`run_search`: the same
fanout, merge and access checks as a caller's search), scoped to each
query's tenant, under the configured purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from coordinator import quality_metrics
from coordinator.model import Access, SearchQuery
from coordinator.search import SearchExecutor
from coordinator.search_request import run_search
from coordinator.snapshots import RegistryView
from core.domain import VersionRef
from core.errors import VecshardError
from core.recall import mean, recall_at_k
from registry.quality import CanaryQuerySet, canary_matrix
from registry.snapshot import ResolvedRoute, Snapshot, resolve_route

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CanaryPlan:
    canary: CanaryQuerySet
    k: int
    baseline: float | None


def canary_plan(snap: Snapshot, resolved: ResolvedRoute) -> CanaryPlan | None:
    """The canary set for a resolved route: the one its index version's gates
    name, else the latest version of any set for its query embedding."""
    query_embedding = resolved.bundle.query_embedding
    gates = resolved.index.gates
    k = gates.k if gates else 10
    chosen = None
    if gates and gates.canary_set:
        name, _, version = gates.canary_set.partition("@")
        chosen = snap.canary_sets.get(VersionRef(name, version))
    if chosen is None:
        matching = [c for c in snap.canary_sets.values() if c.query_embedding == query_embedding]
        chosen = max(matching, key=lambda c: (c.name, c.version), default=None)
    if chosen is None or chosen.query_embedding != query_embedding:
        return None
    evaluation = snap.evaluations.get(resolved.index.ref)
    baseline = (
        evaluation.canary_recall
        if evaluation is not None and evaluation.canary_set == chosen.label
        else None
    )
    return CanaryPlan(chosen, k, baseline)


def exported_routes() -> set[str]:
    """Routes this process exports a canary recall or baseline for."""
    return {
        sample.labels["route"]
        for gauge in (quality_metrics.CANARY_RECALL, quality_metrics.CANARY_BASELINE)
        for family in gauge.collect()
        for sample in family.samples
    }


def forget_route(route: str) -> None:
    """Drops a route's canary gauges (none set is fine)."""
    for gauge in (quality_metrics.CANARY_RECALL, quality_metrics.CANARY_BASELINE):
        with contextlib.suppress(KeyError):
            gauge.remove(route)


class CanaryRunner:
    def __init__(
        self,
        registry: RegistryView,
        executor: SearchExecutor,
        interval: float,
        purpose: str = "monitoring",
        timeout: float = 10.0,
        principal: str = "admin",
    ) -> None:
        self.registry = registry
        self.executor = executor
        self.interval = interval
        self.purpose = purpose
        self.principal = principal
        self.timeout = timeout

    async def run_route(self, snap: Snapshot, route: str) -> float | None:
        resolved = resolve_route(snap, route, primary=True)
        plan = canary_plan(snap, resolved)
        if plan is None:
            # Nothing measures this route now (its bundle's query embedding
            # has no canary set): the last version's numbers must not stand
            # for it, or the drop alert fires on what it no longer serves.
            forget_route(route)
            return None
        matrix = canary_matrix(plan.canary, resolved.query_family.dimension)
        t0 = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self.timeout
        results = await asyncio.gather(
            *(
                run_search(
                    self.registry,
                    self.executor,
                    SearchQuery(
                        route,
                        Access(q.tenant_id, self.purpose, principal=self.principal),
                        row,
                        plan.k,
                    ),
                    resolved,
                    deadline,
                    t0,
                )
                for q, row in zip(plan.canary.queries, matrix, strict=True)
            )
        )
        recall = mean(
            [
                recall_at_k([h.key.entity_id for h in r.hits], q.relevant_ids, plan.k)
                for r, q in zip(results, plan.canary.queries, strict=True)
            ]
        )
        quality_metrics.CANARY_RECALL.labels(route).set(recall)
        if plan.baseline is not None:
            quality_metrics.CANARY_BASELINE.labels(route).set(plan.baseline)
        else:
            # The previous index version's baseline must not stand for this
            # one's (the alert compares them).
            with contextlib.suppress(KeyError):  # none was set
                quality_metrics.CANARY_BASELINE.remove(route)
        return recall

    async def run_once(self) -> dict[str, float]:
        snap = self.registry.snapshot
        out = {}
        for route in sorted(snap.routes):
            try:
                recall = await self.run_route(snap, route)
            except VecshardError as exc:
                log.warning("canary run of route %s failed: %s", route, exc)
                quality_metrics.CANARY_RUNS.labels(route, "failed").inc()
                continue
            if recall is not None:
                quality_metrics.CANARY_RUNS.labels(route, "measured").inc()
                out[route] = recall
        for route in exported_routes() - set(snap.routes):  # deleted routes
            forget_route(route)
        return out

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except Exception as exc:  # noqa: BLE001 - a broken run must not end the schedule
                log.warning("canary run failed: %s", exc)
