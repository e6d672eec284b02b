"""How a feature value is resolved for a model, online and offline alike:
stored rows, their precedence, and the missing reasons with their fills
(DESIGN §7). Definitions, groups and sets live in `registry.features`.

The one rule this module exists for: **a missing, stale or expired value is
resolved by the same function online and offline** (`resolve_value`), so a
model sees the same defaults and missing reasons in training as in serving.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from registry.feature_catalog import GroupRead, readable
from registry.features import (
    US_PER_SECOND,
    FeatureDefinition,
    FillAction,
    GroupRow,
    MissingReason,
    PrivacyClass,
    StoredValue,
)

# FeatureValue is a NamedTuple like `registry.features.GroupRow`: one is built
# per value on the serving path.


class FeatureValue(NamedTuple):
    """What a model reads for one feature of one entity.

    `missing_reason` is None for a fresh stored value; `default_applied` is the
    fill used when `value` is not the stored value; `staleness_us` and
    `feature_timestamp` describe the live stored row, if any.
    """

    value: Any
    missing_reason: MissingReason | None = None
    default_applied: FillAction | None = None
    staleness_us: int | None = None
    feature_timestamp: int | None = None


def is_expired(ttl_seconds: int | None, feature_timestamp: int, request_time: int) -> bool:
    """Strictly older than the TTL; a row exactly TTL old is still live."""
    return (
        ttl_seconds is not None and request_time - feature_timestamp > ttl_seconds * US_PER_SECOND
    )


def _filled(
    definition: FeatureDefinition,
    reason: MissingReason,
    stored: StoredValue | None = None,
    staleness_us: int | None = None,
) -> FeatureValue:
    fill = definition.default_policy.fill_for(reason)
    ts = stored.feature_timestamp if stored is not None else None
    if fill.action is FillAction.KEEP_VALUE and stored is not None:
        return FeatureValue(stored.value, reason, None, staleness_us, ts)
    if fill.action is FillAction.CONSTANT:
        value = fill.constant
    elif fill.action is FillAction.FEATURE_DEFAULT:
        value = definition.default_value
    else:
        value = None
    return FeatureValue(value, reason, fill.action, staleness_us, ts)


def missing_value(definition: FeatureDefinition, reason: MissingReason) -> FeatureValue:
    """A value for a feature that was not read (timeout, not computed,
    privacy), with the definition's fill for that reason."""
    return _filled(definition, reason)


def resolve_value(
    definition: FeatureDefinition,
    stored: StoredValue | None,
    request_time: int,
    group_ttl_seconds: int | None,
    personalized: bool,
) -> FeatureValue:
    """The value a model reads for one feature, online and offline alike.

    Order of checks: privacy (never served, whatever is stored), absence or
    expiry (`entity_not_found`), null (`no_history`), then freshness
    (`stale`). A stored value newer than `request_time` (a producer's clock
    ahead of the server's) is served with staleness 0: online keeps only the
    latest value, and losing it to clock skew would be worse.
    """
    if not personalized and definition.privacy_class is not PrivacyClass.PUBLIC:
        return _filled(definition, MissingReason.PRIVACY_DISABLED)
    if stored is None or is_expired(group_ttl_seconds, stored.feature_timestamp, request_time):
        return _filled(definition, MissingReason.ENTITY_NOT_FOUND)
    staleness = max(0, request_time - stored.feature_timestamp)
    if stored.value is None:
        return _filled(definition, MissingReason.NO_HISTORY, stored, staleness)
    sla = definition.freshness_sla_seconds
    if sla is not None and staleness > sla * US_PER_SECOND:
        return _filled(definition, MissingReason.STALE, stored, staleness)
    return FeatureValue(stored.value, None, None, staleness, stored.feature_timestamp)


def resolve_group(
    read: GroupRead,
    row: GroupRow | MissingReason | None,
    request_time: int,
    personalized: bool,
) -> tuple[FeatureValue, ...]:
    """Values of `read.features` for one entity from its fetched row (None:
    no row; a `MissingReason`: the fetch itself failed, e.g. `timeout` or
    `not_computed`)."""
    schema = read.schema
    defs = read.definitions
    if not readable(schema, personalized):
        return tuple(missing_value(d, MissingReason.PRIVACY_DISABLED) for d in defs)
    if isinstance(row, MissingReason):
        return tuple(missing_value(d, row) for d in defs)
    ttl = schema.group.ttl_seconds
    return tuple(
        resolve_value(
            d, row.stored(d.name) if row is not None else None, request_time, ttl, personalized
        )
        for d in defs
    )
