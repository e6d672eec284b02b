"""The offline store (DESIGN §7): Parquet through pyarrow datasets, written and
read with the registry's own definitions.

Layout under one root (hive partitioning, so any Arrow/Spark/DuckDB reader
sees the partition columns):

    features/group={g}/version={v}/date={YYYY-MM-DD}/part-{ns}-{seq}-{uuid}.parquet
    embeddings/name={n}/version={v}/part-{ns}-{seq}-{uuid}.parquet

A feature file holds `tenant_id, entity_type, entity_id, feature_timestamp,
generated_at` and one column per feature, typed from the definition's dtype
(`arrow_type`); `date` is the UTC day of `feature_timestamp`, so a join or a
materialization reads only the days it needs. Times are
`timestamp[us, UTC]` in the files (readable as times by every tool) and
int64 microseconds in memory, like everywhere else in vecshard.

Files are append-only with unique names, each written under a temporary
name readers skip and renamed into place once synced (`_write_file`), and
rows keep their input order; readers visit files in write order
(`file_order`). That order is what makes the one remaining tie — two rows of
an entity with identical `(feature_timestamp, generated_at)` — resolve the
same way in a join as online: the later write wins, as an equal row replaces
online. File names start with the write's time in nanoseconds and a
per-process sequence, zero-padded, so they sort in write order; files named
by earlier releases (`part-{uuid}-{i}`, whose order was a coin flip) sort
before them.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from core.domain import AttrValue, EntityKey, VersionRef
from core.durable_files import fsync_dir, save_file_atomic
from core.errors import InvalidArgument, NotFound
from core.timestamps import check_times
from registry.features import KEY_COLUMNS, TIME_COLUMNS, FeatureDType, GroupRow, GroupSchema
from registry.model import EmbeddingFamily

TIMESTAMP = pa.timestamp("us", tz="UTC")
_ARROW_TYPES = {
    FeatureDType.INT64: pa.int64(),
    FeatureDType.FLOAT64: pa.float64(),
    FeatureDType.STRING: pa.string(),
    FeatureDType.BOOL: pa.bool_(),
    FeatureDType.FLOAT_LIST: pa.list_(pa.float64()),
}
_DATE_PARTITIONING = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")


def arrow_type(dtype: FeatureDType) -> pa.DataType:
    return _ARROW_TYPES[dtype]


def feature_schema(schema: GroupSchema) -> pa.Schema:
    """The schema of the group's Parquet files (the `date` partition aside)."""
    return pa.schema(
        [pa.field(c, pa.string(), nullable=False) for c in KEY_COLUMNS]
        + [pa.field(c, TIMESTAMP, nullable=False) for c in TIME_COLUMNS]
        + [pa.field(d.name, arrow_type(d.dtype)) for d in schema.definitions]
    )


def rows_to_table(schema: GroupSchema, rows: Sequence[GroupRow]) -> pa.Table:
    """Rows checked by the same rule as an online put (`GroupSchema.check_row`)."""
    checked = [schema.check_row(r) for r in rows]
    cols: dict[str, list[Any]] = {c: [] for c in feature_schema(schema).names}
    for r in checked:
        cols["tenant_id"].append(r.entity.tenant_id)
        cols["entity_type"].append(r.entity.entity_type)
        cols["entity_id"].append(r.entity.entity_id)
        cols["feature_timestamp"].append(r.feature_timestamp)
        cols["generated_at"].append(r.generated_at)
        for name in schema.names:
            cols[name].append(r.values[name])
    target = feature_schema(schema)
    arrays = [
        pa.array(cols[f.name], type=pa.int64()).cast(TIMESTAMP)
        if f.name in TIME_COLUMNS
        else pa.array(cols[f.name], type=f.type)
        for f in target
    ]
    return pa.Table.from_arrays(arrays, schema=target)


