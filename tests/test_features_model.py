"""Feature definitions, groups and sets: codec round trips, validation,
immutability of versions, and the resolution rules shared online and offline."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core.domain import VersionRef
from core.errors import FailedPrecondition, InvalidArgument, NotFound
from registry import codec
from registry.feature_catalog import FeatureCatalog, readable_groups
from registry.feature_values import FeatureValue, missing_value, resolve_group, resolve_value
from registry.features import (
    DefaultPolicy,
    FeatureDefinition,
    FeatureDType,
    FeatureGroup,
    FeatureObject,
    FeatureRef,
    FeatureSet,
    Fill,
    FillAction,
    GroupRow,
    MissingReason,
    PrivacyClass,
    StoredValue,
    check_compatible_update,
)
from tests.feature_catalog import (
    ACTIVITY,
    CATALOG,
    DEFINITIONS,
    GROUPS,
    HOUR,
    MINUTE,
    PROFILE,
    RANKER,
    SESSION,
    T0,
    row,
    user,
)

CTR = CATALOG.definitions[VersionRef("ctr_7d", "v1")]
AGE = CATALOG.definitions[VersionRef("age_bucket", "v1")]


def roundtrip(obj: FeatureObject) -> FeatureObject:
    spec = json.loads(codec.encode(obj))["spec"]
    return codec.from_dict(type(obj), spec)


@pytest.mark.parametrize("obj", [*DEFINITIONS, *GROUPS, RANKER], ids=lambda o: str(o.ref))
def test_every_kind_round_trips_through_the_registry_codec(obj: FeatureObject) -> None:
    assert roundtrip(obj) == obj


def test_values_are_canonical_so_decoded_objects_compare_equal() -> None:
    d = FeatureDefinition(
        "emb", "v1", "user", FeatureDType.FLOAT_LIST, PrivacyClass.PUBLIC, "o",
        default_value=[1, 2.5],
        default_policy=DefaultPolicy(timeout=Fill(FillAction.CONSTANT, [0])),
    )  # fmt: skip
    assert d.default_value == (1.0, 2.5)
    assert d.default_policy.timeout.constant == (0.0,)
    f = FeatureDefinition(
        "x", "v1", "user", FeatureDType.FLOAT64, PrivacyClass.PUBLIC, "o", default_value=3
    )
    assert f.default_value == 3.0 and isinstance(f.default_value, float)
    assert roundtrip(d) == d and roundtrip(f) == f


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"default_value": "three"}, "not a valid int64"),
        ({"default_value": True}, "not a valid int64"),
        ({"default_value": 2**63}, "does not fit"),
        ({"name": "a:b"}, "not a valid name"),
        ({"name": "entity_id"}, "reserved"),
        ({"owner": ""}, "owner is empty"),
        ({"freshness_sla_seconds": 0}, r"must be 1\.\.\d+ seconds"),
        ({"freshness_sla_seconds": 2**62}, r"must be 1\.\.253402300799 seconds"),  # wraps in µs
        (
            {"default_policy": DefaultPolicy(no_history=Fill(FillAction.KEEP_VALUE))},
            "only to stale",
        ),
        (
            {"default_policy": DefaultPolicy(timeout=Fill(FillAction.CONSTANT))},
            "without a constant",
        ),
        ({"default_policy": DefaultPolicy(timeout=Fill(FillAction.NULL, 3))}, "constant is set"),
        (
            {"default_policy": DefaultPolicy(timeout=Fill(FillAction.CONSTANT, 1.5))},
            "timeout.constant",
        ),
    ],
)
def test_definition_invariants_are_checked_on_construction(changes: dict, message: str) -> None:
    base = FeatureDefinition("n", "v1", "user", FeatureDType.INT64, PrivacyClass.PUBLIC, "o")
    with pytest.raises(InvalidArgument, match=message):
        dataclasses.replace(base, **changes)


def test_non_finite_floats_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="not finite"):
        FeatureDefinition(
            "x",
            "v1",
            "user",
            FeatureDType.FLOAT64,
            PrivacyClass.PUBLIC,
            "o",
            default_value=float("nan"),
        )
    with pytest.raises(InvalidArgument, match="may not contain nulls"):
        FeatureDefinition(
            "x",
            "v1",
            "user",
            FeatureDType.FLOAT_LIST,
            PrivacyClass.PUBLIC,
            "o",
            default_value=[1, None],
        )


def test_groups_need_existing_exact_versions_one_entity_type_and_one_privacy_class() -> None:
    defs = list(DEFINITIONS)
    with pytest.raises(NotFound, match=r"age_bucket@v2 does not exist"):
        FeatureCatalog.build(
            [*defs, FeatureGroup("g", "v1", "user", (VersionRef("age_bucket", "v2"),))]
        )
    with pytest.raises(InvalidArgument, match="entity type 'item'"):
        FeatureCatalog.build(
            [*defs, FeatureGroup("g", "v1", "user", (VersionRef("popularity", "v1"),))]
        )
    mixed = FeatureGroup(
        "g", "v1", "user", (VersionRef("age_bucket", "v1"), VersionRef("ctr_7d", "v1"))
    )
    with pytest.raises(InvalidArgument, match="mixes privacy classes"):
        FeatureCatalog.build([*defs, mixed])
    with pytest.raises(InvalidArgument, match="appears twice"):
        FeatureGroup("g", "v1", "user", (VersionRef("a", "v1"), VersionRef("a", "v2")))


def test_feature_sets_reference_exact_group_versions_and_features() -> None:
    objs: list[FeatureDefinition | FeatureGroup | FeatureSet] = [*DEFINITIONS, *GROUPS]
    with pytest.raises(NotFound, match=r"group user_profile@v2 does not exist"):
        FeatureCatalog.build(
            [*objs, FeatureSet("s", "v1", (FeatureRef("user_profile", "v2", "premium"),))]
        )
    with pytest.raises(NotFound, match="has no feature 'ctr_7d'"):
        FeatureCatalog.build(
            [*objs, FeatureSet("s", "v1", (FeatureRef("user_profile", "v1", "ctr_7d"),))]
        )
    with pytest.raises(InvalidArgument, match="appear twice; set an alias"):
        FeatureSet(
            "s", "v1",
            (FeatureRef("a", "v1", "x", alias="y"), FeatureRef("b", "v1", "z", alias="y")),
        )  # fmt: skip


def test_only_owner_and_description_change_in_place() -> None:
    check_compatible_update(CTR, dataclasses.replace(CTR, owner="new-team", description="d"))
    for changes in ({"entity_type": "item"}, {"freshness_sla_seconds": 60},
                    {"privacy_class": PrivacyClass.SENSITIVE}, {"default_value": 1.0}):  # fmt: skip
        with pytest.raises(FailedPrecondition, match="create a new version of 'ctr_7d'") as err:
            check_compatible_update(CTR, dataclasses.replace(CTR, **changes))
        for name in changes:
            assert name in err.value.message
    days = CATALOG.definitions[VersionRef("account_days", "v1")]
    with pytest.raises(FailedPrecondition, match="changing dtype changes what models read"):
        check_compatible_update(days, dataclasses.replace(days, dtype=FeatureDType.FLOAT64))
    group = GROUPS[2]
    with pytest.raises(FailedPrecondition, match="ttl_seconds"):
        check_compatible_update(group, dataclasses.replace(group, ttl_seconds=60))
    with pytest.raises(FailedPrecondition, match="features"):
        check_compatible_update(RANKER, dataclasses.replace(RANKER, features=RANKER.features[:1]))
    with pytest.raises(InvalidArgument, match="same kind, name and version"):
        check_compatible_update(CTR, dataclasses.replace(CTR, version="v2"))


def stored(value: object, age_us: int, gen_age: int | None = None) -> StoredValue:
    return StoredValue(value, T0 - age_us, T0 - (age_us if gen_age is None else gen_age))


def test_resolution_order_and_fills() -> None:
    # Fresh value.
    assert resolve_value(CTR, stored(0.3, MINUTE), T0, None, True) == FeatureValue(
        0.3, None, None, MINUTE, T0 - MINUTE
    )
    # Exactly at the SLA is fresh; beyond it is stale, filled by the rule's constant.
    assert resolve_value(CTR, stored(0.3, HOUR), T0, None, True).missing_reason is None
    assert resolve_value(CTR, stored(0.3, HOUR + 1), T0, None, True) == FeatureValue(
        -1.0, MissingReason.STALE, FillAction.CONSTANT, HOUR + 1, T0 - HOUR - 1
    )
    # Default policy keeps a stale value.
    pop = CATALOG.definitions[VersionRef("popularity", "v1")]
    assert resolve_value(pop, stored(0.9, HOUR), T0, None, True) == FeatureValue(
        0.9, MissingReason.STALE, None, HOUR, T0 - HOUR
    )
    # A null value is no_history; the row's time still reports staleness.
    assert resolve_value(CTR, stored(None, MINUTE), T0, None, True) == FeatureValue(
        0.0, MissingReason.NO_HISTORY, FillAction.FEATURE_DEFAULT, MINUTE, T0 - MINUTE
    )
    # No row, and an expired row, are the same answer (a purge cannot change it).
    absent = resolve_value(CTR, None, T0, 60, True)
    assert absent == FeatureValue(0.0, MissingReason.ENTITY_NOT_FOUND, FillAction.FEATURE_DEFAULT)
    assert resolve_value(CTR, stored(0.3, 60_000_001), T0, 60, True) == absent
    assert resolve_value(CTR, stored(0.3, 60_000_000), T0, 60, True).value == 0.3
    # Privacy wins over everything stored.
    assert resolve_value(CTR, stored(0.3, MINUTE), T0, None, False) == FeatureValue(
        0.0, MissingReason.PRIVACY_DISABLED, FillAction.FEATURE_DEFAULT
    )
    assert resolve_value(AGE, stored("18-24", MINUTE), T0, None, False).value == "18-24"
    # A value from the future (producer clock ahead) is served, staleness 0.
    assert resolve_value(CTR, stored(0.3, -MINUTE), T0, 60, True).staleness_us == 0


def test_fill_actions_null_feature_default_and_constant() -> None:
    taste = CATALOG.definitions[VersionRef("taste", "v1")]
    days = CATALOG.definitions[VersionRef("account_days", "v1")]
    assert resolve_value(taste, stored(None, 0), T0, None, True).value is None
    assert resolve_value(taste, None, T0, None, True).value == (0.0, 0.0)
    assert resolve_value(days, None, T0, None, True).value == -1
    assert resolve_value(days, stored(None, 0), T0, None, True).value == 0
    assert missing_value(days, MissingReason.TIMEOUT) == FeatureValue(
        0, MissingReason.TIMEOUT, FillAction.FEATURE_DEFAULT
    )


def test_non_personalized_requests_never_fetch_behavioural_groups() -> None:
    personalized = [r.schema.ref for r in readable_groups(RANKER, CATALOG, True)]
    anonymous = [r.schema.ref for r in readable_groups(RANKER, CATALOG, False)]
    assert ACTIVITY in personalized and SESSION in personalized
    assert anonymous == [PROFILE, VersionRef("item_stats", "v1"), VersionRef("item_quality", "v1")]


def test_resolve_group_handles_failed_fetches_and_privacy() -> None:
    (read,) = [r for r in CATALOG.plan(RANKER) if r.schema.ref == ACTIVITY]
    assert read.outputs == ("user_ctr", "user_activity__taste")
    r = row(user("u"), T0 - MINUTE, ctr_7d=0.2, taste=[1, 2])
    fresh = resolve_group(read, read.schema.check_row(r), T0, True)
    assert [v.value for v in fresh] == [0.2, (1.0, 2.0)]
    timed_out = resolve_group(read, MissingReason.TIMEOUT, T0, True)
    assert [v.missing_reason for v in timed_out] == [MissingReason.TIMEOUT] * 2
    # Even if a caller passed a row, a non-personalized read reports privacy.
    hidden = resolve_group(read, r, T0, False)
    assert [v.missing_reason for v in hidden] == [MissingReason.PRIVACY_DISABLED] * 2


def test_rows_are_checked_and_ordered_by_time_then_generation() -> None:
    schema = CATALOG.schema(PROFILE)
    with pytest.raises(InvalidArgument, match="unknown feature"):
        schema.check_row(row(user("u"), T0, nope=1))
    with pytest.raises(InvalidArgument, match="account_days"):
        schema.check_row(row(user("u"), T0, account_days="3"))
    with pytest.raises(InvalidArgument, match="entity type 'item'"):
        schema.check_row(GroupRow(user("u")._replace(entity_type="item"), T0, T0, {}))
    checked = schema.check_row(row(user("u"), T0, premium=True))
    assert checked.values == {"age_bucket": None, "account_days": None, "premium": True}
    newer = GroupRow(user("u"), 10, 5, {})
    assert newer.supersedes(9, 100) and newer.supersedes(10, 5) and not newer.supersedes(10, 6)
