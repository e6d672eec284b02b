"""Summary leases (issue 14, defect 3), as plain data: a write inside every
live summary is acknowledged at once; one that escapes a summary waits for
that summary to expire, and only for the summaries it escapes."""

from __future__ import annotations

import numpy as np
import pytest

from core.bounds import score_upper_bound
from core.domain import AttrValue, Metric
from shard_server.summary import BucketStats
from shard_server.summary_leases import NewRow, SummaryLeases


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


BALL = (np.array([[0.0, 0.0]], np.float32), np.array([1.0], np.float32))
STATS = {0: BucketStats(3, {"price": (1.0, 10.0, 3)}, frozenset({"t"}))}


def row(x: float, y: float, bucket: int = 0, tenant: str = "t", **attrs: AttrValue) -> NewRow:
    return NewRow(np.array([x, y], np.float32), bucket, tenant, attrs)


def leases_with_one_summary(clock: Clock, lease: float = 2.0) -> SummaryLeases:
    leases = SummaryLeases(clock)
    leases.served(*BALL, STATS, lease)
    return leases


def test_nothing_served_means_no_wait() -> None:
    assert SummaryLeases(Clock()).hold_until([row(50, 50)]) == 0.0


def test_a_row_inside_the_balls_and_ranges_is_acknowledged_at_once() -> None:
    leases = leases_with_one_summary(Clock())
    assert leases.hold_until([row(0.5, 0.5, price=5.0), row(0.0, -0.99)]) == 0.0
    # Exactly on the sphere counts as outside: rounding must never call in what is out.
    assert leases.hold_until([row(0.0, -1.0)]) > 0.0


@pytest.mark.parametrize(
    "escaping",
    [
        row(3.0, 0.0),  # outside the ball: a bound would be too low
        row(0.1, 0.1, tenant="new"),  # a tenant the bucket did not list
        row(0.1, 0.1, price=11.0),  # above the bucket's range
        row(0.1, 0.1, price=0.5),  # below it
        row(0.1, 0.1, bucket=0, tenant="t2"),
    ],
)
def test_an_escaping_row_waits_until_the_lease_expires(escaping: NewRow) -> None:
    clock = Clock()
    leases = leases_with_one_summary(clock, lease=2.0)
    assert leases.hold_until([row(0.0, 0.0), escaping]) == pytest.approx(102.0)
    clock.now = 102.5  # expired: nothing left to wait for
    assert leases.hold_until([escaping]) == 0.0
    assert leases.live == 0


def test_only_summaries_the_row_escapes_count() -> None:
    clock = Clock()
    leases = leases_with_one_summary(clock, lease=2.0)
    clock.now = 101.0
    # A later, wider summary (say after the shard grew) with a longer lease.
    leases.served(np.array([[0.0, 0.0]], np.float32), np.array([5.0], np.float32), STATS, 5.0)
    assert leases.hold_until([row(3.0, 0.0)]) == pytest.approx(102.0)  # escapes the first only
    assert leases.hold_until([row(9.0, 0.0)]) == pytest.approx(106.0)  # escapes both


def test_a_bucket_without_stats_is_never_excluded_so_never_waits_for_stats() -> None:
    leases = leases_with_one_summary(Clock())
    assert leases.hold_until([row(0.1, 0.1, bucket=7, tenant="other")]) == 0.0


def test_rows_called_inside_are_never_scored_above_the_bound() -> None:
    centroids = np.array([[1.0, 2.0, 3.0]], np.float32)
    rng = np.random.default_rng(3)
    points = rng.normal(size=(200, 3)).astype(np.float32)
    radii = np.array([1.001 * np.linalg.norm(points - centroids, axis=1).max()], np.float32)
    leases = SummaryLeases(Clock())
    leases.served(centroids, radii, {}, 2.0)
    inside = [NewRow(p, 0, "t", {}) for p in points]
    assert leases.hold_until(inside) == 0.0
    for metric in Metric:
        q = rng.normal(size=3).astype(np.float32)
        bound = score_upper_bound(metric, q, centroids, radii)
        exact = (
            -np.linalg.norm(points.astype(np.float64) - q, axis=1)
            if metric is Metric.L2
            else points.astype(np.float64)
            @ (q / np.linalg.norm(q) if metric is Metric.COSINE else q)
        )
        assert exact.max() <= bound


def test_the_writers_own_leases_never_delay_it() -> None:
    clock = Clock()
    leases = SummaryLeases(clock)
    leases.served(*BALL, STATS, 2.0, holder="coord-a")
    assert leases.hold_until([row(9.0, 9.0)], writer="coord-a") == 0.0
    assert leases.hold_until([row(9.0, 9.0)], writer="coord-b") == pytest.approx(102.0)
    assert leases.hold_until([row(9.0, 9.0)]) == pytest.approx(102.0)  # unknown writer


def test_after_a_wait_no_summaries_are_served_for_the_quiet_period() -> None:
    clock = Clock()
    leases = SummaryLeases(clock, quiet_seconds=5.0)
    leases.served(*BALL, STATS, 2.0)
    assert leases.may_serve()
    assert leases.hold_until([row(9.0, 9.0)]) > 0
    assert not leases.may_serve()
    clock.now = 104.0  # the lease expired; the load goes on, nothing to wait for
    assert leases.hold_until([row(20.0, 20.0)]) == 0.0
    clock.now = 105.1
    assert leases.may_serve()
