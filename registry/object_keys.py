"""Which key of the registry's key space (`registry.keys`) each stored object
lives under: one mapping from an object's kind and identity to its key, used
by every write and by `vecshard apply`'s comparison with what is stored."""

from __future__ import annotations

from typing import Any

from core.errors import InvalidArgument
from registry import codec
from registry.access_policy import Principal
from registry.keys import Keys
from registry.migration import DualWrite, VersionRetention
from registry.model import (
    Bundle,
    EmbeddingFamily,
    EmbeddingVersion,
    IndexVersion,
    Retirement,
    Route,
    ShardStateIntent,
    Tenant,
)
from registry.quality import CanaryQuerySet, IndexEvaluation


def key_of(keys: Keys, obj: Any) -> str:
    match obj:
        case EmbeddingFamily():
            return keys.family(obj.name)
        case EmbeddingVersion():
            return keys.embedding_version(obj.name, obj.version)
        case IndexVersion():
            return keys.index(obj.name, obj.version)
        case Bundle():
            return keys.bundle(obj.name)
        case Route():
            return keys.route(obj.name)
        case Tenant():
            return keys.tenant(obj.tenant_id)
        case ShardStateIntent():
            return keys.shard_intent(obj.shard_id)
        case IndexEvaluation():
            return keys.evaluation(obj.index.name, obj.index.version)
        case VersionRetention():
            return keys.retention(obj.index.name, obj.index.version)
        case CanaryQuerySet():
            return keys.canary_set(obj.name, obj.version)
        case DualWrite():
            return keys.dual_write(obj.family)
        case Principal():
            return keys.principal(obj.name)
        case Retirement():
            return keys.retired(obj.kind, obj.name, obj.version)
    kind = type(obj).__name__
    if kind in codec.KINDS:  # feature definitions, groups, sets
        return keys.feature(kind, obj.name, getattr(obj, "version", ""))
    raise InvalidArgument(f"cannot store a {kind} in the registry")