def table_to_rows(schema: GroupSchema, table: pa.Table | pa.RecordBatch) -> list[GroupRow]:
    """Rows in table order, values canonical (float_list as tuples), so an
    online put and an offline join see identical values."""
    tenants = table.column("tenant_id").to_pylist()
    types = table.column("entity_type").to_pylist()
    ids = table.column("entity_id").to_pylist()
    ts = _micros(table.column("feature_timestamp"))
    gen = _micros(table.column("generated_at"))
    values = {}
    for d in schema.definitions:
        col = table.column(d.name).to_pylist()
        if d.dtype is FeatureDType.FLOAT_LIST:
            col = [tuple(v) if v is not None else None for v in col]
        values[d.name] = col
    names = schema.names
    return [
        GroupRow(
            EntityKey(tenants[i], types[i], ids[i]),
            ts[i],
            gen[i],
            {n: values[n][i] for n in names},
        )
        for i in range(len(ids))
    ]


def _micros(col: pa.Array | pa.ChunkedArray) -> list[int]:
    micros: list[int] = col.cast(TIMESTAMP).cast(pa.int64()).to_pylist()
    return micros


def _check_features(schema: GroupSchema, table: pa.Table) -> pa.Table:
    """The table cast to the group's file schema, or InvalidArgument naming the
    problem. Vectorized: the same rules as `check_row`, for bulk writes."""
    target = feature_schema(schema)
    where = f"feature group {schema.ref}"
    missing = [c for c in (*KEY_COLUMNS, *TIME_COLUMNS) if c not in table.column_names]
    unknown = set(table.column_names) - set(target.names)
    if missing or unknown:
        raise InvalidArgument(
            f"{where}: columns missing {missing}, unknown {sorted(unknown)}; expected {target.names}"
        )
    cols = []
    for f in target:
        if f.name not in table.column_names:
            cols.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table.column(f.name)
        if f.name in TIME_COLUMNS and pa.types.is_integer(col.type):
            col = col.cast(pa.int64()).cast(TIMESTAMP)
        try:
            cols.append(col.cast(f.type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidArgument(f"{where}: column {f.name!r} is not {f.type}: {exc}") from None
    out = pa.Table.from_arrays(cols, schema=target.with_metadata(None))
    for c in (*KEY_COLUMNS, *TIME_COLUMNS):
        if out.column(c).null_count:
            raise InvalidArgument(f"{where}: column {c!r} has nulls; expected a value in every row")
    for c in TIME_COLUMNS:
        micros = out.column(c).cast(pa.int64()).to_numpy()
        check_times(c, micros, lambda i: f"{where}, row {i}")
    if pc.any(pc.equal(out.column("entity_id"), "")).as_py():
        raise InvalidArgument(f"{where}: an entity_id is empty; expected non-empty ids")
    wrong = pc.not_equal(out.column("entity_type"), schema.group.entity_type)
    if pc.any(wrong).as_py():
        raise InvalidArgument(
            f"{where}: rows of entity type other than {schema.group.entity_type!r}"
        )
    for d in schema.definitions:
        col = out.column(d.name)
        if d.dtype is FeatureDType.FLOAT_LIST:
            flat = pc.list_flatten(col)
            if flat.null_count:
                raise InvalidArgument(f"{where}: {d.name!r} has a null inside a float_list")
            col = flat
        floats = d.dtype in (FeatureDType.FLOAT64, FeatureDType.FLOAT_LIST)
        if floats and pc.any(pc.invert(pc.is_finite(col))).as_py():
            raise InvalidArgument(
                f"{where}: {d.name!r} has a non-finite value; use null for missing"
            )
    return out


@dataclass(frozen=True)
class FeatureFile:
    """One Parquet file of a group, as the materializer enumerates them."""

    path: Path
    date: str
    num_rows: int
    size: int


@dataclass(frozen=True)
class EmbeddingRow:
    key: EntityKey
    vector: np.ndarray
    created_at: int  # µs since the epoch
    source_version: int = 0
    model_version: str = ""
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)


def embedding_schema(dimension: int) -> pa.Schema:
    """Vectors as fixed-size float32 lists (zero-copy to an (n, d) array);
    attributes as JSON text, because their types vary per index version."""
    return pa.schema(
        [pa.field(c, pa.string(), nullable=False) for c in KEY_COLUMNS]
        + [
            pa.field("vector", pa.list_(pa.float32(), dimension), nullable=False),
            pa.field("created_at", TIMESTAMP, nullable=False),
            pa.field("source_version", pa.int64(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("norm", pa.float32(), nullable=False),
            pa.field("attributes", pa.string(), nullable=False),
        ]
    )


def vectors(table: pa.Table) -> np.ndarray:
    """The `vector` column as an (n, dimension) float32 array."""
    col = table.column("vector").combine_chunks()
    dim = col.type.list_size
    flat: np.ndarray = col.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(-1, dim)


class OfflineStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    # --- features --------------------------------------------------------------

    def feature_dir(self, group: VersionRef) -> Path:
        return self.root / "features" / f"group={group.name}" / f"version={group.version}"

    def has_features(self, group: VersionRef) -> bool:
        """False when nothing was ever written for the group version: its
        values are then `not_computed`, as online."""
        return self.feature_dir(group).is_dir()

    def write_features(self, schema: GroupSchema, data: pa.Table | Sequence[GroupRow]) -> int:
        """Appends rows (a table in the group's schema, or `GroupRow`s),
        partitioned by UTC date; returns the number written."""
        table = data if isinstance(data, pa.Table) else rows_to_table(schema, data)
        table = _check_features(schema, table)
        if table.num_rows == 0:
            return 0
        dates = pc.strftime(table.column("feature_timestamp"), format="%Y-%m-%d")
        days = dates.combine_chunks().dictionary_encode()
        codes = days.indices.to_numpy()
        # Stable: row order within a file is part of the tie-break contract.
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(days.dictionary) + 1))
        base = self.feature_dir(schema.ref)
        for c, day in enumerate(days.dictionary.to_pylist()):
            rows = table.take(pa.array(order[bounds[c] : bounds[c + 1]]))
            _write_file(base / f"date={day}", rows)
        return int(table.num_rows)

    def feature_files(
        self, schema: GroupSchema, start_date: str | None = None, end_date: str | None = None
    ) -> list[FeatureFile]:
        """The group's files whose day is in [start_date, end_date], in the
        one order every reader uses (`file_order`)."""
        base = self.feature_dir(schema.ref)
        if not base.is_dir():
            raise NotFound(
                f"no offline data for feature group {schema.ref} under {base}; write it first"
            )
        dataset = ds.dataset(base, format="parquet", partitioning=_DATE_PARTITIONING)
        expr = _date_filter(start_date, end_date)
        fragments = (
            dataset.get_fragments(filter=expr) if expr is not None else dataset.get_fragments()
        )
        out = []
        for frag in fragments:
            path = Path(frag.path)
            date = ds.get_partition_keys(frag.partition_expression)["date"]
            out.append(FeatureFile(path, date, frag.metadata.num_rows, path.stat().st_size))
        return sorted(out, key=lambda f: file_order(f.path))

    def read_features(
        self,
        schema: GroupSchema,
        *,
        start_date: str | None = None,
        end_date: str | None = None,
        min_timestamp: int | None = None,
        max_timestamp: int | None = None,
        generated_cutoff: int | None = None,
    ) -> pa.Table:
        """Rows of the group in file order, filtered by day (pruned files),
        feature_timestamp range and `generated_at <= generated_cutoff`."""
        conds = []
        if min_timestamp is not None:
            conds.append(ds.field("feature_timestamp") >= _ts_scalar(min_timestamp))
        if max_timestamp is not None:
            conds.append(ds.field("feature_timestamp") <= _ts_scalar(max_timestamp))
        if generated_cutoff is not None:
            conds.append(ds.field("generated_at") <= _ts_scalar(generated_cutoff))
        expr = None
        for c in conds:
            expr = c if expr is None else expr & c
        target = feature_schema(schema)
        tables = [
            pq.read_table(f.path, schema=target, filters=expr)
            for f in self.feature_files(schema, start_date, end_date)
        ]
        if not tables:
            return target.empty_table()
        return pa.concat_tables(tables)

    def iter_batches(
        self, schema: GroupSchema, file: FeatureFile, batch_size: int
    ) -> Iterator[pa.RecordBatch]:
        """One file's rows in fixed-size batches, the same split on every call
        (a resumed materialization skips batches by their index)."""
        reader = pq.ParquetFile(file.path)
        yield from reader.iter_batches(batch_size=batch_size, columns=feature_schema(schema).names)

    # --- embeddings ------------------------------------------------------------

    def embedding_dir(self, name: str, version: str) -> Path:
        return self.root / "embeddings" / f"name={name}" / f"version={version}"

    def write_embeddings(
        self, family: EmbeddingFamily, version: str, data: pa.Table | Sequence[EmbeddingRow]
    ) -> int:
        """Appends embeddings of one family version; checks entity type,
        dimension, finiteness and `created_at` like an online upsert. `norm`
        is computed from the vector (a table's own is replaced, and may be
        left out), so it can be trusted wherever it is read."""
        target = embedding_schema(family.dimension)
        where = f"embedding {family.name}@{version}"
        table = data if isinstance(data, pa.Table) else _embeddings_table(family, data)
        if "norm" not in table.column_names:
            table = table.append_column("norm", pa.array(np.zeros(table.num_rows, np.float32)))
        try:
            table = table.select(target.names).cast(target)
        except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise InvalidArgument(f"{where}: expected columns {target.names}: {exc}") from None
        if pc.any(pc.not_equal(table.column("entity_type"), family.entity_type)).as_py():
            raise InvalidArgument(f"{where}: rows of entity type other than {family.entity_type!r}")
        if table.num_rows == 0:
            return 0
        vecs = vectors(table)
        if not np.isfinite(vecs).all():
            raise InvalidArgument(f"{where}: a vector has NaN or Inf; expected finite values")
        micros = table.column("created_at").cast(pa.int64()).to_numpy()
        check_times("created_at", micros, lambda i: f"{where}, row {i}")
        norms = pa.array(_norms(vecs).astype(np.float32))
        table = table.set_column(target.get_field_index("norm"), target.field("norm"), norms)
        _write_file(self.embedding_dir(family.name, version), table)
        return int(table.num_rows)

    def read_embeddings(
        self, family: EmbeddingFamily, version: str, filter: ds.Expression | None = None
    ) -> pa.Table:
        base = self.embedding_dir(family.name, version)
        if not base.is_dir():
            raise NotFound(f"no offline embeddings {family.name}@{version} under {base}")
        target = embedding_schema(family.dimension)
        paths = [str(p) for p in sorted(base.glob("*.parquet"), key=file_order)]
        return ds.dataset(paths, schema=target, format="parquet").to_table(filter=filter)


_ORDERED_NAME = re.compile(r"part-\d{20}-\d{12}-[0-9a-f]{32}")
_names_lock = threading.Lock()
_last_ns = 0
_sequence = itertools.count()


def _new_file_name() -> str:
    """A name after every earlier one of this process, and after other
    processes' earlier writes as far as the clock tells (the uuid only
    keeps two processes' names apart)."""
    global _last_ns
    with _names_lock:
        # Never backwards within a process, even if the wall clock is.
        _last_ns = max(_last_ns, time.time_ns())
        ns, seq = _last_ns, next(_sequence)
    return f"part-{ns:020d}-{seq:012d}-{uuid.uuid4().hex}.parquet"


def file_order(path: Path) -> tuple[str, bool, str]:
    """The order readers visit a directory's files in: write order. Names
    are fixed-width up to the first dot, so a file the erasure rewrote
    (`offline.erasure`: the same name with a suffix) keeps its place."""
    return str(path.parent), bool(_ORDERED_NAME.match(path.name)), path.name


def _write_file(directory: Path, table: pa.Table) -> Path:
    """One new file of `table`, in order, under a fresh name. Written under a
    temporary name readers skip and renamed into place once synced: a write
    that dies midway (a full disk, a kill) leaves no torn `*.parquet`, which
    would fail every later read of the group or version."""
    _make_dirs(directory)
    path = directory / _new_file_name()
    save_file_atomic(path, lambda tmp: pq.write_table(table, tmp))
    return path


def _make_dirs(directory: Path) -> None:
    """`directory` and its missing parents, each made durable in its parent
    (a file's rename is durable only once the directories above it are)."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        fsync_dir(d.parent)


def _embeddings_table(family: EmbeddingFamily, rows: Sequence[EmbeddingRow]) -> pa.Table:
    dim = family.dimension
    vecs = np.zeros((len(rows), dim), dtype=np.float32)
    for i, r in enumerate(rows):
        v = np.asarray(r.vector, dtype=np.float32)
        if v.shape != (dim,):
            raise InvalidArgument(
                f"embedding {family.name}, entity {tuple(r.key)}: vector of shape {v.shape}; "
                f"expected ({dim},)"
            )
        vecs[i] = v
    attrs = [
        json.dumps(
            {k: list(v) if isinstance(v, tuple) else v for k, v in r.attributes.items()},
            sort_keys=True,
        )
        for r in rows
    ]
    target = embedding_schema(dim)
    target = target.remove(target.get_field_index("norm"))  # write_embeddings computes it
    return pa.Table.from_arrays(
        [
            pa.array([r.key.tenant_id for r in rows], pa.string()),
            pa.array([r.key.entity_type for r in rows], pa.string()),
            pa.array([r.key.entity_id for r in rows], pa.string()),
            pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), dim),
            pa.array([r.created_at for r in rows], pa.int64()).cast(TIMESTAMP),
            pa.array([r.source_version for r in rows], pa.int64()),
            pa.array([r.model_version for r in rows], pa.string()),
            pa.array(attrs, pa.string()),
        ],
        schema=target,
    )


def _norms(vecs: np.ndarray) -> np.ndarray:
    """Row norms, summed in float64 (float32 loses digits over long vectors)."""
    wide = vecs.astype(np.float64)
    norms: np.ndarray = np.sqrt(np.einsum("ij,ij->i", wide, wide))
    return norms


def _ts_scalar(micros: int) -> pa.Scalar:
    return pa.scalar(micros, pa.int64()).cast(TIMESTAMP)


def check_day(what: str, day: str) -> str:
    """`day` if it is a date as YYYY-MM-DD, else InvalidArgument naming it.
    Day partitions are compared as text, so `2023-11-5` would select
    2023-11-14 and every later day up to 2023-11-49."""
    try:
        ok = datetime.date.fromisoformat(day).isoformat() == day
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidArgument(f"{what} {day!r}; expected a UTC day as YYYY-MM-DD")
    return day


def check_day_range(start: str | None, end: str | None) -> None:
    """Both days (either may be None: unbounded) valid, and in order: for a
    range a person gave, where start after end is a mistake."""
    if start is not None:
        check_day("start_date", start)
    if end is not None:
        check_day("end_date", end)
    if start is not None and end is not None and start > end:
        raise InvalidArgument(f"start_date {start} is after end_date {end}; expected start <= end")


def _date_filter(start: str | None, end: str | None) -> ds.Expression | None:
    """Days [start, end] (an empty range when start is after end: a join
    whose events are older than its end_date's TTL window reads nothing)."""
    expr = None
    if start is not None:
        expr = ds.field("date") >= check_day("start_date", start)
    if end is not None:
        cond = ds.field("date") <= check_day("end_date", end)
        expr = cond if expr is None else expr & cond
    return expr
