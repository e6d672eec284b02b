"""Names of registry objects: tenants, families and their versions, index
versions, bundles, routes, feature definitions, groups and sets.

Why one rule: names end up in etcd keys (`…/families/{name}`), RocksDB
column family names (`features:{group}:{version}`), hive partition paths
(`group=…/version=…`), Parquet column names, Prometheus labels and file
names, so ':', '/', '=', whitespace and control characters are excluded, and
an empty name never means "any". Checked when an object is created through
`apply` (one created before the rule stays usable). Principals are not held
to it: theirs is the token's subject, whatever the identity provider says.
"""

from __future__ import annotations

import re
from typing import Any

from core.errors import InvalidArgument

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # whole names: fullmatch

# Per kind, the fields that name an object or what it is about.
_NAMED_FIELDS = {
    "Tenant": ("tenant_id",),
    "EmbeddingFamily": ("name", "entity_type"),
    "EmbeddingVersion": ("name", "version"),
    "IndexVersion": ("name", "version"),
    "Bundle": ("name",),
    "Route": ("name",),
}


def check_name(what: str, value: Any) -> None:
    if not isinstance(value, str) or not NAME.fullmatch(value):  # `$` would allow a final \n
        raise InvalidArgument(
            f"{what} {value!r} is not a valid name; expected letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )


def check_names(obj: Any, where: str) -> None:
    """The naming fields of a new object of one of the core kinds (feature
    kinds check their own names when built)."""
    for field in _NAMED_FIELDS.get(type(obj).__name__, ()):
        check_name(f"{where}: {field}", getattr(obj, field))
