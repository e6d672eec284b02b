"""Score calibration for approximate answers (the request opted out of exact
reranking).

A shard's index scores (IVF-PQ's from quantized codes, HNSW's float32
distances) are on the canonical scale but off by that shard's own error, so
merging them raw with other shards' would rank by accident. With every
approximate answer a shard also returns the exact canonical scores of its
first hits (a reference sample from the same query). Each answer is calibrated
by that sample alone before the merge, through exact ≈ a·approximate + b
fitted by least squares on it. Exact answers (the default) are never touched.

Why the answer's own sample only: the same query on the same snapshot must
get the same answer alone or in a SearchBatch, whatever queries came before,
on any coordinator (DESIGN §6). A model kept per shard across queries made
an answer depend on them.

The sampled hits take their exact scores: they are known, and a map alone
kept little of the recall they bring (0.592 against 0.684 at hash l2
below). The others go through one increasing map (a > 0), so they keep
their index order, shifted down where needed so that none lands above a
sampled hit of the same answer: exact scores for the sampled hits and raw
ones for the rest, as before until a model was learned, let an unsampled
hit whose index score overestimated jump above its shard's best. Where the
sample fits no increasing slope (one hit, equal approximate scores, or
noise giving a slope ≤ 0) the map is an offset, a = 1: the scores are on
the canonical scale already. No sample (a hit deleted meanwhile): scores
pass unchanged.

Recall@10 of merged answers (4 shards, 40,000 Gaussian-mixture vectors,
IVF-PQ 64 lists × 8 bytes, nprobe 16, k' = 10 per shard; raw / the previous
rolling model / this): hash placement, l2 0.568 / 0.697 / 0.684, inner
product 0.261 / 0.358 / 0.349; centroid placement 0.568 / 0.572 / 0.568 and
0.262 / 0.264 / 0.259. The previous model's small edge came from a slope
fitted on up to 256 pairs of earlier queries: what made answers depend on
them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coordinator.merge import Hit


def fit(approximate: Sequence[float], exact: Sequence[float]) -> tuple[float, float]:
    """(a, b), a > 0, with exact ≈ a·approximate + b over the sample pairs."""
    x = np.asarray(approximate, dtype=np.float64)
    y = np.asarray(exact, dtype=np.float64)
    if x.size >= 2 and np.ptp(x) > 0:
        # Differences too small (or too large) to square give no slope, not a
        # warning: 0 or inf below, and then the offset.
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            xc = x - x.mean()
            spread = float(xc @ xc)
            a = float(xc @ (y - y.mean())) / spread if 0 < spread < np.inf else 0.0
            b = float(y.mean() - a * x.mean())
        if a > 0 and np.isfinite(a) and np.isfinite(b):
            return a, b
    return 1.0, float((y - x).mean())


def calibrate(hits: Sequence[Hit], reference: Sequence[float]) -> list[Hit]:
    """The answer's hits on the exact scale by its own reference sample (the
    exact scores of its first hits, in order): those take their exact
    scores, the rest the sample's map, lowered where needed so that none
    goes above a sampled hit of its own answer."""
    n = min(len(hits), len(reference))
    if n == 0:
        return list(hits)
    out = [h._replace(score=float(r)) for h, r in zip(hits[:n], reference, strict=False)]
    if len(hits) == n:
        return out
    a, b = fit([h.score for h in hits[:n]], reference[:n])
    floor = min(reference[:n])
    b = min(b, floor - a * hits[n].score)  # hits[n]: the best unsampled one
    if not np.isfinite(b):  # a score past float32's range in the sample
        return out + [h._replace(score=min(h.score, floor)) for h in hits[n:]]
    # min(): the shifted line can still round a hair above `floor`.
    return out + [h._replace(score=min(a * h.score + b, floor)) for h in hits[n:]]
