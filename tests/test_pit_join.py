"""Point-in-time joins: no leakage from the future, TTL expiry, the backfill
cutoff, out-of-order rows, privacy, several entity types per event, and a
property test against a brute-force per-row reference."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument
from offline.parquet_store import TIMESTAMP, OfflineStore, rows_to_table
from offline.pit_join import (
    build_training_set,
    load_group_tables,
    point_in_time_join,
    point_in_time_values,
)
from registry.feature_catalog import FeatureCatalog
from registry.feature_values import FeatureValue, resolve_group
from registry.features import (
    FeatureDefinition,
    FeatureDType,
    FeatureGroup,
    FeatureRef,
    FeatureSet,
    FillAction,
    GroupRow,
    MissingReason,
    PrivacyClass,
)
from tests.feature_catalog import (
    ACTIVITY,
    CATALOG,
    HOUR,
    ITEM,
    MINUTE,
    PROFILE,
    RANKER,
    SESSION,
    T0,
    S,
    item,
    row,
    user,
)

ACT = FeatureSet("act", "v1", (FeatureRef("user_activity", "v1", "ctr_7d"),))
SESS = FeatureSet("sess", "v1", (FeatureRef("session", "v1", "session_clicks"),))
CAT = FeatureCatalog.build(
    [*CATALOG.definitions.values(), *(g.group for g in CATALOG.groups.values()), ACT, SESS, RANKER]
)


def events(
    *rows: tuple[str, int], tenant: str = "acme", items: list[str] | None = None
) -> pa.Table:
    cols = {
        "tenant_id": [tenant] * len(rows),
        "user_id": [u for u, _ in rows],
        "event_time": pa.array([t for _, t in rows], pa.int64()),
        "label": list(range(len(rows))),
    }
    if items is not None:
        cols["item_id"] = items
    return pa.table(cols)


def table(group: VersionRef, rows: list[GroupRow]) -> pa.Table:
    return rows_to_table(CAT.schema(group), rows)


def test_a_later_value_never_leaks_into_an_earlier_event() -> None:
    feats = {
        ACTIVITY: table(
            ACTIVITY,
            [row(user("u"), T0 + 20 * S, ctr_7d=0.2), row(user("u"), T0 + 10 * S, ctr_7d=0.1)],
        )
    }
    ev = events(("u", T0 + 15 * S), ("u", T0 + 5 * S), ("u", T0 + 25 * S), ("u", T0 + 10 * S))
    out = point_in_time_join(ev, ACT, CAT, feats, diagnostics=True)
    assert out.column("user_activity__ctr_7d").to_pylist() == [0.1, 0.0, 0.2, 0.1]
    assert out.column("user_activity__ctr_7d__missing_reason").to_pylist() == [
        None, "entity_not_found", None, None,
    ]  # fmt: skip
    assert out.column("user_activity__ctr_7d__staleness_us").to_pylist() == [5 * S, None, 5 * S, 0]
    assert out.column("label").to_pylist() == [0, 1, 2, 3]  # event order kept


def test_values_past_the_ttl_expire_and_report_as_absent() -> None:
    feats = {SESSION: table(SESSION, [row(user("u"), T0, session_clicks=4)])}
    ev = events(("u", T0 + 29 * MINUTE), ("u", T0 + 30 * MINUTE), ("u", T0 + 30 * MINUTE + 1))
    vals = point_in_time_values(ev, SESS, CAT, feats)["session__session_clicks"]
    assert [v.value for v in vals] == [4, 4, 0]
    assert vals[2] == FeatureValue(0, MissingReason.ENTITY_NOT_FOUND, FillAction.FEATURE_DEFAULT)


def test_backfills_generated_after_the_cutoff_are_ignored() -> None:
    rows = [
        row(user("u"), T0, gen=T0 + S, ctr_7d=0.1),  # served at the time
        row(user("u"), T0, gen=T0 + 10 * HOUR, ctr_7d=0.15),  # recomputed by a backfill
        row(user("u"), T0 + MINUTE, gen=T0 + 10 * HOUR, ctr_7d=0.3),  # backfilled, never served
    ]
    feats = {ACTIVITY: table(ACTIVITY, rows)}
    ev = events(("u", T0 + 2 * MINUTE))
    with_cutoff = point_in_time_values(ev, ACT, CAT, feats, generated_cutoff=T0 + HOUR)
    assert with_cutoff["user_activity__ctr_7d"][0].value == 0.1
    latest = point_in_time_values(ev, ACT, CAT, feats)
    assert latest["user_activity__ctr_7d"][0].value == 0.3
    # Same event: the later generation wins, whatever the row order.
    for order in (rows, rows[::-1]):
        same = point_in_time_values(
            events(("u", T0 + S)), ACT, CAT, {ACTIVITY: table(ACTIVITY, order)}
        )
        assert same["user_activity__ctr_7d"][0].value == 0.15


def test_out_of_order_rows_give_the_same_answer() -> None:
    rows = [
        row(user("u"), T0 + i * MINUTE, gen=T0 + (7 - i) * MINUTE, ctr_7d=i / 10) for i in range(8)
    ]
    ev = events(*[("u", T0 + i * MINUTE + 30 * S) for i in range(8)])
    forward = point_in_time_join(ev, ACT, CAT, {ACTIVITY: table(ACTIVITY, rows)})
    backward = point_in_time_join(ev, ACT, CAT, {ACTIVITY: table(ACTIVITY, rows[::-1])})
    assert forward.equals(backward)
    assert forward.column("user_activity__ctr_7d").to_pylist() == [i / 10 for i in range(8)]


def test_stale_values_follow_the_definitions_policy() -> None:
    feats = {ACTIVITY: table(ACTIVITY, [row(user("u"), T0, ctr_7d=0.4)])}
    vals = point_in_time_values(events(("u", T0 + HOUR), ("u", T0 + HOUR + 1)), ACT, CAT, feats)
    assert vals["user_activity__ctr_7d"] == [
        FeatureValue(0.4, None, None, HOUR, T0),
        FeatureValue(-1.0, MissingReason.STALE, FillAction.CONSTANT, HOUR + 1, T0),
    ]


def test_several_entity_types_tenants_privacy_and_missing_groups() -> None:
    feats = {
        PROFILE: table(PROFILE, [row(user("u"), T0, age_bucket="25-34", account_days=9, premium=True)]),
        ACTIVITY: table(ACTIVITY, [row(user("u"), T0, ctr_7d=0.5, taste=[1, 2])]),
        ITEM: table(ITEM, [row(item("i"), T0, popularity=0.7, category="books"),
                           row(item("i", "other"), T0, popularity=0.9, category="toys")]),
    }  # fmt: skip
    ev = events(("u", T0 + MINUTE), ("v", T0 + MINUTE), items=["i", "i"])
    out = point_in_time_join(ev, RANKER, CAT, feats)
    assert out.column("user_profile__age_bucket").to_pylist() == ["25-34", "unknown"]
    assert out.column("user_profile__account_days").to_pylist() == [9, -1]
    assert out.column("user_ctr").to_pylist() == [0.5, 0.0]
    assert out.column("user_activity__taste").to_pylist() == [[1.0, 2.0], [0.0, 0.0]]
    assert out.column("item_stats__popularity").to_pylist() == [0.7, 0.7]  # tenant acme only
    assert out.column("item_stats__category").type == pa.string()
    assert out.column("item_quality__quality").to_pylist() == [0.25, 0.25]  # not computed
    anon = point_in_time_values(ev, RANKER, CAT, feats, personalized=False)
    assert anon["user_ctr"][0] == FeatureValue(
        0.0, MissingReason.PRIVACY_DISABLED, FillAction.FEATURE_DEFAULT
    )
    assert anon["user_profile__premium"][0].value is True
    assert anon["item_quality__quality"][0].missing_reason is MissingReason.NOT_COMPUTED


def test_timestamp_typed_event_times_match_integer_ones() -> None:
    feats = {ACTIVITY: table(ACTIVITY, [row(user("u"), T0, ctr_7d=0.5)])}
    ev = events(("u", T0 - 1), ("u", T0))
    as_ts = ev.set_column(
        2, "event_time", ev.column("event_time").cast(TIMESTAMP).cast(pa.timestamp("ns"))
    )
    assert point_in_time_values(ev, ACT, CAT, feats) == point_in_time_values(as_ts, ACT, CAT, feats)


def test_bad_event_tables_are_refused() -> None:
    feats = {ACTIVITY: table(ACTIVITY, [])}
    with pytest.raises(InvalidArgument, match="no column 'user_id'"):
        point_in_time_values(events(("u", T0)).drop_columns(["user_id"]), ACT, CAT, feats)
    with pytest.raises(InvalidArgument, match="expected a timestamp or int64"):
        point_in_time_values(
            events(("u", T0)).set_column(2, "event_time", pa.array(["x"])), ACT, CAT, feats
        )
    with pytest.raises(InvalidArgument, match="already have a column"):
        ev = events(("u", T0)).append_column("user_activity__ctr_7d", pa.array([1.0]))
        point_in_time_join(ev, ACT, CAT, feats)


def test_event_times_in_another_unit_are_refused() -> None:
    """Found in review: nanoseconds in an int64 column were read as µs, so the
    event took its entity's latest row, one written after the event; a
    timestamp[ns] with digits below a µs raised a raw ArrowInvalid."""
    feats = {ACTIVITY: table(ACTIVITY, [row(user("u"), T0 + 10 * S, ctr_7d=0.5)])}
    ev = events(("u", T0 + 5 * S))
    as_ns = ev.set_column(2, "event_time", pa.array([(T0 + 5 * S) * 1000], pa.int64()))
    with pytest.raises(InvalidArgument, match="event 0: .* reads as nanoseconds"):
        point_in_time_values(as_ns, ACT, CAT, feats)
    fine = pa.array([(T0 + 5 * S) * 1000 + 1], pa.timestamp("ns", tz="UTC"))
    with pytest.raises(InvalidArgument, match="truncate it to microseconds"):
        point_in_time_values(ev.set_column(2, "event_time", fine), ACT, CAT, feats)
    before_1970 = ev.set_column(2, "event_time", pa.array([-1], pa.int64()))
    with pytest.raises(InvalidArgument, match="event_time"):
        point_in_time_values(before_1970, ACT, CAT, feats)


def test_an_end_day_that_is_no_day_is_refused(tmp_path: Path) -> None:
    store = OfflineStore(tmp_path)
    store.write_features(CAT.schema(ACTIVITY), [row(user("u"), T0, ctr_7d=0.5)])
    with pytest.raises(InvalidArgument, match="end_date '2023-11-5'"):
        load_group_tables(events(("u", T0)), ACT, CAT, store, end_date="2023-11-5")


def test_training_set_from_the_offline_store_reads_only_what_it_needs(tmp_path: Path) -> None:
    store = OfflineStore(tmp_path)
    sess_rows = [
        row(user("u"), T0 - 3 * 86_400 * S, session_clicks=1),
        row(user("u"), T0, session_clicks=2),
    ]
    store.write_features(CAT.schema(SESSION), sess_rows)
    store.write_features(CAT.schema(ACTIVITY), [row(user("u"), T0, ctr_7d=0.5)])
    ev = events(("u", T0 + MINUTE))
    tables = load_group_tables(ev, RANKER, CAT, store)
    assert set(tables) == {SESSION, ACTIVITY}  # groups never written are not computed
    assert tables[SESSION].num_rows == 1  # older than first event - TTL: pruned
    assert set(load_group_tables(ev, RANKER, CAT, store, personalized=False)) == set()
    out = build_training_set(ev, RANKER, CAT, store)
    assert out.column("session__session_clicks").to_pylist() == [2]
    assert out.column("user_ctr").to_pylist() == [0.5]


# --- property test ----------------------------------------------------------

X = FeatureDefinition(
    "x",
    "v1",
    "user",
    FeatureDType.FLOAT64,
    PrivacyClass.PUBLIC,
    "o",
    freshness_sla_seconds=6,
    default_value=-1.0,
)


def brute_force(
    read, rows: list[GroupRow], key: EntityKey, t: int, cutoff: int | None
) -> tuple[FeatureValue, ...]:
    best = None
    for r in rows:
        if (
            r.entity != key
            or r.feature_timestamp > t
            or (cutoff is not None and r.generated_at > cutoff)
        ):
            continue
        if best is None or (r.feature_timestamp, r.generated_at) >= (
            best.feature_timestamp,
            best.generated_at,
        ):
            best = r
    return resolve_group(read, best, t, True)


keys = st.tuples(st.sampled_from(["t1", "t2"]), st.sampled_from(["a", "b", "c", "ab"]))
# Few distinct times, so equal (entity, time) pairs and generation ties are common.
secs = st.integers(0, 10).map(lambda s: T0 + s * S)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(keys, secs, secs, st.none() | st.floats(-5, 5, allow_nan=False)), max_size=25
    ),
    # An event may lack the entity (null id): it never matches a row.
    evs=st.lists(
        st.tuples(
            keys | st.tuples(st.just("t1"), st.none()), st.integers(0, 14).map(lambda s: T0 + s * S)
        ),
        min_size=1,
        max_size=15,
    ),
    ttl=st.sampled_from([None, 2, 6]),
    cutoff=st.none() | secs,
)
def test_join_matches_a_brute_force_reference(
    rows: list, evs: list, ttl: int | None, cutoff: int | None
) -> None:
    group = FeatureGroup("g", "v1", "user", (X.ref,), ttl_seconds=ttl)
    fs = FeatureSet("s", "v1", (FeatureRef("g", "v1", "x"),))
    cat = FeatureCatalog.build([X, group, fs])
    (read,) = cat.plan(fs)
    group_rows = [
        GroupRow(EntityKey(t, "user", e), ts, gen, {"x": v}) for (t, e), ts, gen, v in rows
    ]
    ev = pa.table(
        {
            "tenant_id": [t for (t, _), _ in evs],
            "user_id": pa.array([e for (_, e), _ in evs], pa.string()),
            "event_time": pa.array([et for _, et in evs], pa.int64()),
        }
    )
    got = point_in_time_values(
        ev, fs, cat, {group.ref: rows_to_table(read.schema, group_rows)}, generated_cutoff=cutoff
    )["g__x"]
    want = [
        brute_force(read, group_rows, EntityKey(t, "user", e), et, cutoff)[0] for (t, e), et in evs
    ]
    assert got == want
