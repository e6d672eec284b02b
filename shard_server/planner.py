"""How one segment answers one query: exactly, by its index, or by its index
with the filter pushed down.

Approximate indexes lose recall when a filter removes most rows (an HNSW walk
or the probed IVF lists hold few allowed rows), while an exact scan of a small
allowed set is both exact and cheap. So the planner counts the allowed rows
(the vectorized filter mask is computed anyway) and, below a selectivity or
row-count threshold, scans them exactly instead. Pure function over counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Method(StrEnum):
    EXACT = "exact"  # scan the allowed rows
    ANN = "ann"  # the index, nothing filtered out
    FILTERED_ANN = "filtered_ann"  # the index with an allow-list pushed down


@dataclass(frozen=True)
class PlannerPolicy:
    # Allowed share of a segment's rows below which it is scanned exactly.
    exact_below_selectivity: float = 0.03
    # Allowed rows at or below which a segment is scanned exactly whatever its size.
    exact_below_rows: int = 1024
    # Widening of the index search under a filter grows like 1/selectivity, capped here.
    max_filter_boost: float = 8.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.exact_below_selectivity <= 1.0:
            raise ValueError(
                f"exact_below_selectivity {self.exact_below_selectivity} must be in [0, 1]"
            )
        if self.exact_below_rows < 0:
            raise ValueError("exact_below_rows must be ≥ 0")
        if self.max_filter_boost < 1.0:
            raise ValueError("max_filter_boost must be ≥ 1")


@dataclass(frozen=True)
class Plan:
    method: Method
    # ≥ 1: how much wider than its defaults the index should search.
    boost: float = 1.0


EXACT = Plan(Method.EXACT)


def plan_segment_search(
    total_rows: int, allowed_rows: int, indexed: bool, force_exact: bool, policy: PlannerPolicy
) -> Plan:
    """`allowed_rows` passed tenant, filter and deletes out of `total_rows`."""
    if not indexed or force_exact or allowed_rows <= policy.exact_below_rows:
        return EXACT
    selectivity = allowed_rows / total_rows
    if selectivity < policy.exact_below_selectivity:
        return EXACT
    if allowed_rows == total_rows:
        return Plan(Method.ANN)
    return Plan(Method.FILTERED_ANN, min(1.0 / selectivity, policy.max_filter_boost))
