"""The global result order (DESIGN §6), in one place for shards and coordinators.

Score descending, then entity_id ascending bytewise, then tenant_id, then
entity_type. Comparing UTF-8 bytes (not Python str order) keeps the order the
same in every language a client is written in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.domain import EntityKey

OrderKey = tuple[float, bytes, bytes, bytes]


def order_key(score: float, key: EntityKey) -> OrderKey:
    return (-float(score), key.entity_id.encode(), key.tenant_id.encode(), key.entity_type.encode())


def global_order(
    scores: np.ndarray, keys: Sequence[EntityKey], groups: np.ndarray | None = None
) -> np.ndarray:
    """The permutation that puts (scores[i], keys[i]) in the global order —
    within each group when `groups` (an int per row: a batch's query) is
    given, the groups in ascending order.

    numpy sorts by (group,) score; only runs of equal scores within a group
    (rare, but real: the same vector stored under two ids) are ordered by
    their keys, exactly as `order_key` orders them."""
    n = scores.shape[0]
    if n < 2:
        return np.arange(n, dtype=np.int64)
    neg = -scores.astype(np.float64)
    perm = np.argsort(neg, kind="stable") if groups is None else np.lexsort((neg, groups))
    ordered = scores[perm]
    same = ordered[1:] == ordered[:-1]
    if groups is not None:
        same &= groups[perm][1:] == groups[perm][:-1]
    ties = np.flatnonzero(same).tolist()
    lo = 0
    for j, t in enumerate(ties):
        if j == 0 or t != ties[j - 1] + 1:
            lo = t  # a run of equal scores begins at position t
        if j + 1 == len(ties) or ties[j + 1] != t + 1:
            run = perm[lo : t + 2].tolist()  # ... and ends at t + 1
            run.sort(key=lambda i: order_key(float(scores[i]), keys[i]))
            perm[lo : t + 2] = run
    return perm
