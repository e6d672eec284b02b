"""Shadow traffic: a route's shadow bundle is searched alongside the primary,
in the background, and only compared — overlap of the result keys and the
latency difference — never returned. A shadow failure must never reach the
caller, nor slow it down."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from coordinator import metrics
from coordinator.model import SearchResult


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
