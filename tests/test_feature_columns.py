"""Feature columns (core/feature_columns.py) and the column-at-a-time
resolution (registry.feature_values.resolve_columns), by property:
take/concat/where agree with the same operations on Python lists, and
`resolve_columns` gives, value for value, what `resolve_value` — the rules
stated one value at a time — gives, for random definitions (dtype, default,
SLA, a fill per reason), groups (TTL, privacy), rows, times and requests."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import EntityKey
from core.feature_columns import DTYPES, concat, from_values, repeat
from registry.feature_batches import stored_rows
from registry.feature_catalog import GroupRead
from registry.feature_values import resolve_columns, resolve_group, resolved_values
from registry.features import (
    DefaultPolicy,
    FeatureDefinition,
    FeatureDType,
    FeatureGroup,
    Fill,
    FillAction,
    GroupRow,
    GroupSchema,
    MissingReason,
    PrivacyClass,
)

S = 1_000_000
NOW = 1_800_000_000 * S
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
CANONICAL = {
    "int64": st.integers(-(2**63), 2**63 - 1),
    "float64": FINITE,
    "string": st.text(max_size=6),
    "bool": st.booleans(),
    "float_list": st.lists(FINITE, max_size=3).map(tuple),
}


@st.composite
def columns_and_lists(draw: st.DrawFn) -> tuple[str, list[Any]]:
    dtype = draw(st.sampled_from(DTYPES))
    return dtype, draw(st.lists(st.none() | CANONICAL[dtype], max_size=10))


@settings(max_examples=200, deadline=None)
@given(columns_and_lists(), columns_and_lists(), st.data())
def test_take_concat_and_where_match_list_operations(
    a: tuple, b: tuple, data: st.DataObject
) -> None:
    dtype, xs = a
    ys = data.draw(st.lists(st.none() | CANONICAL[dtype], max_size=10))
    col, other = from_values(dtype, xs), from_values(dtype, ys)
    assert col.to_list() == xs
    assert concat([col, other, col]).to_list() == xs + ys + xs
    if xs:
        idx = data.draw(st.lists(st.integers(0, len(xs) - 1), max_size=15))
        assert col.take(np.array(idx, dtype=np.int64)).to_list() == [xs[i] for i in idx]
        mask = data.draw(st.lists(st.booleans(), min_size=len(xs), max_size=len(xs)))
        fill = data.draw(st.none() | CANONICAL[dtype])
        mixed = col.where(np.array(mask, dtype=bool), repeat(dtype, fill, len(xs)))
        assert mixed.to_list() == [fill if m else x for x, m in zip(xs, mask, strict=True)]


@st.composite
def fills(draw: st.DrawFn, dtype: str, stale: bool) -> Fill:
    actions = [FillAction.FEATURE_DEFAULT, FillAction.NULL, FillAction.CONSTANT]
    action = draw(st.sampled_from(actions + ([FillAction.KEEP_VALUE] if stale else [])))
    if action is FillAction.CONSTANT:
        return Fill(action, draw(CANONICAL[dtype]))
    return Fill(action)


@st.composite
def definitions(draw: st.DrawFn, i: int, privacy: PrivacyClass) -> FeatureDefinition:
    dtype = draw(st.sampled_from(DTYPES))
    policy = DefaultPolicy(
        **{r.value: draw(fills(dtype, r is MissingReason.STALE)) for r in MissingReason}
    )
    return FeatureDefinition(
        f"f{i}",
        "v1",
        "user",
        FeatureDType(dtype),
        privacy,
        "t",
        freshness_sla_seconds=draw(st.none() | st.integers(1, 15)),
        default_value=draw(st.none() | CANONICAL[dtype]),
        default_policy=policy,
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[GroupRead, list[GroupRow | None], bool]:
    privacy = draw(st.sampled_from(list(PrivacyClass)))
    defs = [draw(definitions(i, privacy)) for i in range(draw(st.integers(1, 4)))]
    group = FeatureGroup(
        "g",
        "v1",
        "user",
        tuple(d.ref for d in defs),
        ttl_seconds=draw(st.none() | st.integers(1, 15)),
    )
    schema = GroupSchema(group, tuple(defs))
    read_defs = draw(st.lists(st.sampled_from(defs), min_size=1, max_size=4, unique=True))
    names = tuple(d.name for d in read_defs)
    read = GroupRead(schema, names, names, tuple(read_defs))
    rows: list[GroupRow | None] = []
    for n in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):
            rows.append(None)
            continue
        # Whole seconds often, so rows fall exactly on a TTL or SLA boundary.
        ts = (
            NOW
            - draw(st.integers(-5, 20)) * S
            - draw(st.just(0) | st.integers(-1, 1) | st.integers(0, S))
        )
        values = {d.name: draw(st.none() | CANONICAL[d.dtype.value]) for d in defs}
        rows.append(GroupRow(EntityKey("t", "user", f"u{n}"), ts, ts, values))
    return read, rows, draw(st.booleans())


@settings(max_examples=400, deadline=None)
@given(cases())
def test_resolving_columns_equals_resolving_each_value(case: tuple) -> None:
    read, rows, personalized = case
    got = resolved_values(resolve_columns(read, stored_rows(read.schema, rows), NOW, personalized))
    want = [resolve_group(read, row, NOW, personalized) for row in rows]
    assert got == want


@settings(max_examples=100, deadline=None)
@given(cases(), st.sampled_from([MissingReason.TIMEOUT, MissingReason.UNAVAILABLE,
                                 MissingReason.NOT_COMPUTED]))  # fmt: skip
def test_a_failed_fetch_resolves_like_each_value(case: tuple, reason: MissingReason) -> None:
    read, rows, personalized = case
    got = resolved_values(resolve_columns(read, reason, NOW, personalized, rows=len(rows)))
    assert got == [resolve_group(read, reason, NOW, personalized) for _ in rows]


def test_codes_are_the_wire_enum_values() -> None:
    from core.feature_columns import FILLS, MISSING_REASONS
    from protos.vecshard.v1 import common_pb2 as pb

    for code, name in enumerate(MISSING_REASONS):
        assert (
            pb.MissingReason.Value(name.upper() if name else "MISSING_REASON_UNSPECIFIED") == code
        )
    wire_fill = {"null": "FILL_NULL"}
    for code, name in enumerate(FILLS):
        want = wire_fill.get(name or "", (name or "FILL_ACTION_UNSPECIFIED").upper())
        assert pb.FillAction.Value(want) == code
    assert set(MISSING_REASONS[1:]) == {r.value for r in MissingReason}
    assert set(FILLS[1:]) == {f.value for f in FillAction}
