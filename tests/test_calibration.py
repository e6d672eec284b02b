"""Calibration of approximate (skip_rerank) scores onto the exact scale: each
answer by its own reference sample alone — the same answer alone or in a
batch — its sampled hits at their exact scores, the rest below them in their
index order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from coordinator.calibration import calibrate, fit
from coordinator.merge import Hit
from coordinator.model import ShardAnswer, ShardQuery
from coordinator.replicas import ReplicaTracker
from coordinator.search import SearchExecutor
from core.domain import EntityKey, VersionRef
from registry.model import IndexVersion, Placement, ShardMember
from registry.snapshot import Snapshot
from tests.static_registry import INDEX

IX = IndexVersion(INDEX.name, INDEX.version, VersionRef("f", "v1"), num_buckets=2)
SNAP = Snapshot(
    revision=1,
    placements={INDEX: Placement(INDEX, (("s1",), ("s2",)))},
    shards={s: ShardMember(s, f"mem://{s}") for s in ("s1", "s2")},
)


def hits(prefix: str, scores: Sequence[float], shard: str) -> list[Hit]:
    return [Hit(s, EntityKey("t", "item", f"{prefix}{i}"), shard, 0) for i, s in enumerate(scores)]


class ApproximateShard:
    """s1 answers with index scores that overestimate (its top four with
    exact ones as the sample); s2 answers exactly. A query's first value
    picks its answer."""

    def __init__(self, shard_id: str) -> None:
        self.shard_id = shard_id

    async def search(
        self, index: VersionRef, queries: Sequence[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        return [self._answer(int(q.vector[0])) for q in queries]

    def _answer(self, n: int) -> ShardAnswer:
        if self.shard_id == "s2":
            return ShardAnswer.of(hits(f"y{n}-", [3.2], "s2"), 1)
        if n == 0:  # index scores [10 … 5], exact 0.5·index − 1 for the sampled four
            scores, reference = [10.0, 9, 8, 7, 6, 5], (4.0, 3.5, 3.0, 2.5)
        else:  # other queries: another scale
            scores, reference = [5.0, 4, 3, 2], (6.0, 5.0, 4.0, 3.0)
        return ShardAnswer.of(hits(f"x{n}-", scores, "s1"), 6, 0, True, reference)


def executor() -> SearchExecutor:
    shards = {s: ApproximateShard(s) for s in ("s1", "s2")}
    return SearchExecutor(lambda sid, addr: shards[sid], ReplicaTracker())  # type: ignore[arg-type, return-value]  # search() only


def query(n: int) -> ShardQuery:
    return ShardQuery(np.array([float(n), 0.0], np.float32), 4, "t", skip_rerank=True)


def ids(found: list[Hit]) -> list[str]:
    return [h.key.entity_id for h in found]


def test_unsampled_hits_stay_below_their_shards_sampled_ones() -> None:
    """The sampled hits took their exact scores and the rest kept their index
    scores: x0-4 and x0-5 (index 6 and 5) went above x0-0 (exact 4)."""
    alone = asyncio.run(executor().run(SNAP, IX, SNAP.placement(INDEX), query(0), [0, 1], 5.0))
    assert ids(alone.hits) == ["x0-0", "x0-1", "y0-0", "x0-2"]
    np.testing.assert_allclose([h.score for h in alone.hits], [4.0, 3.5, 3.2, 3.0])


def test_the_same_query_gets_the_same_answer_alone_or_after_others_in_a_batch() -> None:
    """A model per shard learned from earlier queries (a batch's included)
    calibrated the query differently in a batch than alone (found in review)."""
    ex = executor()
    alone = asyncio.run(ex.run(SNAP, IX, SNAP.placement(INDEX), query(0), [0, 1], 5.0))
    batch = [query(1), query(2), query(3), query(0)]
    batched = asyncio.run(ex.run_many(SNAP, IX, SNAP.placement(INDEX), batch, [0, 1], 5.0))
    again = asyncio.run(ex.run(SNAP, IX, SNAP.placement(INDEX), query(0), [0, 1], 5.0))
    assert batched[-1].hits == alone.hits == again.hits


@given(
    scores=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=12).map(
        lambda s: sorted(s, reverse=True)
    ),
    reference=st.lists(st.floats(-1e3, 1e3), max_size=4),
)
def test_sampled_hits_take_their_exact_scores_and_the_rest_stay_below_in_order(
    scores: list[float], reference: list[float]
) -> None:
    got = [h.score for h in calibrate(hits("x", scores, "s"), reference)]
    n = min(len(scores), len(reference))
    assert got[:n] == reference[:n]
    rest = got[n:] if n else got
    assert rest == sorted(rest, reverse=True)
    assert all(s <= min(reference[:n]) for s in rest) if n else got == scores


def test_a_sample_without_a_slope_gives_an_offset() -> None:
    assert fit([2.0], [5.0]) == (1.0, 3.0)
    assert fit([2.0, 2.0], [5.0, 6.0]) == (1.0, 3.5)
    assert fit([3.0, 2.0], [1.0, 2.0]) == (1.0, -1.0)  # slope -1 from noise
    a, b = fit([10.0, 8.0, 6.0], [4.0, 3.0, 2.0])
    assert (a, b) == (0.5, -1.0)
    assert calibrate(hits("x", [1.0], "s"), []) == hits("x", [1.0], "s")
    # index 10, 9 (sampled: exact 3, 2.9), 6: the offset 1 − 7 would put it at
    # 2.9 … it is shifted to just the lowest sampled score
    got = calibrate(hits("x", [10.0, 9.0, 6.0], "s"), [3.0, 2.9])
    assert [h.score for h in got][:2] == [3.0, 2.9] and got[2].score <= 2.9


def test_a_sample_too_narrow_or_too_wide_to_square_fits_an_offset() -> None:
    """Found by hypothesis in the full suite: differences of 1e-167 square to
    0 (a division by zero warning, an error under pytest's filters)."""
    assert fit([3.034096640801381e-167, 0.0], [0.0, 0.0]) == (
        1.0,
        float(-3.034096640801381e-167 / 2),
    )
    assert fit([1e300, -1e300], [1.0, 2.0])[0] == 1.0
    assert fit([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == (2.0, 0.0)
