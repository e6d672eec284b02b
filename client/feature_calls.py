"""GetFeatures / PutFeatures for `RetrievalClient`, both columnar on the wire.

`get_features` asks for columns and returns a `FeatureResponse` (numpy
arrays per entity type). `put_features` takes rows and sends them as
columns; `put_feature_columns` takes the columns themselves (numpy arrays,
sequences with None for null, or `FeatureColumn`s) — the fast path for bulk
loads. Each feature's dtype is taken from its values (bool, int, float,
str, a list of floats); the server refuses, naming the feature, a dtype
other than the definition's (ints are accepted for float64 features).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from client.arguments import entity_ids, int64s, integer, items_of, key_parts
from client.column_writes import MAX_REQUEST_BYTES
from client.connection import ClientCalls
from client.feature_results import FeatureResponse
from core.column_wire import key_columns_to_pb, row_columns_to_pb
from core.domain import EntityKey
from core.errors import InvalidArgument
from core.feature_columns import (
    BOOL,
    FLOAT64,
    FLOAT_LIST,
    INT64,
    STRING,
    VALUE_DTYPE,
    VARIABLE,
    FeatureColumn,
    from_values,
)
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb

EntityLike = EntityKey | tuple[str, str]


def _kind(v: Any) -> str | None:
    """The dtype a Python or numpy scalar (or a list) is written as; None
    when it is none of them. bool before int: a bool is an int in Python."""
    if isinstance(v, bool | np.bool_):
        return BOOL
    if isinstance(v, int | np.integer):
        return INT64
    if isinstance(v, float | np.floating):
        return FLOAT64
    if isinstance(v, str):
        return STRING
    if isinstance(v, list | tuple | np.ndarray):
        return FLOAT_LIST
    return None


def _float_list(name: str, row: int, v: Any) -> tuple[float, ...]:
    """The items of a float_list, each a real number (the server's rule,
    `registry.features.canonical_value`): float() turned "1" and True into
    1.0 and wrote them, and a None raised a bare TypeError."""
    items = v.tolist() if isinstance(v, np.ndarray) else v
    for i, x in enumerate(items):
        if isinstance(x, bool | np.bool_) or not isinstance(x, int | float | np.number):
            raise InvalidArgument(
                f"feature {name!r}, row {row}, item {i}: {x!r} is not a number; a float_list "
                "holds numbers only (a null list is None, not a list with None in it)"
            )
    return tuple(float(x) for x in items)


_NUMPY = {"b": BOOL, "i": INT64, "u": INT64, "f": FLOAT64}


def _key(e: EntityLike, what: str = "entity") -> EntityKey:
    parts = key_parts(e, what, (2, 3))
    return EntityKey("", *parts) if len(parts) == 2 else EntityKey(*parts)


def to_column(name: str, values: Any) -> FeatureColumn:
    """A feature's values as a column: numpy arrays (masked arrays: the
    mask is null), sequences with None for null, or a column already."""
    if isinstance(values, FeatureColumn):
        return values
    if isinstance(values, np.ndarray) and values.dtype.kind in _NUMPY:
        dtype = _NUMPY[values.dtype.kind]
        mask = np.ma.getmaskarray(values)
        if dtype == INT64:  # masked values are not written: only the others are checked
            data = int64s(np.where(mask, 0, np.ma.getdata(values)), f"feature {name!r}")
        else:
            data = np.ma.getdata(values).astype(VALUE_DTYPE[dtype])
            data[mask] = 0
        return FeatureColumn(dtype, ~mask, data)
    seq = list(values)
    kinds = {_kind(v) for v in seq if v is not None}
    if kinds == {INT64, FLOAT64}:  # a float feature written partly as ints
        kinds = {FLOAT64}
        seq = [float(v) if v is not None else None for v in seq]
    if None in kinds or len(kinds) > 1:
        raise InvalidArgument(
            f"feature {name!r}: values of several or unknown types "
            f"({sorted({type(v).__name__ for v in seq if v is not None})}); expected one of "
            "bool, int, float, str or a list of floats, None for null"
        )
    if not kinds:  # all null: the server takes a null column of any dtype
        return from_values(FLOAT64, seq)
    kind = str(next(iter(kinds)))
    if kind == INT64:  # a Python int past int64 would fail in numpy, far from its name
        int64s([0 if v is None else v for v in seq], f"feature {name!r}")
    if kind == FLOAT_LIST:
        seq = [_float_list(name, n, v) if v is not None else None for n, v in enumerate(seq)]
    return from_values(kind, seq)


def _request_rows(
    ids: Sequence[str], cols: Mapping[str, FeatureColumn], batch_size: int
) -> list[tuple[int, int]]:
    """Row ranges of the stream's messages: at most `batch_size` rows and
    about `MAX_REQUEST_BYTES` each (at least one row). By rows alone, 10,000
    rows of a 1,024-item list made an 82 MB message, past what any channel
    takes (found in review); one long row among short ones is sized as itself."""
    n = len(ids)
    if n == 0:
        return [(0, 0)]
    size = 16 + np.fromiter((len(i) for i in ids), dtype=np.int64, count=n) * 4
    for c in cols.values():
        width = VALUE_DTYPE[c.dtype].itemsize
        size += c.lengths * width + 4 if c.dtype in VARIABLE else width
    ends = np.cumsum(size)
    out, start = [], 0
    while start < n:
        base = int(ends[start - 1]) if start else 0
        fit = int(np.searchsorted(ends, base + MAX_REQUEST_BYTES, side="right"))
        end = min(start + batch_size, max(fit, start + 1), n)
        out.append((start, end))
        start = end
    return out


class FeatureCalls(ClientCalls):
    """GetFeatures / PutFeatures, mixed into RetrievalClient."""

    def get_features(
        self,
        feature_set: str,
        version: str,
        entities: Iterable[EntityLike] | Mapping[str, Sequence[str]],
        *,
        personalized: bool = True,
        request_time_us: int = 0,
        timeout: float | None = None,
    ) -> FeatureResponse:
        """Features for entities of any types, by entity type in request
        order; a miss is a reason on the value, never an error. `entities`:
        (entity_type, entity_id) pairs or EntityKeys of the client's tenant,
        or — cheapest — {entity_type: [ids]} (request order: type by type)."""
        types, ids, access = self._entities(entities)
        req = pb.GetFeaturesRequest(
            access=access,
            feature_set=feature_set,
            feature_set_version=version,
            entity_columns=key_columns_to_pb(types, ids),
            request_time_us=integer(request_time_us, "request_time_us"),
            personalized=personalized,
            columnar=True,
        )
        r = self._rpc("GetFeatures", req, timeout)
        return FeatureResponse(access.tenant_id, req.entity_columns, r)

    def _entities(
        self, entities: Iterable[EntityLike] | Mapping[str, Sequence[str]]
    ) -> tuple[list[str], list[str], cpb.AccessContext]:
        """Per entity its type and id, and the access the request goes with.
        Keys that name a tenant ask for it: the columnar wire carries one
        tenant per request, so the keys must agree, and the server — not
        this client — decides whether the caller's grant covers it."""
        if isinstance(entities, Mapping):
            batches = {t: entity_ids(b, f"entities[{t!r}]") for t, b in entities.items()}
            types = [t for t, batch in batches.items() for _ in range(len(batch))]
            return types, [i for batch in batches.values() for i in batch], self.access
        types, ids, named = [], [], set()
        listed = items_of(entities, "entities", "(entity_type, entity_id) pairs or a mapping")
        for n, e in enumerate(listed):
            parts = key_parts(e, f"entities[{n}]", (2, 3))
            if len(parts) == 2:
                t, i = parts
            else:
                tenant, t, i = parts
                named.add(tenant)
            types.append(t)
            ids.append(i)
        named.discard("")
        if not named or named == {self.access.tenant_id}:
            return types, ids, self.access
        if len(named) > 1 or self.access.tenant_id:
            raise InvalidArgument(
                f"entities of tenants {sorted(named)} in one request; expected one tenant"
                + (f", the client's {self.access.tenant_id!r}" if self.access.tenant_id else "")
            )
        access = cpb.AccessContext()
        access.CopyFrom(self.access)
        access.tenant_id = named.pop()
        return types, ids, access

    def put_features(
        self,
        group: str,
        version: str,
        rows: Iterable[tuple[EntityLike, int, Mapping[str, object]]],
        *,
        generated_at_us: int = 0,
        generated_at: Sequence[int] | None = None,
        batch_size: int = 10_000,
        timeout: float | None = None,
    ) -> tuple[int, int]:
        """Rows of (entity, feature_timestamp_us, {feature: value}); returns
        (written, ignored because a newer row is stored)."""
        items = items_of(rows, "rows", "(entity, feature_timestamp_us, {feature: value}) rows")
        for n, row in enumerate(items):
            if not (
                isinstance(row, tuple | list) and len(row) == 3 and isinstance(row[2], Mapping)
            ):
                raise InvalidArgument(
                    f"rows[{n}]: {row!r:.60}; expected (entity, feature_timestamp_us, "
                    "{feature: value})"
                )
        names = list(dict.fromkeys(n for _, _, values in items for n in values))
        ts = int64s([t for _, t, _ in items], "feature_timestamp_us of rows")
        if generated_at is not None:
            gen = int64s(generated_at, "generated_at")
        elif generated_at_us:
            gen = np.full(len(items), int64s(generated_at_us, "generated_at_us"), dtype=np.int64)
        else:
            gen = ts
        keys = [_key(e, f"rows[{n}] entity") for n, (e, _, _) in enumerate(items)]
        return self.put_feature_columns(
            group,
            version,
            keys,
            ts,
            {n: [values.get(n) for _, _, values in items] for n in names},
            generated_at_us=gen,
            batch_size=batch_size,
            timeout=timeout,
        )

    def put_feature_columns(
        self,
        group: str,
        version: str,
        entities: Sequence[str | EntityLike],
        feature_timestamp_us: npt.ArrayLike,
        columns: Mapping[str, Any],
        *,
        generated_at_us: npt.ArrayLike | None = None,
        batch_size: int = 10_000,
        timeout: float | None = None,
    ) -> tuple[int, int]:
        """Rows given as columns: entity ids (or keys) of the group's entity
        type, a feature timestamp per row (µs), and per feature its values.
        Every batch is checked by the server before any row of it is
        written; returns (written, ignored because a newer row is stored)."""
        keys = [
            EntityKey("", "", e) if isinstance(e, str) else _key(e, f"entities[{n}]")
            for n, e in enumerate(items_of(entities, "entities", "a list of entity ids or keys"))
        ]
        tenants = {k.tenant_id for k in keys} - {"", self.access.tenant_id}
        types = {k.entity_type for k in keys} - {""}
        if tenants or len(types) > 1:
            raise InvalidArgument(
                f"rows of tenants {sorted(tenants)} and entity types {sorted(types)}; expected "
                f"the client's tenant {self.access.tenant_id!r} and the group's one entity type"
            )
        ids = [k.entity_id for k in keys]
        n = len(ids)
        ts = int64s(feature_timestamp_us, "feature_timestamp_us").reshape(-1)
        gen = ts if generated_at_us is None else int64s(generated_at_us, "generated_at_us")
        if gen.ndim == 0:  # one time for the whole batch (a TypeError from len())
            gen = np.full(n, int(gen), dtype=np.int64)
        cols = {name: to_column(name, v) for name, v in columns.items()}
        for what, length in [("feature_timestamp_us", len(ts)), ("generated_at_us", len(gen))] + [
            (f"feature {name!r}", len(c)) for name, c in cols.items()
        ]:
            if length != n:
                raise InvalidArgument(f"{what} has {length} values; expected {n}, one per entity")
        if batch_size <= 0:
            raise InvalidArgument(f"batch_size {batch_size}; expected a positive number")
        reqs = []
        for start, end in _request_rows(ids, cols, batch_size):
            part = np.arange(start, end)
            whole = start == 0 and end == n
            reqs.append(
                pb.PutFeaturesRequest(
                    access=self.access,
                    group=group,
                    group_version=version,
                    columns=row_columns_to_pb(
                        "",
                        ids[start:end],
                        ts[part],
                        gen[part],
                        {name: c if whole else c.take(part) for name, c in cols.items()},
                        entity_type=next(iter(types), ""),
                    ),
                )
            )
        # A client stream: each attempt sends the whole list again (rows are
        # ordered by their own times, so a retry is idempotent).
        r = self._rpc("PutFeatures", reqs, timeout)
        return r.written, r.ignored_older
