"""The SDK's checks of its callers' arguments, before anything is sent: a
wrong shape or type is an `InvalidArgument` naming the argument and what was
expected, not a numpy, protobuf or unpacking error from deep inside — and a
string is never taken for a sequence of one-character ids
(`delete("items", "v1", "item42")` deleted "i", "t", "e", "m", "4" and "2").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from core.domain import INT64_MAX, INT64_MIN
from core.errors import InvalidArgument

# float(INT64_MAX) rounds up to 2**63, which is past int64: the floats that
# fit are those in [-2**63, 2**63).
_FLOAT_INT64_END = 2.0**63


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.40}"


def items_of(value: Any, what: str, expected: str) -> list[Any]:
    """`value` as a list, refusing a string, bytes or None (each would read
    as a sequence, or fail, far from here)."""
    if value is None or isinstance(value, str | bytes):
        raise InvalidArgument(f"{what}: {_shown(value)}; expected {expected} (one in a list)")
    try:
        return list(value)
    except TypeError:
        raise InvalidArgument(f"{what}: {_shown(value)}; expected {expected}") from None


def entity_ids(value: Iterable[str], what: str) -> list[str]:
    """A list of entity ids, each a str."""
    out = items_of(value, what, "a list of entity ids")
    for i, x in enumerate(out):
        if not isinstance(x, str):
            raise InvalidArgument(f"{what}[{i}]: {_shown(x)}; expected an entity id (str)")
    return out


def key_parts(value: Any, what: str, sizes: Sequence[int]) -> tuple[str, ...]:
    """One key as a tuple of `sizes[j]` strings (an EntityKey is a 3-tuple;
    (entity_type, entity_id) is a 2-tuple)."""
    if (
        isinstance(value, str | bytes)
        or not isinstance(value, Sequence)
        or len(value) not in sizes
        or not all(isinstance(p, str) for p in value)
    ):
        shapes = " or ".join(
            {2: "(entity_type, entity_id)", 3: "(tenant_id, entity_type, entity_id)"}[n]
            for n in sizes
        )
        raise InvalidArgument(f"{what}: {_shown(value)}; expected {shapes} of str")
    return tuple(value)


def float_vectors(value: Any, what: str) -> np.ndarray:
    """Numbers as float32 (any shape; the caller checks it)."""
    if value is None or isinstance(value, str | bytes):
        raise InvalidArgument(f"{what}: {_shown(value)}; expected numbers")
    try:
        return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{what}: {exc}; expected numbers of one shape") from None


def integer(value: Any, what: str) -> int:
    """An int (numpy's too), not a bool: True is an int to Python and 1 to protobuf."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidArgument(f"{what}: {_shown(value)}; expected an int")
    return int(value)


def _fits_int64(v: Any) -> bool:
    if isinstance(v, bool | np.bool_):
        return False
    if isinstance(v, int | np.integer):
        return INT64_MIN <= int(v) <= INT64_MAX
    if isinstance(v, float | np.floating):
        f = float(v)
        return math.isfinite(f) and f.is_integer() and -_FLOAT_INT64_END <= f < _FLOAT_INT64_END
    return False


def int64s(values: Any, what: str) -> np.ndarray:
    """Integers (any shape) as int64, each exactly as given, or an
    InvalidArgument naming the first that is not one: numpy's casts write
    another number without a word — 12.9 as 12, NaN as -2**63, a uint64 past
    2**63 as a negative. Integral floats are taken (a pandas integer column
    with a gap is float64), bools are not."""
    if values is None or isinstance(values, str | bytes):
        raise InvalidArgument(f"{what}: {_shown(values)}; expected integers")
    if isinstance(values, list | tuple):
        # Plain ints (most lists) in one C pass: the checks below go value by
        # value in Python, 20x slower on the bulk write paths. Only when numpy
        # read every value as an int (a bool reads as one too: looked for).
        plain = np.asarray(values)
        ints = plain.dtype.kind == "i" and plain.ndim == 1
        if ints and not {bool, np.bool_} & set(map(type, values)):
            return plain.astype(np.int64, copy=False)
    # Otherwise through Python ints (object), not a common dtype: mixed ints
    # and floats would become float64 and lose digits past 2**53.
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    kind = arr.dtype.kind
    if kind == "i":
        return arr.astype(np.int64)
    if kind == "u":
        bad = arr > np.uint64(INT64_MAX)
    elif kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(arr) | (arr != np.trunc(arr))
            bad |= (arr < -_FLOAT_INT64_END) | (arr >= _FLOAT_INT64_END)
    elif kind == "O":
        bad = np.fromiter((not _fits_int64(v) for v in arr.flat), dtype=bool, count=arr.size)
    else:
        raise InvalidArgument(f"{what}: {arr.dtype} values; expected integers")
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        at = ", ".join(map(str, np.unravel_index(j, arr.shape)))
        v = arr.flat[j]
        shown = f"{v.item()!r} ({v.dtype})" if isinstance(v, np.generic) else _shown(v)
        raise InvalidArgument(
            f"{what}{f'[{at}]' if at else ''}: {shown}; expected an integer within int64"
        )
    if kind == "O":
        return np.array([int(v) for v in arr.flat], dtype=np.int64).reshape(arr.shape)
    return arr.astype(np.int64)


def text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what}: {_shown(value)}; expected a str")
    return value
