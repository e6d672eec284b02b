"""Domain primitives every layer shares — the SDK, both planes and the
offline store: entity keys, version references, metrics and attribute types.

They live apart from the registry's objects (`registry.model`) because the
SDK must not depend on the control plane to name a key or a version.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

# The range of every integer the wire (protobuf int64) and the registry carry.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Metric(StrEnum):
    INNER_PRODUCT = "inner_product"
    COSINE = "cosine"
    L2 = "l2"


class AttrType(StrEnum):
    STRING = "string"
    INT = "int"
    FLOAT = "float"
    STRING_LIST = "string_list"


@dataclass(frozen=True)
class VersionRef:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


class EntityKey(NamedTuple):
    """(tenant_id, entity_type, entity_id); never key by entity_id alone."""

    tenant_id: str
    entity_type: str
    entity_id: str


# An EntityKey from a (tenant_id, entity_type, entity_id) tuple, without
# NamedTuple's keyword-parsing __new__ (a third of a key's cost), for paths
# that build one per hit or per key of a request.
key_of = functools.partial(tuple.__new__, EntityKey)


# An attribute value: string, int, float, or string list (as a tuple).
AttrValue = str | int | float | tuple[str, ...]
