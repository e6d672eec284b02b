"""What `get_features` returns: per entity type, the features of its
entities in request order as numpy columns — values, validity, missing
reason, fill applied, staleness — assembled from the blocks the shards
answered with one array operation per group (`FeatureResponse`).

Why numpy and not Arrow: the bare SDK needs only grpcio, protobuf and numpy,
and the wire already carries Arrow's columnar layout, so numeric values are
read without a copy and `to_arrow()` wraps the same buffers for those who
have pyarrow (the `offline` extra). Per-value objects (`entities`, the
`FeatureValue` of before) are built only when asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from core.column_wire import resolved_from_pb
from core.domain import EntityKey
from core.errors import Internal
from core.feature_columns import (
    BOOL,
    FILLS,
    FLOAT_LIST,
    MISSING_REASONS,
    STRING,
    FeatureColumn,
    ResolvedColumns,
    concat_resolved,
)
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb


@dataclass(frozen=True)
class FeatureValue:
    """One feature of one entity; `missing_reason` is None when served as stored."""

    name: str
    value: object
    missing_reason: str | None = None
    default_applied: str | None = None
    staleness_us: int | None = None
    feature_timestamp_us: int | None = None


@dataclass(frozen=True)
class EntityFeatures:
    key: EntityKey
    values: list[FeatureValue]

    def __getitem__(self, name: str) -> FeatureValue:
        for v in self.values:
            if v.name == name:
                return v
        raise KeyError(
            f"{name!r}; features of {self.key.entity_type!r}: {[v.name for v in self.values]}"
        )


@dataclass(frozen=True, eq=False)
class FeatureArray:
    """One feature for the entities of one type, in request order.

    `values`: int64 / float64 / bool numpy array (0 / False where null) —
    a view of the wire bytes, no copy when one shard answered; for strings
    and float lists, per-value Python objects, built on first use (the raw
    buffers are `column.values` and `column.offsets`). `valid`: True where
    there is a value (stored or filled). Codes index `MISSING_REASONS` /
    `FILLS`; `stored`, `staleness_us` and `feature_timestamp_us` describe
    the entity's stored row of the feature's group."""

    name: str
    column: FeatureColumn
    missing_reason_codes: npt.NDArray[np.uint8]
    default_applied_codes: npt.NDArray[np.uint8]
    stored: npt.NDArray[np.bool_]
    staleness_us: npt.NDArray[np.int64]
    feature_timestamp_us: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.column)

    @property
    def dtype(self) -> str:
        return self.column.dtype

    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        return self.column.valid

    @cached_property
    def values(self) -> npt.NDArray[Any]:
        if self.column.dtype in (STRING, FLOAT_LIST):
            out = np.empty(len(self), dtype=object)
            out[:] = self.column.to_list()
            return out
        return self.column.values

    def reasons(self) -> list[str | None]:
        return [MISSING_REASONS[c] for c in self.missing_reason_codes.tolist()]

    def fills(self) -> list[str | None]:
        return [FILLS[c] for c in self.default_applied_codes.tolist()]

    def to_list(self) -> list[Any]:
        return self.column.to_list()

    def to_arrow(self) -> Any:
        """The values as a `pyarrow.Array` over the same buffers (needs pyarrow)."""
        return arrow_array(self.column)


def arrow_array(col: FeatureColumn) -> Any:
    """A column as a `pyarrow.Array` over its buffers (needs pyarrow): the
    layouts are the same, so numbers and strings are not copied."""
    pa = _pyarrow()
    n = len(col)
    mask = None if col.valid.all() else pa.py_buffer(np.packbits(col.valid, bitorder="little"))
    if col.dtype == BOOL:
        bits = pa.py_buffer(np.packbits(col.values, bitorder="little"))
        return pa.Array.from_buffers(pa.bool_(), n, [mask, bits])
    if col.dtype == STRING:
        assert col.offsets is not None
        buffers = [mask, pa.py_buffer(col.offsets), pa.py_buffer(col.values)]
        return pa.Array.from_buffers(pa.string(), n, buffers)
    if col.dtype == FLOAT_LIST:
        assert col.offsets is not None
        items = pa.array(col.values, pa.float64())
        offsets = pa.array(col.offsets, pa.int32())
        return pa.ListArray.from_arrays(offsets, items, mask=pa.array(~col.valid))
    kind = pa.int64() if col.dtype == "int64" else pa.float64()
    return pa.Array.from_buffers(kind, n, [mask, pa.py_buffer(col.values)])


def _pyarrow() -> Any:
    try:
        import pyarrow  # the SDK's one optional import: see the module docstring
    except ImportError:
        raise ImportError(
            "to_arrow() needs pyarrow: pip install 'vecshard[offline]' (or pyarrow); "
            "the numpy columns need nothing more"
        ) from None
    return pyarrow


@dataclass(frozen=True, eq=False)
class FeatureFrame:
    """The features of the request's entities of one type, in request order:
    `positions` are their indices among all the request's entities."""

    entity_type: str
    positions: npt.NDArray[np.int64]
    names: list[str]
    arrays: Mapping[str, FeatureArray]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, name: str) -> FeatureArray:
        try:
            return self.arrays[name]
        except KeyError:
            raise KeyError(f"{name!r}; features of {self.entity_type!r}: {self.names}") from None

    def to_arrow(self) -> Any:
        """A `pyarrow.Table`: one column per feature, plus per feature
        `{name}__missing_reason`, `{name}__default_applied` and
        `{name}__staleness_us` — the columns of an offline point-in-time
        join with diagnostics (needs pyarrow)."""
        pa = _pyarrow()
        columns: dict[str, Any] = {}
        for name in self.names:
            a = self.arrays[name]
            columns[name] = a.to_arrow()
            columns[f"{name}__missing_reason"] = pa.array(a.reasons(), pa.string())
            columns[f"{name}__default_applied"] = pa.array(a.fills(), pa.string())
            staleness = pa.array(a.staleness_us, pa.int64(), mask=~a.stored)
            columns[f"{name}__staleness_us"] = staleness
        return pa.table(columns)


