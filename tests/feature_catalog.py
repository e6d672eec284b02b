"""A small, realistic feature catalog shared by the feature tests: one group
per privacy class and TTL situation, every dtype, and every fill action.

Times are µs since the epoch; `T0` is 2023-11-14T22:13:20Z.
"""

from __future__ import annotations

from core.domain import EntityKey, VersionRef
from registry.feature_catalog import FeatureCatalog
from registry.features import (
    US_PER_SECOND,
    DefaultPolicy,
    FeatureDefinition,
    FeatureDType,
    FeatureGroup,
    FeatureRef,
    FeatureSet,
    Fill,
    FillAction,
    GroupRow,
    PrivacyClass,
)

S = US_PER_SECOND
MINUTE = 60 * S
HOUR = 3600 * S
DAY = 86_400 * S
T0 = 1_700_000_000 * S

PROFILE = VersionRef("user_profile", "v1")  # public, no TTL
ACTIVITY = VersionRef("user_activity", "v1")  # behavioural, SLA
SESSION = VersionRef("session", "v1")  # behavioural, TTL 30 min
ITEM = VersionRef("item_stats", "v1")  # public, SLA 10 min
QUALITY = VersionRef("item_quality", "v1")  # public, never written: not_computed

DEFINITIONS = (
    FeatureDefinition(
        "age_bucket", "v1", "user", FeatureDType.STRING, PrivacyClass.PUBLIC, "growth",
        default_value="unknown",
    ),
    FeatureDefinition(
        "account_days", "v1", "user", FeatureDType.INT64, PrivacyClass.PUBLIC, "growth",
        default_value=0,
        default_policy=DefaultPolicy(entity_not_found=Fill(FillAction.CONSTANT, -1)),
    ),
    FeatureDefinition(
        "premium", "v1", "user", FeatureDType.BOOL, PrivacyClass.PUBLIC, "growth",
        default_value=False,
    ),
    FeatureDefinition(
        "ctr_7d", "v1", "user", FeatureDType.FLOAT64, PrivacyClass.BEHAVIOURAL, "ranking",
        freshness_sla_seconds=3600, default_value=0.0,
        default_policy=DefaultPolicy(stale=Fill(FillAction.CONSTANT, -1.0)),
    ),
    FeatureDefinition(
        "taste", "v1", "user", FeatureDType.FLOAT_LIST, PrivacyClass.BEHAVIOURAL, "ranking",
        default_value=[0, 0],
        default_policy=DefaultPolicy(no_history=Fill(FillAction.NULL)),
    ),
    FeatureDefinition(
        "session_clicks", "v1", "user", FeatureDType.INT64, PrivacyClass.BEHAVIOURAL, "ranking",
        default_value=0,
    ),
    FeatureDefinition(
        "popularity", "v1", "item", FeatureDType.FLOAT64, PrivacyClass.PUBLIC, "catalog",
        freshness_sla_seconds=600, default_value=0.5,
    ),
    FeatureDefinition(
        "category", "v1", "item", FeatureDType.STRING, PrivacyClass.PUBLIC, "catalog",
    ),
    FeatureDefinition(
        "quality", "v1", "item", FeatureDType.FLOAT64, PrivacyClass.PUBLIC, "catalog",
        default_value=0.25,
    ),
)  # fmt: skip

GROUPS = (
    FeatureGroup(
        "user_profile", "v1", "user",
        (VersionRef("age_bucket", "v1"), VersionRef("account_days", "v1"),
         VersionRef("premium", "v1")),
    ),
    FeatureGroup(
        "user_activity", "v1", "user", (VersionRef("ctr_7d", "v1"), VersionRef("taste", "v1"))
    ),
    FeatureGroup("session", "v1", "user", (VersionRef("session_clicks", "v1"),), ttl_seconds=1800),
    FeatureGroup(
        "item_stats", "v1", "item", (VersionRef("popularity", "v1"), VersionRef("category", "v1"))
    ),
    FeatureGroup("item_quality", "v1", "item", (VersionRef("quality", "v1"),)),
)  # fmt: skip

RANKER = FeatureSet(
    "ranker",
    "v1",
    (
        FeatureRef("user_profile", "v1", "age_bucket"),
        FeatureRef("user_profile", "v1", "account_days"),
        FeatureRef("user_profile", "v1", "premium"),
        FeatureRef("user_activity", "v1", "ctr_7d", alias="user_ctr"),
        FeatureRef("user_activity", "v1", "taste"),
        FeatureRef("session", "v1", "session_clicks"),
        FeatureRef("item_stats", "v1", "popularity"),
        FeatureRef("item_stats", "v1", "category"),
        FeatureRef("item_quality", "v1", "quality"),
    ),
)

CATALOG = FeatureCatalog.build((*DEFINITIONS, *GROUPS, RANKER))


def user(eid: str, tenant: str = "acme") -> EntityKey:
    return EntityKey(tenant, "user", eid)


def item(eid: str, tenant: str = "acme") -> EntityKey:
    return EntityKey(tenant, "item", eid)


def row(key: EntityKey, ts: int, gen: int | None = None, **values: object) -> GroupRow:
    """A row generated when its event happened unless `gen` says otherwise."""
    return GroupRow(key, ts, ts if gen is None else gen, values)
