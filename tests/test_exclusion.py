"""Bucket exclusion never drops a matching record (property), and does
exclude where min/max prove it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.exclusion import excludes
from core.filters import And, Eq, Filter, In, Not, Or, Range, matches
from tests.test_filters import filters

records = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "n": st.integers(-5, 5),
            "x": st.floats(-3, 3, allow_nan=False),
            "cat": st.sampled_from(["a", "b"]),
        },
    ),
    min_size=1,
    max_size=20,
)


def stats_of(recs: list[dict]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for attr in ("n", "x"):
        vals = [r[attr] for r in recs if attr in r]
        if vals:
            out[attr] = (min(vals), max(vals))
    return out


@settings(max_examples=400)
@given(records, filters)
def test_never_excludes_a_bucket_with_a_match(recs: list[dict], flt: Filter) -> None:
    if excludes(flt, stats_of(recs)):
        assert not any(matches(flt, r) for r in recs)


def test_excludes_what_min_max_rule_out() -> None:
    stats = {"price": (10.0, 20.0)}
    assert excludes(Range("price", gte=25), stats)
    assert excludes(Range("price", lt=10), stats)
    assert not excludes(Range("price", lte=10), stats)
    assert excludes(Eq("price", 5), stats) and not excludes(Eq("price", 15), stats)
    assert excludes(In("price", (1, 30)), stats) and not excludes(In("price", (1, 12)), stats)
    assert excludes(And((Eq("cat", "a"), Range("price", gt=20))), stats)
    assert not excludes(Or((Eq("cat", "a"), Range("price", gt=20))), stats)
    assert excludes(Or((Range("price", gt=20), Range("price", lt=5))), stats)
    assert not excludes(Not(Range("price", gt=20)), stats)
    assert not excludes(Range("other", gt=0), stats)
    assert not excludes(Range("price", gt=99), None)


BIG = 1_700_000_000_123_456_789  # a nanosecond timestamp: past float64's exact integers
bigs = st.integers(BIG - 300, BIG + 300)


@settings(max_examples=300)
@given(
    st.lists(bigs, min_size=1, max_size=8),
    st.one_of(
        st.builds(Eq, st.just("ts"), bigs),
        st.builds(In, st.just("ts"), st.lists(bigs, min_size=1, max_size=3).map(tuple)),
        st.builds(Range, st.just("ts"), gte=bigs),
        st.builds(Range, st.just("ts"), lte=bigs),
        st.builds(Range, st.just("ts"), gt=bigs),
        st.builds(Range, st.just("ts"), lt=bigs),
    ),
)
def test_int64_stats_sent_as_float64_never_exclude_a_match(values: list[int], flt: Filter) -> None:
    """Shards keep INT attributes as int64 and send a bucket's min/max as
    float64, rounded past 2**53: the bucket holding an exact match was
    excluded (found in review)."""
    stats = {"ts": (float(min(values)), float(max(values)))}  # as the shard sends them
    if excludes(flt, stats):
        assert not any(matches(flt, {"ts": v}) for v in values)
