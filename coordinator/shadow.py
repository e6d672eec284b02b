"""Shadow traffic: a route's shadow bundle is searched alongside the primary,
in the background, and only compared — overlap of the result keys and the
latency difference — never returned. A shadow failure must never reach the
caller, nor slow it down: nor may its load, so at most `SHADOWS_IN_FLIGHT`
run at once and the rest are skipped (counted), never queued — unbounded,
every search started a second one that admission never counted, and under
load the shadow arm took the shards' capacity from the callers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from coordinator import metrics
from coordinator.model import SearchResult

SHADOWS_IN_FLIGHT = 32


class ShadowSlots:
    """Shadow searches in flight (the event loop's thread only)."""

    def __init__(self, limit: int = SHADOWS_IN_FLIGHT) -> None:
        self.limit = limit
        self.in_flight = 0

    def run(
        self, route: str, primary: SearchResult, search: Callable[[], Awaitable[SearchResult]]
    ) -> Coroutine[Any, Any, None] | None:
        """The comparison to spawn, or None when the slots are full (skipped)."""
        if self.in_flight >= self.limit:
            metrics.SHADOW_SKIPPED.labels(route).inc()
            return None
        self.in_flight += 1
        return self._compare(route, primary, search)

    async def _compare(
        self, route: str, primary: SearchResult, search: Callable[[], Awaitable[SearchResult]]
    ) -> None:
        try:
            await compare_shadow(route, primary, search)
        finally:
            self.in_flight -= 1


def overlap(a: SearchResult, b: SearchResult) -> float:
    """Jaccard overlap of the two results' keys (1.0 when both are empty)."""
    ka, kb = {h.key for h in a.hits}, {h.key for h in b.hits}
    return len(ka & kb) / len(ka | kb) if ka | kb else 1.0


async def compare_shadow(
    route: str, primary: SearchResult, search: Callable[[], Awaitable[SearchResult]]
) -> None:
    """Runs the shadow search and records how it compares with `primary`."""
    try:
        shadow = await search()
    except Exception:  # noqa: BLE001 - a shadow failure must never reach callers
        metrics.SHADOW_ERRORS.labels(route).inc()
        return
    metrics.SHADOW_OVERLAP.labels(route).observe(overlap(primary, shadow))
    metrics.SHADOW_LATENCY_DELTA.labels(route).observe(
        (shadow.diagnostics.fanout_ms - primary.diagnostics.fanout_ms) / 1e3
    )
