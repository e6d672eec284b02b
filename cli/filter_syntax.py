"""The CLI's JSON filter syntax, parsed into `core.filters` objects.

{"eq": {"category": "books"}}          {"in": {"category": ["books", "music"]}}
{"range": {"price": {"gte": 5, "lt": 20}}}
{"and": [F, F, ...]}   {"or": [F, ...]}   {"not": F}
"""

from __future__ import annotations

import json
import math
from typing import Any

from core.domain import INT64_MAX, INT64_MIN
from core.errors import InvalidArgument
from core.filters import And, Eq, Filter, In, Not, Or, Range
from core.wire import filter_to_pb

_BOUNDS = ("gte", "gt", "lte", "lt")


def _single(d: Any, op: str) -> tuple[str, Any]:
    if not isinstance(d, dict) or len(d) != 1:
        raise InvalidArgument(f'"{op}" takes an object with exactly one attribute, got {d!r}')
    return next(iter(d.items()))


def _value(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _bound(attr: str, name: str, v: Any) -> float:
    """A range bound as written: float() would take true as 1, "20" as 20 and
    fail on null with a TypeError (the SDK refuses all three)."""
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    if ok and isinstance(v, int):
        ok = INT64_MIN <= v <= INT64_MAX
    if not ok or not math.isfinite(v):
        raise InvalidArgument(
            f'"range" on {attr!r}: {name} {json.dumps(v)}; expected a number '
            "(an integer within int64 or a finite float)"
        )
    return float(v)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects for `json.loads`: a key written twice is refused, where
    json keeps the last and drops the other condition without a word."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InvalidArgument(
                f"filter: key {k!r} appears twice in one object; expected each key once "
                '(combine conditions with {"and": [...]})'
            )
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise InvalidArgument(f"filter: {name} is not JSON; expected a finite number")


def from_obj(obj: Any) -> Filter:
    if not isinstance(obj, dict) or len(obj) != 1:
        raise InvalidArgument(
            f"a filter is an object with one operator (eq, in, range, and, or, not), got {obj!r}"
        )
    op, arg = next(iter(obj.items()))
    if op == "eq":
        attr, value = _single(arg, op)
        return Eq(attr, _value(value))
    if op == "in":
        attr, values = _single(arg, op)
        if not isinstance(values, list):
            raise InvalidArgument(f'"in" on {attr!r} takes a list of values, got {values!r}')
        return In(attr, tuple(values))
    if op == "range":
        attr, bounds = _single(arg, op)
        if not isinstance(bounds, dict) or set(bounds) - set(_BOUNDS):
            raise InvalidArgument(
                f'"range" on {attr!r} takes bounds among {_BOUNDS}, got {bounds!r}'
            )
        return Range(attr, **{k: _bound(attr, k, v) for k, v in bounds.items()})
    if op in ("and", "or"):
        if not isinstance(arg, list) or not arg:
            raise InvalidArgument(f'"{op}" takes a non-empty list of filters')
        parts = tuple(from_obj(a) for a in arg)
        return And(parts) if op == "and" else Or(parts)
    if op == "not":
        return Not(from_obj(arg))
    raise InvalidArgument(f"unknown filter operator {op!r}; expected eq, in, range, and, or, not")


def parse(text: str) -> Filter:
    """The filter `text` writes, refused here if the SDK would refuse it (a
    boolean, null or out-of-int64 value), so the error comes before connecting."""
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"filter is not valid JSON: {exc}") from None
    f = from_obj(obj)
    filter_to_pb(f)
    return f
