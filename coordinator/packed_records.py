"""Records as columns (`UpsertColumns`), as the coordinator accepts them.

The same rules as `coordinator.records` for per-record writes, checked with
array operations over the whole batch: everything a shard would reject is
rejected here first, so no shard writes part of a batch another refuses; the
first bad row rejects the batch, naming its key. Pure: the clock is an
argument.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from coordinator.dual_write import copy_into
from coordinator.model import Access
from coordinator.records import check_source_version
from core.domain import AttrType, Metric
from core.errors import InvalidArgument
from core.limits import Limits
from core.record_columns import RecordColumns, first_row
from core.timestamps import check_times
from registry.model import EmbeddingFamily, IndexVersion


def _kind_ok(declared: AttrType, given: AttrType) -> bool:
    """`core.filters.validate_attributes` over a column's type: an int is a
    valid float, nothing else converts."""
    return given is declared or (declared is AttrType.FLOAT and given is AttrType.INT)


def checked_columns(
    access: Access,
    family: EmbeddingFamily,
    indexes: Sequence[IndexVersion],
    records: RecordColumns,
    limits: Limits,
    max_records: int,
    now_micros: int,
    mirrored: Sequence[IndexVersion] = (),
) -> RecordColumns:
    """The records with their entity type set to the family's and every
    unset source_version and created_at set to `now_micros`. `mirrored`: the
    dual-write target's indexes, which must take each record too."""
    n = len(records)
    if not n:
        raise InvalidArgument(f"upsert: no records; expected 1..{max_records}")
    if n > max_records:
        raise InvalidArgument(
            f"upsert: {n} records in one request, expected at most {max_records}; split the batch"
        )
    tenant = access.tenant_id
    etype = records.entity_type or family.entity_type
    if etype != family.entity_type:
        raise InvalidArgument(
            f"records: entity_type {records.entity_type!r}, expected {family.entity_type!r} "
            f"for family {family.name!r}"
        )

    def where(i: int) -> str:
        return f"records[{i}] {(tenant, etype, records.entity_ids[i])}"

    row = first_row(records.entity_ids.lengths() == 0)
    if row is not None:
        raise InvalidArgument(f"{where(row)}: entity_id is empty, expected a non-empty id")
    limits.check_key_columns(tenant, etype, records.entity_ids, where)
    if records.dimension != family.dimension:
        raise InvalidArgument(
            f"{where(0)}: dimension {records.dimension} does not match, expected {family.dimension}"
        )
    check_times("created_at_unix_micros", records.created_at, where)  # 0: unset, now
    row = first_row(records.source_versions < 0)
    if row is not None:
        check_source_version(int(records.source_versions[row]), where(row))
    vectors = records.vectors
    row = first_row(~np.isfinite(vectors).all(axis=1))
    if row is not None:
        raise InvalidArgument(f"{where(row)}: contains NaN or Inf, expected finite float32 values")
    if family.metric is Metric.COSINE or family.normalize:
        row = first_row(~vectors.any(axis=1))
        if row is not None:
            raise InvalidArgument(
                f"{where(row)}: zero vector cannot be normalized (cosine); expected norm > 0"
            )
    for index in indexes:
        _check_declared(records, index, where)
    for index in mirrored:
        with copy_into(index):
            _check_declared(records, index, where)
    limits.check_attribute_columns(records.attributes, n, where)
    limits.check_model_version(records.model_version, "records")
    return replace(
        records,
        entity_type=etype,
        source_versions=np.where(records.source_versions == 0, now_micros, records.source_versions),
        created_at=np.where(records.created_at == 0, now_micros, records.created_at),
    )


def _check_declared(
    records: RecordColumns, index: IndexVersion, where: Callable[[int], str]
) -> None:
    """Declared attributes must have their declared type (and be finite)."""
    for name, col in records.attributes.items():
        declared = index.attributes.get(name)
        if declared is None:
            continue  # stored as metadata, not filterable
        row = None if _kind_ok(declared, col.type) else first_row(col.present)
        if row is not None:
            raise InvalidArgument(
                f"{where(row)}: attribute {name!r} is {col.value(row)!r}, expected {declared.value}"
            )
        if col.type is AttrType.FLOAT:
            row = first_row(col.present & ~np.isfinite(np.asarray(col.values)))
            if row is not None:
                raise InvalidArgument(
                    f"{where(row)}: attribute {name!r} is {col.value(row)}, "
                    "expected a finite number"
                )
