"""How a feature value is resolved for a model, online and offline alike:
stored rows, their precedence, and the missing reasons with their fills
(DESIGN §7). Definitions, groups and sets live in `registry.features`.

The one rule this module exists for: **a missing, stale or expired value is
resolved by the same function online and offline** (`resolve_columns`), so a
model sees the same defaults and missing reasons in training as in serving.

`resolve_value` states the rules one value at a time, as a reader would
check them; `resolve_columns` applies the same rules to a group's columns
with array operations — what the shards and the offline joins run, because
a per-value Python step for the thousands of values of one request cost more
than the lookup. A property test (`tests/test_feature_columns.py`) holds the
two equal on random rows, definitions and times.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from core.feature_columns import FILL_CODE, REASON_CODE, FeatureColumn, ResolvedColumns, repeat
from registry.feature_batches import StoredRows
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


# --- the same rules, a column at a time ------------------------------------------


def _fill_value(definition: FeatureDefinition, reason: MissingReason) -> tuple[Any, FillAction]:
    fill = definition.default_policy.fill_for(reason)
    if fill.action is FillAction.CONSTANT:
        return fill.constant, fill.action
    if fill.action is FillAction.FEATURE_DEFAULT:
        return definition.default_value, fill.action
    return None, fill.action


def missing_columns(read: GroupRead, reason: MissingReason, rows: int) -> ResolvedColumns:
    """Every value of `read` for `rows` entities that were not read (privacy,
    timeout, unavailable, not computed): the definitions' fills."""
    zeros = np.zeros(rows, dtype=np.int64)
    columns, fills = [], []
    for d in read.definitions:
        value, action = _fill_value(d, reason)
        columns.append(repeat(d.dtype.value, value, rows))
        fills.append(FILL_CODE[action.value])
    shape = (len(read.definitions), rows)
    return ResolvedColumns(
        read.features,
        tuple(columns),
        np.full(shape, REASON_CODE[reason.value], dtype=np.uint8),
        np.repeat(np.array(fills, dtype=np.uint8)[:, None], rows, axis=1).reshape(shape),
        np.zeros(rows, dtype=bool),
        zeros,
        zeros,
    )


def resolve_columns(
    read: GroupRead,
    stored: StoredRows | MissingReason,
    request_time: int | npt.NDArray[np.int64],
    personalized: bool,
    rows: int | None = None,
) -> ResolvedColumns:
    """`resolve_group` for every row of `stored` at once (or, for a fetch
    that failed, `rows` rows of that reason): the same order of checks —
    privacy, absence or expiry, null, freshness — as masks. `request_time`
    is one time for all rows (online) or one per row (an offline join's
    event times)."""
    n = len(stored) if isinstance(stored, StoredRows) else int(rows or 0)
    if not readable(read.schema, personalized):
        return missing_columns(read, MissingReason.PRIVACY_DISABLED, n)
    if isinstance(stored, MissingReason):
        return missing_columns(read, stored, n)
    ts = stored.feature_timestamp
    present = stored.present.copy()
    ttl = read.schema.group.ttl_seconds
    if ttl is not None:
        present &= request_time - ts <= ttl * US_PER_SECOND
    staleness = np.where(present, np.maximum(0, request_time - ts), 0)
    columns, reasons, fills = [], [], []
    for d in read.definitions:
        col: FeatureColumn = stored.columns[d.name]
        valid = col.valid & present
        sla = d.freshness_sla_seconds
        stale = (
            valid & (staleness > sla * US_PER_SECOND)
            if sla is not None
            else np.zeros(n, dtype=bool)
        )
        reason = np.zeros(n, dtype=np.uint8)
        fill = np.zeros(n, dtype=np.uint8)
        for why, mask in (
            (MissingReason.ENTITY_NOT_FOUND, ~present),
            (MissingReason.NO_HISTORY, present & ~col.valid),
            (MissingReason.STALE, stale),
        ):
            if not mask.any():
                continue
            reason[mask] = REASON_CODE[why.value]
            value, action = _fill_value(d, why)
            if action is FillAction.KEEP_VALUE:
                continue
            fill[mask] = FILL_CODE[action.value]
            col = col.where(mask, repeat(d.dtype.value, value, n))
        columns.append(col)
        reasons.append(reason)
        fills.append(fill)
    shape = (len(read.definitions), n)
    return ResolvedColumns(
        read.features,
        tuple(columns),
        np.array(reasons, dtype=np.uint8).reshape(shape),
        np.array(fills, dtype=np.uint8).reshape(shape),
        present,
        staleness.astype(np.int64),
        np.where(present, ts, 0).astype(np.int64),
    )


def resolved_values(resolved: ResolvedColumns) -> list[tuple[FeatureValue, ...]]:
    """Per row, the `FeatureValue`s of resolved columns (per-value objects:
    for comparisons and the per-value wire form only)."""
    values = [c.to_list() for c in resolved.columns]
    stored = resolved.stored.tolist()
    staleness = resolved.staleness_us.tolist()
    ts = resolved.feature_timestamp_us.tolist()
    reasons = [[_REASONS[c] for c in row] for row in resolved.reasons.tolist()]
    fills = [[_FILLS[c] for c in row] for row in resolved.fills.tolist()]
    return [
        tuple(
            FeatureValue(
                values[j][i],
                reasons[j][i],
                fills[j][i],
                staleness[i] if stored[i] else None,
                ts[i] if stored[i] else None,
            )
            for j in range(len(values))
        )
        for i in range(resolved.rows)
    ]


_REASONS: dict[int, MissingReason | None] = {0: None} | {
    REASON_CODE[r.value]: r for r in MissingReason
}
_FILLS: dict[int, FillAction | None] = {0: None} | {FILL_CODE[f.value]: f for f in FillAction}
