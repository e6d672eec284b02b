"""Calibration of approximate scores onto the exact scale."""

from __future__ import annotations

import numpy as np

from coordinator.calibration import Calibrator
from coordinator.merge import Hit
from core.domain import EntityKey, VersionRef

IX = VersionRef("ix", "v1")


def hits(scores: list[float], shard: str = "s") -> list[Hit]:
    return [Hit(s, EntityKey("t", "i", f"{shard}{n}"), shard, 0) for n, s in enumerate(scores)]


def test_learns_a_linear_map_per_shard_and_applies_it() -> None:
    rng = np.random.default_rng(0)
    cal = Calibrator(min_pairs=8)
    # shard a's index scores are 2×exact + 5; shard b's are exact − 1
    for _ in range(5):
        exact = sorted(rng.normal(size=10), reverse=True)
        cal.calibrate("a", IX, hits([2 * e + 5 for e in exact], "a"), exact[:2])
        cal.calibrate("b", IX, hits([e - 1 for e in exact], "b"), exact[:2])
    exact = sorted(rng.normal(size=6), reverse=True)
    got = cal.calibrate("a", IX, hits([2 * e + 5 for e in exact], "a"), [])
    np.testing.assert_allclose([h.score for h in got], exact, atol=1e-9)
    got = cal.calibrate("b", IX, hits([e - 1 for e in exact], "b"), [])
    np.testing.assert_allclose([h.score for h in got], exact, atol=1e-9)


def test_before_enough_pairs_only_sampled_hits_change() -> None:
    cal = Calibrator(min_pairs=8)
    got = cal.calibrate("a", IX, hits([10.0, 9.0, 8.0]), [1.0])
    assert [h.score for h in got] == [1.0, 9.0, 8.0]