def _assemble(
    etype: str, rows: int, blocks: Sequence[tuple[pb.FeatureBlock, ResolvedColumns]]
) -> dict[str, FeatureArray]:
    """The arrays of one entity type from its blocks: per group, the blocks
    concatenated and put in request order with one `take`."""
    by_group: dict[tuple[str, ...], list[tuple[npt.NDArray[np.int32], ResolvedColumns]]] = {}
    for block, resolved in blocks:
        placed = np.frombuffer(block.rows, dtype="<i4")
        by_group.setdefault(tuple(block.outputs), []).append((placed, resolved))
    out: dict[str, FeatureArray] = {}
    for outputs, parts in by_group.items():
        placed = np.concatenate([p for p, _ in parts]).astype(np.int64)
        if len(placed) != rows or np.bincount(placed, minlength=rows).max(initial=0) > 1:
            raise Internal(
                f"the answer for {etype!r} features {list(outputs)} does not hold each of the "
                f"{rows} entities exactly once"
            )
        order = np.empty(rows, dtype=np.int64)
        order[placed] = np.arange(rows)
        joined = concat_resolved([r for _, r in parts])
        resolved = (
            joined if len(parts) == 1 and (placed == np.arange(rows)).all() else joined.take(order)
        )
        for j, name in enumerate(outputs):
            out[name] = FeatureArray(
                name,
                resolved.columns[j],
                resolved.reasons[j],
                resolved.fills[j],
                resolved.stored,
                resolved.staleness_us,
                resolved.feature_timestamp_us,
            )
    return out


class FeatureResponse:
    """Features of a request's entities, by entity type (`frames`), in
    request order; `missing_by_reason` counts values not served as stored."""

    def __init__(
        self, tenant_id: str, entities: cpb.EntityKeyColumns, response: pb.GetFeaturesResponse
    ) -> None:
        self.tenant_id = tenant_id
        self._entities = entities
        self.missing_by_reason: dict[str, int] = dict(response.diagnostics.missing_by_reason)
        self.latency_ms = response.diagnostics.latency_ms
        names = {t: list(n.names) for t, n in response.features_by_entity_type.items()}
        codes = np.frombuffer(entities.type_index, dtype=np.uint8)
        blocks: dict[str, list[tuple[pb.FeatureBlock, ResolvedColumns]]] = {}
        for b in response.blocks:
            where = f"features of {b.entity_type!r} {list(b.outputs)}"
            blocks.setdefault(b.entity_type, []).append((b, resolved_from_pb(b.columns, where)))
        self.frames: dict[str, FeatureFrame] = {}
        for etype, parts in blocks.items():
            code = list(entities.entity_types).index(etype)
            positions = np.flatnonzero(codes == code)
            arrays = _assemble(etype, len(positions), parts)
            self.frames[etype] = FeatureFrame(etype, positions, names.get(etype, []), arrays)

    @cached_property
    def keys(self) -> list[EntityKey]:
        """The request's entities, in order."""
        types = list(self._entities.entity_types)
        return [
            EntityKey(self.tenant_id, types[c], i)
            for c, i in zip(self._entities.type_index, self._entities.entity_ids, strict=True)
        ]

    def frame(self, entity_type: str) -> FeatureFrame:
        try:
            return self.frames[entity_type]
        except KeyError:
            raise KeyError(
                f"no features of entity type {entity_type!r}; have {sorted(self.frames)}"
            ) from None

    def column(self, entity_type: str, name: str) -> FeatureArray:
        return self.frame(entity_type)[name]

    @cached_property
    def entities(self) -> list[EntityFeatures]:
        """Per entity, in request order, its values as objects (convenient
        for a few entities; the arrays are the fast path)."""
        out: list[EntityFeatures | None] = [None] * len(self.keys)
        for frame in self.frames.values():
            cols = []
            for name in frame.names:
                a = frame[name]
                cols.append(
                    (
                        name,
                        a.to_list(),
                        a.reasons(),
                        a.fills(),
                        a.stored.tolist(),
                        a.staleness_us.tolist(),
                        a.feature_timestamp_us.tolist(),
                    )
                )
            for row, pos in enumerate(frame.positions.tolist()):
                values = [
                    FeatureValue(
                        name,
                        vals[row],
                        reasons[row],
                        fills[row],
                        stale[row] if stored[row] else None,
                        ts[row] if stored[row] else None,
                    )
                    for name, vals, reasons, fills, stored, stale, ts in cols
                ]
                out[pos] = EntityFeatures(self.keys[pos], values)
        return [
            e if e is not None else EntityFeatures(k, [])
            for e, k in zip(out, self.keys, strict=True)
        ]
