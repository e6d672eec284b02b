"""The recall re-checks spend from a CPU budget (`shard_server.recall_check`):
the bucket's arithmetic on a fake clock, and a sampler over a real partition
that skips, and counts, what its budget cannot pay for."""

from __future__ import annotations

import operator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from registry.model import IndexKind
from shard_server.model import Query
from shard_server.recall_check import CpuBudget, RecallSampler
from tests.polling import poll
from tests.test_batched_search import DIM, build


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_refills_at_its_share_and_banks_at_most_its_burst() -> None:
    clock = Clock()
    budget = CpuBudget(0.05, burst_seconds=2.0, clock=clock)  # 5 % of a core, 0.1 s banked
    assert budget.available()
    budget.spend(0.25)  # a costly re-check: the credit goes below zero
    assert not budget.available()
    clock.now += 2.0  # + 0.1 s of CPU: still -0.05
    assert not budget.available()
    clock.now += 1.1  # + 0.055: positive again
    assert budget.available()
    clock.now += 3600.0  # an idle hour banks no more than the burst
    assert budget.available()
    budget.spend(0.1)
    assert not budget.available()


@pytest.mark.parametrize("share, burst", [(0.0, 1.0), (1.5, 1.0), (0.1, 0.0)])
def test_budgets_out_of_range_are_refused(share: float, burst: float) -> None:
    with pytest.raises(ValueError, match="CPU budget"):
        CpuBudget(share, burst_seconds=burst)


def samples(outcome: str) -> float:
    labels = {"index": "ix@v1", "outcome": outcome}
    return REGISTRY.get_sample_value("vecshard_recall_samples_total", labels) or 0.0


def test_re_checks_past_the_budget_are_skipped_and_counted(tmp_path: Path) -> None:
    part = build(tmp_path, IndexKind.HNSW, ("t0",), churn=False)
    rng = np.random.default_rng(1)
    queries = [Query(rng.normal(size=DIM).astype(np.float32), 10, "t0") for _ in range(40)]
    before = {o: samples(o) for o in ("measured", "over_budget", "dropped")}
    # A frozen clock: the budget never refills, so it pays for its first
    # check (the credit starts full) and perhaps a few more, never for 40.
    sampler = RecallSampler(1.0, capacity=64, budget=CpuBudget(1e-6, clock=lambda: 0.0))

    def accounted() -> float:
        return sum(samples(o) - before[o] for o in before)

    sampler.start()
    try:
        for n, q in enumerate(queries, 1):
            # One at a time: each offer sees what the checks before it spent.
            sampler.offer(part, [q], part.search([q]))
            assert poll(accounted, partial(operator.le, n), timeout=10) == n
    finally:
        sampler.stop()
    got = {o: samples(o) - before[o] for o in before}
    assert got["measured"] >= 1 and got["over_budget"] >= 30
    assert got["measured"] + got["over_budget"] + got["dropped"] == len(queries)
    assert sampler.estimate(part.index.ref) is not None
