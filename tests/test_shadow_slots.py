"""Shadow searches run in the background, at most a few at once: every
primary search started one, unbounded and uncounted by admission, so under
load the shadow arm took the shards' capacity from the callers (found in
review). Beyond the slots a shadow search is skipped and counted, never
queued, and a failed one frees its slot."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from coordinator.model import SearchResult
from coordinator.shadow import ShadowSlots


def test_shadow_searches_beyond_the_slots_are_skipped_and_slots_free_again() -> None:
    async def main() -> None:
        slots = ShadowSlots(limit=2)
        release = asyncio.Event()
        primary: SearchResult = None  # type: ignore[assignment]  # never read: the searches fail

        async def held() -> SearchResult:
            await release.wait()
            raise RuntimeError("the shadow bundle failed")

        def skipped() -> float:
            return REGISTRY.get_sample_value("vecshard_shadow_skipped_total", {"route": "r"}) or 0.0

        before = skipped()
        running = [slots.run("r", primary, held) for _ in range(2)]
        assert all(c is not None for c in running) and slots.in_flight == 2
        assert slots.run("r", primary, held) is None and skipped() == before + 1
        tasks = [asyncio.ensure_future(c) for c in running if c is not None]
        release.set()
        await asyncio.gather(*tasks)  # a failure stays in the shadow arm
        assert slots.in_flight == 0
        again = slots.run("r", primary, held)
        assert again is not None
        await again

    asyncio.run(main())
