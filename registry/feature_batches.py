"""Rows of one feature group as columns: what a put writes (`RowBatch`) and
what a multi-get reads back (`StoredRows`), checked by the same rules as one
row (`GroupSchema.check_row`) but an array at a time.

Why columns: a bulk load writes tens of thousands of rows a second and a
GetFeatures reads hundreds per shard; a Python object per value would be
most of the cost (DESIGN §7). `GroupRow` stays the unit for single rows and
tests; `rows_to_batch` / `batch_to_rows` convert between the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.domain import EntityKey
from core.errors import InvalidArgument
from core.feature_columns import (
    FLOAT64,
    FLOAT_LIST,
    INT64,
    FeatureColumn,
    concat,
    empty,
    from_values,
)
from core.timestamps import check_times
from registry.features import GroupRow, GroupSchema

_INT64 = np.dtype("<i8")


@dataclass(frozen=True, eq=False)
class RowBatch:
    """Rows to write: one entity, two times and a value per feature each.
    `columns` holds every feature of the group (null where a row has none)."""

    entities: Sequence[EntityKey]
    feature_timestamp: npt.NDArray[np.int64]
    generated_at: npt.NDArray[np.int64]
    columns: Mapping[str, FeatureColumn]

    def __len__(self) -> int:
        return len(self.entities)

    def take(self, rows: npt.NDArray[np.int64]) -> RowBatch:
        return RowBatch(
            [self.entities[i] for i in rows.tolist()],
            self.feature_timestamp[rows],
            self.generated_at[rows],
            {name: c.take(rows) for name, c in self.columns.items()},
        )


@dataclass(frozen=True, eq=False)
class StoredRows:
    """Rows read for a batch of entities: `present` where one is stored, its
    times and values there (0 and null elsewhere)."""

    present: npt.NDArray[np.bool_]
    feature_timestamp: npt.NDArray[np.int64]
    generated_at: npt.NDArray[np.int64]
    columns: Mapping[str, FeatureColumn]

    def __len__(self) -> int:
        return len(self.present)


def absent_rows(schema: GroupSchema, rows: int) -> StoredRows:
    zeros = np.zeros(rows, dtype=np.int64)
    return StoredRows(
        np.zeros(rows, dtype=bool),
        zeros,
        zeros,
        {d.name: empty(d.dtype.value, rows) for d in schema.definitions},
    )


def rows_to_batch(schema: GroupSchema, rows: Sequence[GroupRow]) -> RowBatch:
    """Rows checked one by one (`check_row`: canonical values), as columns."""
    checked = [schema.check_row(r) for r in rows]
    return RowBatch(
        [r.entity for r in checked],
        np.array([r.feature_timestamp for r in checked], dtype=np.int64),
        np.array([r.generated_at for r in checked], dtype=np.int64),
        {
            d.name: from_values(d.dtype.value, [r.values[d.name] for r in checked])
            for d in schema.definitions
        },
    )


def batch_to_rows(schema: GroupSchema, batch: RowBatch) -> list[GroupRow]:
    values = {name: batch.columns[name].to_list() for name in schema.names}
    return [
        GroupRow(key, ts, gen, {name: values[name][i] for name in schema.names})
        for i, (key, ts, gen) in enumerate(
            zip(
                batch.entities,
                batch.feature_timestamp.tolist(),
                batch.generated_at.tolist(),
                strict=True,
            )
        )
    ]


def check_batch(schema: GroupSchema, batch: RowBatch) -> RowBatch:
    """The batch with a column for every feature of the group (null where it
    sent none), or InvalidArgument naming what is wrong — the rules of
    `GroupSchema.check_row`: times in range (`core.timestamps`), the group's
    entity type, a non-empty id, known features, each of its definition's
    dtype, and finite floats (null says missing; NaN would break equality
    and parity)."""
    where = f"feature group {schema.ref}"
    n = len(batch.entities)
    for what, times in (
        ("feature_timestamp", batch.feature_timestamp),
        ("generated_at", batch.generated_at),
    ):
        if times.dtype != _INT64 or times.shape != (n,):
            raise InvalidArgument(
                f"{where}: {what} holds {times.shape} {times.dtype}; expected {n} int64 "
                "microseconds, one per row"
            )
        check_times(what, times, lambda i: f"{where}, row {i} {tuple(batch.entities[i])}")
    etype = schema.group.entity_type
    for i, key in enumerate(batch.entities):
        if key.entity_type != etype or not key.entity_id:
            raise InvalidArgument(
                f"{where}, row {i} {tuple(key)}: expected entity type {etype!r} and a non-empty "
                "entity_id"
            )
    unknown = sorted(set(batch.columns) - set(schema.names))
    if unknown:
        raise InvalidArgument(
            f"{where}: unknown feature(s) {unknown}; expected some of {list(schema.names)}"
        )
    columns = {}
    for d in schema.definitions:
        col = batch.columns.get(d.name)
        if col is None:
            columns[d.name] = empty(d.dtype.value, n)
            continue
        if col.dtype != d.dtype.value:
            col = _coerced(col, d.dtype.value, f"{where}: feature {d.name!r}")
        if len(col) != n:
            raise InvalidArgument(
                f"{where}: feature {d.name!r} has {len(col)} values; expected {n}, one per row"
            )
        if col.dtype == FLOAT64 and not np.isfinite(col.values[col.valid]).all():
            raise InvalidArgument(
                f"{where}: feature {d.name!r} has a non-finite value; use null for missing"
            )
        if col.dtype == FLOAT_LIST and not np.isfinite(col.values).all():
            raise InvalidArgument(
                f"{where}: feature {d.name!r} has a non-finite item in a float_list; a list may "
                "hold finite numbers only"
            )
        columns[d.name] = col
    return RowBatch(batch.entities, batch.feature_timestamp, batch.generated_at, columns)


def _coerced(col: FeatureColumn, dtype: str, where: str) -> FeatureColumn:
    """What `canonical_value` accepts of another dtype: ints for a float64
    feature, and nulls for any feature."""
    if not col.valid.any():
        return empty(dtype, len(col))
    if col.dtype == INT64 and dtype == FLOAT64:
        return FeatureColumn(FLOAT64, col.valid, col.values.astype(np.float64))
    raise InvalidArgument(f"{where} holds {col.dtype} values; expected {dtype}")


def newest_per_entity(batch: RowBatch) -> npt.NDArray[np.int64]:
    """Positions of the rows that win within the batch, in first-seen order
    of their entity: per entity the greatest (feature_timestamp,
    generated_at), the later row on a tie — the order a replay repeats
    (`GroupRow.supersedes`)."""
    best: dict[EntityKey, int] = {}
    ts, gen = batch.feature_timestamp.tolist(), batch.generated_at.tolist()
    for i, key in enumerate(batch.entities):
        prev = best.get(key)
        if prev is None or (ts[i], gen[i]) >= (ts[prev], gen[prev]):
            best[key] = i
    return np.fromiter(best.values(), dtype=np.int64, count=len(best))


def stored_rows(schema: GroupSchema, rows: Sequence[GroupRow | None]) -> StoredRows:
    """`StoredRows` of rows already in memory (None: none stored), checked."""
    where = [i for i, r in enumerate(rows) if r is not None]
    batch = rows_to_batch(schema, [r for r in rows if r is not None])
    # Absent rows read the null row appended after the stored ones.
    pick = np.full(len(rows), len(where), dtype=np.int64)
    pick[where] = np.arange(len(where))
    nulls = absent_rows(schema, 1)
    return StoredRows(
        np.array([r is not None for r in rows], dtype=bool),
        np.append(batch.feature_timestamp, 0)[pick],
        np.append(batch.generated_at, 0)[pick],
        {name: concat([c, nulls.columns[name]]).take(pick) for name, c in batch.columns.items()},
    )
