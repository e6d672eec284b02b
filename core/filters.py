"""Filter predicates as plain data, their validation against an index's
attribute schema, and the reference (per-record) evaluator.

Rule for missing attributes: a leaf predicate on an attribute the record does
not carry is false; `Not` of it is therefore true.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from core.domain import AttrType, AttrValue
from core.errors import InvalidArgument


@dataclass(frozen=True)
class Eq:
    attribute: str
    value: AttrValue


@dataclass(frozen=True)
class In:
    attribute: str
    values: tuple[AttrValue, ...]


@dataclass(frozen=True)
class Range:
    attribute: str
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None


@dataclass(frozen=True)
class And:
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    filter: Filter


Filter = Eq | In | Range | And | Or | Not

_NUMERIC = (AttrType.INT, AttrType.FLOAT)


def _value_ok(kind: AttrType, value: AttrValue) -> bool:
    if kind in (AttrType.STRING, AttrType.STRING_LIST):
        return isinstance(value, str)
    if kind is AttrType.INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: AttrValue) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _expected(kind: AttrType) -> str:
    return {
        AttrType.STRING: "a string",
        AttrType.STRING_LIST: "a string (list membership)",
        AttrType.INT: "an int",
        AttrType.FLOAT: "a finite number",
    }[kind]


def _schema_type(attribute: str, schema: Mapping[str, AttrType]) -> AttrType:
    if attribute not in schema:
        known = ", ".join(sorted(schema)) or "none"
        raise InvalidArgument(
            f"filter on attribute {attribute!r}, which this index does not have; "
            f"filterable attributes: {known}"
        )
    return schema[attribute]


def validate_filter(f: Filter, schema: Mapping[str, AttrType]) -> None:
    match f:
        case Eq(attribute, value):
            kind = _schema_type(attribute, schema)
            if not _value_ok(kind, value) or not _finite(value):
                raise InvalidArgument(
                    f"filter eq on {attribute!r} ({kind.value}): got {value!r}, expected {_expected(kind)}"
                )
        case In(attribute, values):
            kind = _schema_type(attribute, schema)
            if not values:
                raise InvalidArgument(
                    f"filter in_set on {attribute!r}: expected at least one value"
                )
            for value in values:
                if not _value_ok(kind, value) or not _finite(value):
                    raise InvalidArgument(
                        f"filter in_set on {attribute!r} ({kind.value}): got {value!r}, "
                        f"expected {_expected(kind)}"
                    )
        case Range(attribute, gte, gt, lte, lt):
            kind = _schema_type(attribute, schema)
            if kind not in _NUMERIC:
                raise InvalidArgument(
                    f"filter range on {attribute!r} ({kind.value}): expected an int or float attribute"
                )
            bounds = {"gte": gte, "gt": gt, "lte": lte, "lt": lt}
            if all(b is None for b in bounds.values()):
                raise InvalidArgument(f"filter range on {attribute!r}: expected at least one bound")
            for name, bound in bounds.items():
                if bound is not None and not math.isfinite(bound):
                    # NaN compares false with everything: the filter would
                    # silently match nothing (or everything under `not`).
                    raise InvalidArgument(
                        f"filter range on {attribute!r}: bound {name}={bound}, "
                        "expected a finite number"
                    )
        case And(filters) | Or(filters):
            if not filters:
                raise InvalidArgument("filter all_of/any_of: expected at least one sub-filter")
            for sub in filters:
                validate_filter(sub, schema)
        case Not(inner):
            validate_filter(inner, schema)


def validate_attributes(
    attrs: Mapping[str, AttrValue], schema: Mapping[str, AttrType], where: str
) -> None:
    """A record's declared attributes must have their declared type."""
    for name, value in attrs.items():
        kind = schema.get(name)
        if kind is None:
            continue  # stored as metadata, not filterable
        ok = (
            isinstance(value, tuple) and all(isinstance(v, str) for v in value)
            if kind is AttrType.STRING_LIST
            else _value_ok(kind, value) and not isinstance(value, tuple)
        )
        if not ok:
            raise InvalidArgument(
                f"{where}: attribute {name!r} is {value!r}, expected {kind.value}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgument(
                f"{where}: attribute {name!r} is {value}, expected a finite number"
            )


def _leaf(f: Eq | In | Range, value: AttrValue | None) -> bool:
    if value is None:
        return False
    match f:
        case Eq(_, want):
            return want in value if isinstance(value, tuple) else value == want
        case In(_, wants):
            if isinstance(value, tuple):
                return any(v in value for v in wants)
            return value in wants
        case Range(_, gte, gt, lte, lt):
            if isinstance(value, str | tuple):
                return False
            return (
                (gte is None or value >= gte)
                and (gt is None or value > gt)
                and (lte is None or value <= lte)
                and (lt is None or value < lt)
            )
    return False


def matches(f: Filter | None, attrs: Mapping[str, AttrValue]) -> bool:
    """The reference semantics; the vectorized evaluator must agree with it."""
    match f:
        case None:
            return True
        case And(filters):
            return all(matches(s, attrs) for s in filters)
        case Or(filters):
            return any(matches(s, attrs) for s in filters)
        case Not(inner):
            return not matches(inner, attrs)
        case Eq() | In() | Range():
            return _leaf(f, attrs.get(f.attribute))
    raise TypeError(f"not a filter: {f!r}")
