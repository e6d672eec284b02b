"""Which sealed segments to merge next. Pure function over segment counts.

Compaction rewrites segments without their deleted rows and merges small ones
so a shard does not search dozens of tiny segments. It is tiered like an LSM
tree: only once `min_segments` small segments exist are they merged, so a row
is rebuilt a few times over its life, not once per seal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CompactionPolicy:
    # Merge once this many segments are small (and take that many, smallest first).
    min_segments: int = 4
    # A segment with fewer live rows than this is small.
    small_rows: int = 80_000
    # A segment whose deleted share reaches this is rewritten without them.
    deleted_ratio: float = 0.2

    def __post_init__(self) -> None:
        if self.min_segments < 2:
            raise ValueError("compaction min_segments must be ≥ 2")
        if self.small_rows < 1:
            raise ValueError("compaction small_rows must be ≥ 1")
        if not 0.0 < self.deleted_ratio <= 1.0:
            raise ValueError(f"compaction deleted_ratio {self.deleted_ratio} must be in (0, 1]")


@dataclass(frozen=True)
class SegmentStat:
    id: str
    rows: int
    deleted: int
    # A flat segment now large enough to be rebuilt as the index's kind.
    upgradable: bool = False

    @property
    def live(self) -> int:
        return self.rows - self.deleted


def plan_compaction(
    stats: Sequence[SegmentStat], policy: CompactionPolicy, force: bool = False
) -> list[str]:
    """Ids of the segments to merge into one (empty: nothing to do).

    `force` merges everything into one segment whenever that changes anything
    (more than one segment, deleted rows, or an upgrade).
    """
    if force:
        if len(stats) > 1 or any(s.deleted or s.upgradable for s in stats):
            return [s.id for s in stats]
        return []
    rewrite = [
        s for s in stats if s.upgradable or (s.rows and s.deleted / s.rows >= policy.deleted_ratio)
    ]
    if rewrite:
        return [s.id for s in rewrite]
    small = sorted((s for s in stats if s.live < policy.small_rows), key=lambda s: (s.live, s.id))
    if len(small) >= policy.min_segments:
        return [s.id for s in small[: policy.min_segments]]
    return []
