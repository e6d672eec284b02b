"""Write records as the coordinator accepts them.

Everything a shard would reject is rejected here first, so no shard writes
part of a batch that another shard refuses. Pure: the clock is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from coordinator.access import own_key
from coordinator.model import Access, WriteRecord
from core.domain import Metric
from core.errors import InvalidArgument
from core.filters import validate_attributes
from core.vectors import check_vector
from registry.model import EmbeddingFamily, IndexVersion


def checked_records(
    access: Access,
    family: EmbeddingFamily,
    indexes: Sequence[IndexVersion],
    records: Sequence[WriteRecord],
    max_records: int,
    now_micros: int,
) -> list[WriteRecord]:
    """The records with their keys owned and their source_version and
    created_at defaulted to `now_micros`; the first bad one rejects the batch."""
    if not records:
        raise InvalidArgument(f"upsert: no records; expected 1..{max_records}")
    if len(records) > max_records:
        raise InvalidArgument(
            f"upsert: {len(records)} records in one request, expected at most "
            f"{max_records}; split the batch"
        )
    out = []
    for i, r in enumerate(records):
        where = f"records[{i}] {tuple(r.key)}"
        key = own_key(r.key, access, family, where)
        check_vector(r.vector, family.dimension, what=where)
        if (family.metric is Metric.COSINE or family.normalize) and not np.any(r.vector):
            raise InvalidArgument(
                f"{where}: zero vector cannot be normalized (cosine); expected norm > 0"
            )
        for index in indexes:
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
