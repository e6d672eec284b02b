"""Who answers for a replica that failed: one rule for searches and lookups.

When a call to a replica fails for a reason about the shard (down, shutting
down, overloaded), its buckets are asked of other serving replicas: untried
ones that *together* hold every bucket the failed call answered for — one
replica when a single one holds them all, else the fewest found greedily.
When no such set exists the buckets go unanswered: a search reports them
missing, a lookup fails with the shard's error.

Why "together": with ring placement a shard's buckets have their other
replicas on different shards. Insisting on one replica holding all of them
loses buckets that are in fact available; asking for more than the failed
call answered for (all the shard's buckets) refuses covers that would do.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from registry.model import Placement
from registry.snapshot import Snapshot

# (shard id, address, which of the buckets in question it holds)
Alternate = tuple[str, str, tuple[int, ...]]


def alternates(
    snap: Snapshot, placement: Placement, buckets: Sequence[int], exclude: Collection[str]
) -> tuple[Alternate, ...]:
    """Serving replicas of any of `buckets` but `exclude`, by shard id, each
    with the buckets (of those) it holds, in the order of `buckets`."""
    found: dict[str, list[int]] = {}
    for b in buckets:
        for sid in placement.buckets[b]:
            if sid not in exclude and snap.serving_shard(sid) is not None:
                found.setdefault(sid, []).append(b)
    return tuple((sid, snap.shards[sid].address, tuple(bs)) for sid, bs in sorted(found.items()))


def failover_cover(
    buckets: Sequence[int], candidates: Sequence[Alternate], tried: Collection[str]
) -> list[Alternate] | None:
    """The untried candidates that together hold all `buckets` (greedy: the
    one holding most of what is left first, shard id on a tie), each with the
    buckets it answers for (disjoint); None when they cannot cover them."""
    left = set(buckets)
    pool = {sid: (addr, set(held)) for sid, addr, held in candidates if sid not in tried}
    out: list[Alternate] = []
    while left:
        best = max(pool, key=lambda s: len(pool[s][1] & left), default=None)
        if best is None or not pool[best][1] & left:
            return None
        address, held = pool.pop(best)
        out.append((best, address, tuple(b for b in buckets if b in held & left)))
        left -= held
    return out
