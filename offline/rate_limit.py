"""A token bucket over rows, for jobs that must not flood the cluster
(`vecshard embeddings backfill --max-rows-per-s`). The clock and the sleep
are arguments, so its arithmetic is tested without waiting."""

from __future__ import annotations

import time
from collections.abc import Callable


class RowRateLimiter:
    def __init__(
        self,
        rows_per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rows_per_second <= 0:
            raise ValueError(f"rows_per_second={rows_per_second}: expected > 0")
        self.rate = rows_per_second
        self.clock = clock
        self.sleep = sleep
        self._next = clock()

    def acquire(self, rows: int) -> float:
        """Blocks until `rows` more rows keep the average at or below the
        rate since the first call; returns how long it waited. A batch larger
        than one second's worth goes at once and pays afterwards."""
        now = self.clock()
        start = max(self._next, now)
        wait = start - now
        if wait > 0:
            self.sleep(wait)
        self._next = start + rows / self.rate
        return wait
