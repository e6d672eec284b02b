"""proto ↔ domain for the types every service shares (keys, metrics,
attributes, filters, feature rows and values). Service packages keep their
own convert.py for the rest."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Protocol

from core.domain import INT64_MAX, INT64_MIN, AttrValue, EntityKey, Metric
from core.errors import InvalidArgument
from core.feature_columns import FILL_CODE, REASON_CODE
from core.filters import And, Eq, Filter, In, Not, Or, Range
from protos.vecshard.v1 import common_pb2 as pb

METRIC_TO_PB = {
    Metric.INNER_PRODUCT: pb.INNER_PRODUCT,
    Metric.COSINE: pb.COSINE,
    Metric.L2: pb.L2,
}


def key_from_pb(k: pb.EntityKey) -> EntityKey:
    return EntityKey(k.tenant_id, k.entity_type, k.entity_id)


def key_to_pb(k: EntityKey) -> pb.EntityKey:
    return pb.EntityKey(tenant_id=k.tenant_id, entity_type=k.entity_type, entity_id=k.entity_id)


def value_from_pb(v: pb.AttributeValue, where: str) -> AttrValue:
    kind = v.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(
            f"{where}: attribute value is empty, expected string/int/float/string list"
        )
    if kind == "string_list_value":
        return tuple(v.string_list_value.values)
    value: AttrValue = getattr(v, kind)  # a oneof's member, named at run time
    return value


def value_to_pb(v: AttrValue) -> pb.AttributeValue:
    if isinstance(v, bool):
        raise InvalidArgument(f"attribute value {v!r}: booleans are not an attribute type")
    if isinstance(v, str):
        return pb.AttributeValue(string_value=v)
    if isinstance(v, int):
        # protobuf's own refusal is a ValueError, a traceback in the CLI.
        if not INT64_MIN <= v <= INT64_MAX:
            raise InvalidArgument(f"attribute value {v!r}: expected an int within int64")
        return pb.AttributeValue(int_value=v)
    if isinstance(v, float):
        return pb.AttributeValue(float_value=v)
    if isinstance(v, tuple | list) and all(isinstance(x, str) for x in v):
        return pb.AttributeValue(string_list_value=pb.StringList(values=list(v)))
    raise InvalidArgument(f"attribute value {v!r}: expected str, int, float or list of str")


def attributes_from_pb(attrs: Mapping[str, pb.AttributeValue], where: str) -> dict[str, AttrValue]:
    return {name: value_from_pb(v, f"{where}.{name}") for name, v in attrs.items()}


def filter_from_pb(f: pb.Filter, depth: int = 0) -> Filter | None:
    if depth > 32:
        raise InvalidArgument("filter nests deeper than 32 levels")
    kind = f.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "eq":
        return Eq(f.eq.attribute, value_from_pb(f.eq.value, f"filter eq {f.eq.attribute!r}"))
    if kind == "in_set":
        where = f"filter in_set {f.in_set.attribute!r}"
        return In(f.in_set.attribute, tuple(value_from_pb(v, where) for v in f.in_set.values))
    if kind == "range":
        r = f.range
        return Range(
            r.attribute,
            r.gte if r.HasField("gte") else None,
            r.gt if r.HasField("gt") else None,
            r.lte if r.HasField("lte") else None,
            r.lt if r.HasField("lt") else None,
        )
    subs = f.all_of.filters if kind == "all_of" else f.any_of.filters if kind == "any_of" else None
    if subs is not None:
        parts = tuple(p for p in (filter_from_pb(s, depth + 1) for s in subs) if p is not None)
        if not parts:
            raise InvalidArgument(f"filter {kind}: expected at least one non-empty sub-filter")
        return And(parts) if kind == "all_of" else Or(parts)
    inner = filter_from_pb(f.negate, depth + 1)
    if inner is None:
        raise InvalidArgument("filter negate: expected a non-empty sub-filter")
    return Not(inner)


def _fits_a_double(bound: numbers.Real) -> bool:
    """Bounds travel as doubles: an integer past one's range was protobuf's
    OverflowError (a traceback, not a refusal)."""
    try:
        float(bound)
    except OverflowError:
        return False
    return True


def filter_to_pb(f: Filter | None) -> pb.Filter:
    match f:
        case None:
            return pb.Filter()
        case Eq(attribute, value):
            return pb.Filter(eq=pb.Eq(attribute=attribute, value=value_to_pb(value)))
        case In(attribute, values):
            return pb.Filter(
                in_set=pb.In(attribute=attribute, values=[value_to_pb(v) for v in values])
            )
        case Range(attribute, gte, gt, lte, lt):
            for bound in (gte, gt, lte, lt):
                if bound is not None and (
                    isinstance(bound, bool)
                    or not isinstance(bound, numbers.Real)
                    or not _fits_a_double(bound)
                ):
                    raise InvalidArgument(
                        f"filter range {attribute!r}: bound {bound!r:.40}; expected a number "
                        "within a double's range, or None"
                    )
            return pb.Filter(range=pb.Range(attribute=attribute, gte=gte, gt=gt, lte=lte, lt=lt))
        case And(filters):
            return pb.Filter(all_of=pb.FilterList(filters=[filter_to_pb(s) for s in filters]))
        case Or(filters):
            return pb.Filter(any_of=pb.FilterList(filters=[filter_to_pb(s) for s in filters]))
        case Not(inner):
            return pb.Filter(negate=filter_to_pb(inner))
    raise InvalidArgument(
        f"filter {f!r:.60}: expected one of core.filters' Eq, In, Range, And, Or, Not, or None"
    )


# --- features -----------------------------------------------------------------

# Codes are the proto enum values (core.feature_columns, checked by a test).
_REASON_TO_PB = REASON_CODE
_FILL_TO_PB = FILL_CODE
REASON_FROM_PB = {v: k for k, v in _REASON_TO_PB.items()}
FILL_FROM_PB = {v: k for k, v in _FILL_TO_PB.items()}


def feature_value_to_pb(
    value: object,
    reason: str | None = None,
    fill: str | None = None,
    staleness_us: int | None = None,
    feature_timestamp: int | None = None,
) -> pb.FeatureValue:
    """A typed value (None = null) and what the resolution said about it."""
    out = pb.FeatureValue(
        missing_reason=_REASON_TO_PB[reason] if reason else 0,  # type: ignore[arg-type]  # codes are the enum's values
        default_applied=_FILL_TO_PB[fill] if fill else 0,  # type: ignore[arg-type]  # likewise
    )
    if staleness_us is not None:
        out.staleness_us = staleness_us
    if feature_timestamp is not None:
        out.feature_timestamp_us = feature_timestamp
    if value is None:
        return out
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int64_value = value
    elif isinstance(value, float):
        out.float64_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, list | tuple):
        out.float_list_value.values.extend(float(v) for v in value)
    else:
        raise InvalidArgument(
            f"feature value {value!r}: expected int, float, str, bool or a list of floats"
        )
    return out


def feature_value_from_pb(v: pb.FeatureValue) -> object:
    """The plain value (None when unset = null)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "float_list_value":
        return tuple(v.float_list_value.values)  # the canonical form (registry.features)
    return getattr(v, kind)


