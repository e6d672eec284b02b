"""Shard errors are the shared tree in `core.errors` (mapped to statuses by
`core.runtime`); this module names the ones only a shard raises.

    core.errors.NotFound
    └── UnknownIndex    the shard holds no partition of the requested index version
"""

from __future__ import annotations

from core.errors import InvalidArgument, NotFound, Unavailable

__all__ = ["InvalidArgument", "NotFound", "Unavailable", "UnknownIndex"]


class UnknownIndex(NotFound):
    pass
