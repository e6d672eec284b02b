"""Shard errors are the shared tree in `protos.errors` (mapped to statuses by
`protos.serving`); this module names the ones only a shard raises.

    protos.errors.NotFound
    └── UnknownIndex    the shard holds no partition of the requested index version
"""

from __future__ import annotations

from protos.errors import InvalidArgument, NotFound, Unavailable

__all__ = ["InvalidArgument", "NotFound", "Unavailable", "UnknownIndex"]


class UnknownIndex(NotFound):
    pass
