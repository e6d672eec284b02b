"""Write records as the coordinator accepts them.

Everything a shard would reject is rejected here first, so no shard writes
part of a batch that another shard refuses. Pure: the clock is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from coordinator.access import own_key
from coordinator.dual_write import copy_into
from coordinator.model import Access, WriteRecord
from core.domain import EntityKey, Metric
from core.errors import InvalidArgument
from core.filters import validate_attributes
from core.limits import Limits
from core.timestamps import check_time
from core.vectors import check_vector
from registry.model import EmbeddingFamily, IndexVersion


def check_source_version(version: int, where: str) -> None:
    """Versions are positive (0: unset, the coordinator's clock). Why: a
    centroid move fences the key on every other shard just below its
    version, and below INT64_MIN that wrapped to INT64_MAX — the key could
    never be written there again; nor can a negative version be anything
    but a mistake (the SDK's default is the clock in microseconds)."""
    if version < 0:
        raise InvalidArgument(
            f"{where}: source_version {version}; expected a positive int64 "
            "(or 0 for the coordinator's clock)"
        )


def _short(key: EntityKey) -> str:
    """A key for an error message: an oversized id must not flood the message."""
    return repr(tuple(part if len(part) <= 64 else part[:61] + "..." for part in key))


def checked_records(
    access: Access,
    family: EmbeddingFamily,
    indexes: Sequence[IndexVersion],
    records: Sequence[WriteRecord],
    limits: Limits,
    now_micros: int,
    mirrored: Sequence[IndexVersion] = (),
) -> list[WriteRecord]:
    """The records with their keys owned and their source_version and
    created_at defaulted to `now_micros`; the first bad one rejects the batch
    (input limits included: core.limits). `mirrored`: the dual-write
    target's indexes, which must take each record too (`copy_into`)."""
    if not records:
        raise InvalidArgument(f"upsert: no records; expected 1..{limits.max_records_per_request}")
    limits.check_count("upsert records", len(records), "max_records_per_request")
    out = []
    for i, r in enumerate(records):
        where = f"records[{i}] {_short(r.key)}"
        key = own_key(r.key, access, family, where)
        limits.check_key(key, where)
        limits.check_attributes(r.attributes, where)
        limits.check_model_version(r.model_version, where)
        check_vector(r.vector, family.dimension, what=where)
        check_source_version(r.source_version, where)
        if r.created_at:  # 0: unset, now
            check_time("created_at_unix_micros", r.created_at, where)
        if (family.metric is Metric.COSINE or family.normalize) and not np.any(r.vector):
            raise InvalidArgument(
                f"{where}: zero vector cannot be normalized (cosine); expected norm > 0"
            )
        for index in indexes:
            validate_attributes(r.attributes, index.attributes, where)
        for index in mirrored:
            with copy_into(index):
                validate_attributes(r.attributes, index.attributes, where)
        out.append(
            replace(
                r,
                key=key,
                source_version=r.source_version or now_micros,
                created_at=r.created_at or now_micros,
            )
        )
    return out