# A feature row as written, in `registry.features.GroupRow`'s field order:
# (entity, feature_timestamp, generated_at, values). core cannot name GroupRow
# (it builds on protos only), so rows cross this module as those four fields.
FeatureRowFields = tuple[EntityKey, int, int, dict[str, object]]


def feature_row_to_pb(
    entity: EntityKey, feature_timestamp: int, generated_at: int, values: Mapping[str, object]
) -> pb.FeatureRow:
    """One entity's row as written; `feature_row_to_pb(*group_row)`. A null
    value is left out: on the wire an absent value is null, which keeps rows
    with few values small."""
    return pb.FeatureRow(
        entity=key_to_pb(entity),
        feature_timestamp_us=feature_timestamp,
        generated_at_us=generated_at,
        values={k: feature_value_to_pb(v) for k, v in values.items() if v is not None},
    )


def feature_row_from_pb(r: pb.FeatureRow) -> FeatureRowFields:
    """The row's fields in GroupRow's order: `GroupRow(*feature_row_from_pb(r))`."""
    return (
        key_from_pb(r.entity),
        r.feature_timestamp_us,
        r.generated_at_us,
        {name: feature_value_from_pb(v) for name, v in r.values.items()},
    )


class ResolvedFeature(Protocol):
    """A value as resolved for a model (`registry.feature_values.FeatureValue`;
    its reason and fill are string enums)."""

    @property
    def value(self) -> object: ...

    @property
    def missing_reason(self) -> str | None: ...

    @property
    def default_applied(self) -> str | None: ...

    @property
    def staleness_us(self) -> int | None: ...

    @property
    def feature_timestamp(self) -> int | None: ...


# (value, missing reason, fill applied, staleness µs, feature timestamp µs)
ResolvedFields = tuple[object, str | None, str | None, int | None, int | None]


def resolved_value_to_pb(v: ResolvedFeature) -> pb.FeatureValue:
    return feature_value_to_pb(
        v.value, v.missing_reason, v.default_applied, v.staleness_us, v.feature_timestamp
    )


def resolved_value_from_pb(v: pb.FeatureValue) -> ResolvedFields:
    """The fields of a resolved value, in `ResolvedFeature`'s order."""
    return (
        feature_value_from_pb(v),
        REASON_FROM_PB.get(v.missing_reason),
        FILL_FROM_PB.get(v.default_applied),
        v.staleness_us if v.HasField("staleness_us") else None,
        v.feature_timestamp_us if v.HasField("feature_timestamp_us") else None,
    )
