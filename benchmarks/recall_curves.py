"""Comparing recall/QPS curves: QPS at a recall, and cluster ÷ in-process at equal recall.

Two systems run at the same search parameter rarely land on the same recall (a sharded
HNSW searches ``ef`` candidates in every shard, so it usually recalls more), so comparing
them point by point at equal parameters flatters one side. The comparison users make is at
equal recall: the QPS each system reaches at *at least* a given recall, i.e. the best point
of its Pareto frontier at or above it. Pure functions over ``(recall, qps)`` pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Recall is a mean over a few hundred queries; differences below this are measurement noise.
RECALL_TOLERANCE = 1e-3


@dataclass(frozen=True)
class CurvePoint:
    recall: float
    qps: float
    label: str = ""


def qps_at_recall(
    points: Sequence[CurvePoint], recall: float, tolerance: float = RECALL_TOLERANCE
) -> CurvePoint | None:
    """The fastest point whose recall is at least ``recall`` (minus ``tolerance``)."""
    eligible = [p for p in points if p.recall >= recall - tolerance]
    return max(eligible, key=lambda p: (p.qps, p.recall)) if eligible else None


@dataclass(frozen=True)
class Ratio:
    """Cluster ÷ in-process for one cluster point, at equal-or-better in-process recall."""

    cluster: CurvePoint
    inprocess: CurvePoint | None

    @property
    def ratio(self) -> float | None:
        if self.inprocess is None or self.inprocess.qps <= 0:
            return None
        return self.cluster.qps / self.inprocess.qps


def ratios_at_equal_recall(
    cluster: Sequence[CurvePoint], inprocess: Sequence[CurvePoint]
) -> list[Ratio]:
    return [Ratio(point, qps_at_recall(inprocess, point.recall)) for point in cluster]
