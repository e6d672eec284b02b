"""Load shedding: a coordinator holds a bounded number of requests in flight
and refuses the rest with RESOURCE_EXHAUSTED at once. Why not queue: a queue
only turns overload into timeouts for everyone, and clients retrying with
backoff spread the load better than a queue can."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from coordinator import metrics
from coordinator.config import Limits
from core.errors import ResourceExhausted


class Admission:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.in_flight = 0

    @contextlib.asynccontextmanager
    async def admit(self, weight: int = 1) -> AsyncIterator[None]:
        """Holds `weight` requests (a batch of searches counts each) for the
        duration of the block, or sheds the whole batch."""
        self.limits.input.check_count("searches", weight, "max_searches_per_request")
        # A batch heavier than the limit runs alone rather than never: with
        # nothing in flight, it was shed on an idle coordinator for good.
        if self.in_flight and self.in_flight + weight > self.limits.max_in_flight_requests:
            metrics.SHED.labels("coordinator_in_flight").inc()
            raise ResourceExhausted(
                f"coordinator has {self.in_flight} searches in flight (limit "
                f"{self.limits.max_in_flight_requests}); retry with backoff"
            )
        self.in_flight += weight
        try:
            yield
        finally:
            self.in_flight -= weight
