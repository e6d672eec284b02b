"""Filter-aware bucket exclusion, exact only: a bucket is skipped only when
its per-attribute min/max prove that no record in it can match the filter.

Conservative by construction: anything the stats cannot decide (strings,
negations, attributes without stats, missing stats) keeps the bucket, so
exclusion can never drop a result — a false negative would be a wrong answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from core.filters import And, Eq, Filter, In, Not, Or, Range

# attribute → (min, max) over the bucket's live records that carry it
BucketStats = Mapping[str, tuple[float, float]]


_EXACT = float(2**53)


def _widened(bounds: tuple[float, float]) -> tuple[float, float]:
    """A bucket's min/max one float64 step wider: the shards keep integer
    attributes as int64 and send their range as float64, which rounds past
    2**53 (a nanosecond timestamp) by up to half a step — a value equal to
    the true max compared greater than the rounded one, and the only bucket
    holding it was excluded (found in review)."""
    lo, hi = bounds
    if max(abs(lo), abs(hi)) < _EXACT:  # every int64 below converts exactly
        return lo, hi
    return math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf)


def _outside(lo: float, hi: float, r: Range) -> bool:
    """True when [lo, hi] and the range cannot intersect."""
    return (
        (r.gte is not None and hi < r.gte)
        or (r.gt is not None and hi <= r.gt)
        or (r.lte is not None and lo > r.lte)
        or (r.lt is not None and lo >= r.lt)
    )


def excludes(f: Filter | None, stats: BucketStats | None) -> bool:
    """Whether no record of a bucket with these stats can satisfy `f`."""
    if f is None or stats is None:
        return False
    match f:
        case And(filters):
            return any(excludes(s, stats) for s in filters)
        case Or(filters):
            return all(excludes(s, stats) for s in filters)
        case Not():
            return False
        case Range(attr) if attr in stats:
            return _outside(*_widened(stats[attr]), f)
        case Eq(attr, value) if (
            attr in stats and isinstance(value, int | float) and not isinstance(value, bool)
        ):
            lo, hi = _widened(stats[attr])
            return value < lo or value > hi
        case In(attr, values) if attr in stats and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            lo, hi = _widened(stats[attr])
            numbers = [v for v in values if isinstance(v, int | float)]  # all of them (guard)
            return all(v < lo or v > hi for v in numbers)
    # A leaf on an attribute no record in the bucket carries is false for all
    # of them only if the stats say the attribute is absent — they do not say
    # that (stats list attributes present), so keep the bucket.
    return False
