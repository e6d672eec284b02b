"""Bulk writes from arrays: `RetrievalClient.upsert_matrix`.

A matrix of vectors with its ids (and attributes as columns) goes out as
`UpsertColumns` requests — ids packed, one float32 buffer, one typed column per
attribute — so writing 100,000 records builds no Python object per record on
either side. The per-record `upsert` stays for small calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from client.arguments import entity_ids, float_vectors, int64s
from client.connection import ClientCalls, now_micros
from core.columns_wire import record_columns_to_pb
from core.domain import AttrType, AttrValue
from core.errors import InvalidArgument
from core.record_columns import AttributeColumn, PackedStrings, RecordColumns, first_row
from protos.vecshard.v1 import retrieval_pb2 as pb

# What one request may carry: the coordinator's record limit, and a size well
# under the servers' 64 MiB message limit.
MAX_ROWS_PER_REQUEST = 10_000
MAX_REQUEST_BYTES = 32 << 20

ColumnLike = AttributeColumn | np.ndarray | Sequence[AttrValue | None]


def _column_type(name: str, values: Sequence[AttrValue | None]) -> AttrType:
    kinds = set()
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            raise InvalidArgument(f"attribute {name!r}: booleans are not an attribute type")
        if isinstance(v, str):
            kinds.add(AttrType.STRING)
        elif isinstance(v, int | np.integer):
            kinds.add(AttrType.INT)
        elif isinstance(v, float | np.floating):
            kinds.add(AttrType.FLOAT)
        elif isinstance(v, list | tuple) and all(isinstance(s, str) for s in v):
            kinds.add(AttrType.STRING_LIST)
        else:
            raise InvalidArgument(
                f"attribute {name!r}: {v!r} is not a string, int, float or list of strings"
            )
    if kinds == {AttrType.INT, AttrType.FLOAT}:
        return AttrType.FLOAT
    if len(kinds) > 1:
        raise InvalidArgument(
            f"attribute {name!r} mixes {sorted(k.value for k in kinds)}; a column has one type"
        )
    return kinds.pop() if kinds else AttrType.STRING


def attribute_column(name: str, values: ColumnLike, n: int) -> AttributeColumn:
    """A column from an int or float array (every row has the value), or a
    sequence with None for rows without the attribute, or a ready column."""
    if isinstance(values, AttributeColumn):
        col = values
    elif isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        present = np.ones(values.shape[0], dtype=bool)
        if values.dtype.kind == "f":
            col = AttributeColumn(AttrType.FLOAT, values.astype(np.float64), present)
        else:
            col = AttributeColumn(AttrType.INT, int64s(values, f"attribute {name!r}"), present)
    else:
        items: list[Any] = values.tolist() if isinstance(values, np.ndarray) else list(values)
        kind = _column_type(name, items)
        if kind is AttrType.INT:  # checked here, row by row, not wrapped by a cast
            filled = [0 if v is None else v for v in items]
            present = np.array([v is not None for v in items], dtype=bool)
            col = AttributeColumn(kind, int64s(filled, f"attribute {name!r}"), present)
        else:
            col = AttributeColumn.of(kind, [tuple(v) if isinstance(v, list) else v for v in items])
    if len(col) != n:
        raise InvalidArgument(f"attribute {name!r}: {len(col)} values for {n} rows")
    return col


def _int64s(values: Sequence[int] | np.ndarray | None, n: int, what: str) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=np.int64)
    out = int64s(values, what)
    if out.shape != (n,):
        raise InvalidArgument(f"{what}: shape {out.shape}, expected ({n},)")
    return out


def record_columns(
    ids: Sequence[str],
    vectors: np.ndarray | Sequence[Sequence[float]],
    *,
    attributes: Mapping[str, ColumnLike] | None = None,
    source_versions: Sequence[int] | np.ndarray | None = None,
    created_at: Sequence[int] | np.ndarray | None = None,
    model_version: str = "",
    entity_type: str = "",
) -> RecordColumns:
    """Checked columns: one id per row, a finite 2-d float32 matrix."""
    matrix = np.ascontiguousarray(float_vectors(vectors, "vectors"))
    n = len(ids)
    if matrix.ndim != 2 or matrix.shape[0] != n:
        raise InvalidArgument(f"vectors: shape {matrix.shape}, expected ({n}, dimension)")
    row = first_row(~np.isfinite(matrix).all(axis=1))
    if row is not None:
        raise InvalidArgument(f"vectors[{row}] ({ids[row]!r}): contains NaN or Inf")
    return RecordColumns(
        PackedStrings.of(ids),
        matrix,
        _int64s(source_versions, n, "source_versions"),
        _int64s(created_at, n, "created_at"),
        {name: attribute_column(name, v, n) for name, v in (attributes or {}).items()},
        model_version,
        entity_type,
    )


class ColumnWrites(ClientCalls):
    """`upsert_matrix`, mixed into RetrievalClient."""

    def upsert_matrix(
        self,
        embedding_name: str,
        embedding_version: str,
        ids: Sequence[str],
        vectors: np.ndarray | Sequence[Sequence[float]],
        *,
        attributes: Mapping[str, ColumnLike] | None = None,
        source_versions: Sequence[int] | np.ndarray | None = None,
        created_at: Sequence[int] | np.ndarray | None = None,
        model_version: str = "",
        entity_type: str = "",
        batch_size: int = 5000,
        max_in_flight: int = 2,
        timeout: float | None = None,
    ) -> tuple[int, int]:
        """Writes row i as (ids[i], vectors[i], each attribute's value i);
        returns (written, ignored_stale). The rules are `upsert`'s: rows
        without a source_version get the SDK's clock (one version for the
        call, so a retried request repeats it).

        Attributes are columns: an int or float array (every row has it), or
        a sequence with None where a row lacks it. Everything is checked
        before the first request; requests carry `batch_size` rows (fewer for
        large vectors) and up to `max_in_flight` are sent at once — only when
        every id is distinct, so a key written twice in one call keeps the
        order of its rows. A failed request raises; the requests acknowledged
        before it are written (retrying the call with explicit
        source_versions is idempotent)."""
        if batch_size < 1 or max_in_flight < 1:
            raise InvalidArgument("batch_size and max_in_flight must be ≥ 1")
        ids = entity_ids(ids, "ids")
        if attributes is not None and not isinstance(attributes, Mapping):
            raise InvalidArgument(
                f"attributes: {type(attributes).__name__}; expected a mapping of name to column"
            )
        if source_versions is None:
            source_versions = np.full(len(ids), now_micros(), dtype=np.int64)
        batch = record_columns(
            ids,
            vectors,
            attributes=attributes,
            source_versions=source_versions,
            created_at=created_at,
            model_version=model_version,
            entity_type=entity_type,
        )
        n = len(batch)
        row_bytes = max(1, batch.dimension * 4 + int(batch.entity_ids.lengths().mean() if n else 0))
        step = max(1, min(batch_size, MAX_ROWS_PER_REQUEST, MAX_REQUEST_BYTES // row_bytes))
        in_flight = max_in_flight if len(set(ids)) == n else 1
        t = self._timeout(timeout)
        written = ignored = 0
        requests = [
            pb.UpsertColumnsRequest(
                access=self.access,
                embedding_name=embedding_name,
                embedding_version=embedding_version,
                records=record_columns_to_pb(
                    batch.take(np.arange(start, min(n, start + step))) if step < n else batch
                ),
            )
            for start in range(0, n, step)
        ]
        # Up to `in_flight` requests at once, each retried on another
        # coordinator like any idempotent call (client.connection).
        with ThreadPoolExecutor(max_workers=in_flight) as pool:
            for resp in pool.map(lambda req: self._rpc("UpsertColumns", req, t), requests):
                written += resp.written
                ignored += resp.ignored_stale
        return written, ignored
