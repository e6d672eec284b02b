"""The SDK's checks of its callers' arguments, before anything is sent: a
wrong shape or type is an `InvalidArgument` naming the argument and what was
expected, not a numpy, protobuf or unpacking error from deep inside — and a
string is never taken for a sequence of one-character ids
(`delete("items", "v1", "item42")` deleted "i", "t", "e", "m", "4" and "2").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from core.errors import InvalidArgument


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


def text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what}: {_shown(value)}; expected a str")
    return value
