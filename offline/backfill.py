"""`vecshard embeddings backfill`: every vector of a Parquet dataset written
into a new embedding version, as a resumable, idempotent, rate-limited job
(DESIGN §11), on the shape of `offline.materialize`.

Each file is read, validated as a whole (`offline.vector_checks`: reasons
per row, duplicates by key within the file), its rejected rows written to a
dead-letter Parquet file (one per source file, at its path below the
source mirrored under the dead-letter directory, so a replay rewrites the
same file), and its accepted rows written in fixed-size batches
through a `VectorSink`; the checkpoint records each batch after it was
acknowledged. A resumed job skips what the checkpoint says is done.

Why replays are harmless: every row carries its own `source_version` (from
the dataset, or its `created_at` when it has none), never the writer's clock,
so a replayed batch writes the same versions again and the shards' version
rule makes it a no-op; a live write that dual-write copied into the new
version meanwhile is newer and is kept.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.domain import AttrValue, EntityKey, VersionRef
from core.errors import FailedPrecondition, InvalidArgument, NotFound
from core.timestamps import check_times
from offline.materialize import Checkpoint, Progress
from offline.rate_limit import RowRateLimiter
from offline.tenant_clients import TenantClients
from offline.vector_checks import (
    CheckSettings,
    NormReference,
    check_rows,
    duplicate_reasons,
    norm_reference,
    row_norms,
)

REQUIRED = ("tenant_id", "entity_type", "entity_id", "vector")
# A file whose rows are rejected beyond this share stops the job: the data
# (or the reference) is wrong, and dead-lettering it all would hide that.
DEFAULT_MAX_REJECT_SHARE = 0.5


@dataclass(frozen=True)
class VectorRow:
    key: EntityKey
    vector: np.ndarray
    source_version: int
    model_version: str = ""
    attributes: dict[str, AttrValue] | None = None


class VectorSink(Protocol):
    """Where backfilled rows go. `write` returns only once the rows are
    acknowledged (durable), and must be idempotent for a replayed batch.
    `ClientVectorSink` writes through the packed bulk path; tests give it an
    in-memory sink."""

    def write(self, embedding: VersionRef, rows: Sequence[VectorRow]) -> tuple[int, int]: ...


def check_limits(batch_size: int, max_rows_per_s: float, max_reject_share: float) -> None:
    """A job's limits, refused at once rather than by what they do: a
    negative batch size read no row (an empty range) and marked every file
    done, exit 0; 0 crashed with a bare ValueError."""
    if batch_size < 1:
        raise InvalidArgument(f"backfill: batch size {batch_size}; expected at least 1")
    if not 0 <= max_rows_per_s < math.inf:
        raise InvalidArgument(
            f"backfill: max rows per second {max_rows_per_s}; expected a finite number >= 0 "
            "(0: no limit)"
        )
    if not 0 <= max_reject_share <= 1:
        raise InvalidArgument(
            f"backfill: max reject share {max_reject_share}; expected a share in [0, 1]"
        )


@dataclass(frozen=True)
class BackfillJob:
    source: Path
    target: VersionRef
    dimension: int
    entity_type: str
    batch_size: int = 1000
    max_rows_per_s: float = 0.0  # 0: unlimited
    reference: NormReference | None = None
    max_reject_share: float = DEFAULT_MAX_REJECT_SHARE
    # Where the rows go (the CLI: the coordinator's address): a checkpoint of
    # a job into one cluster must not mark the same job into another done.
    destination: str = ""

    def __post_init__(self) -> None:
        check_limits(self.batch_size, self.max_rows_per_s, self.max_reject_share)

    def spec(self) -> dict[str, Any]:
        ref = self.reference
        return {
            "source": str(self.source.resolve()),
            "target": str(self.target),
            "destination": self.destination,
            "batch_size": self.batch_size,
            "reference": None if ref is None else [ref.median_log, ref.sigma_log, ref.source],
        }


@dataclass(frozen=True)
class BackfillReport:
    files: int
    rows: int  # read by this run
    written: int
    ignored_stale: int
    rejected: dict[str, int]  # over the whole job (checkpoint)
    batches: int
    skipped_batches: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


class BackfillProgress(Progress):
    """Rows, rate, ETA and rejected rows by reason, on one line."""

    def __init__(self, label: str, total: int, stream: TextIO | None, **kw: Any) -> None:
        super().__init__(label, total, stream, **kw)
        self.rejected: Counter[str] = Counter()

    def line(self, now: float) -> str:
        text = super().line(now).replace("materialize", "backfill", 1)
        if self.rejected:
            text += " rejected " + ", ".join(f"{r}={n:,}" for r, n in sorted(self.rejected.items()))
        return text


def source_files(source: Path) -> list[Path]:
    files = sorted(source.rglob("*.parquet")) if source.is_dir() else [source]
    if not files or not all(f.is_file() for f in files):
        raise NotFound(f"no Parquet files under {source}")
    return files


def _vectors(col: pa.ChunkedArray, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, dimension) float32, rows of another length (or null) zero-filled,
    and lengths (0 for a null)."""
    arr = col.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type) and arr.type.list_size == dimension:
        # flatten() skips null slots, so the valid rows are placed by index.
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        flat = arr.filter(valid).flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        out = np.zeros((len(arr), dimension), dtype=np.float32)
        out[valid] = flat.reshape(-1, dimension)
        return out, np.where(valid, dimension, 0)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    out = np.zeros((len(arr), dimension), dtype=np.float32)
    values = arr.to_pylist()
    for i, v in enumerate(values):
        if v is not None and len(v) == dimension:
            out[i] = v
    return out, np.nan_to_num(lengths.astype(np.float64), nan=0).astype(np.int64)


def _column(table: pa.Table, name: str, default: Any) -> list[Any]:
    if name in table.column_names:
        return [default if v is None else v for v in table.column(name).to_pylist()]
    return [default] * table.num_rows


def _source_versions(table: pa.Table) -> np.ndarray:
    """The row's source_version, or its created_at in µs when it has none:
    never the writer's clock, so replays repeat the same version. A
    timestamp in another unit is converted (digits below a µs dropped); an
    integer is taken as µs and range-checked: created_at in nanoseconds would
    win over every later live write of the entity (stamped in µs) for good,
    in milliseconds lose to every one."""
    versions = np.array(_column(table, "source_version", 0), dtype=np.int64)
    if "created_at" in table.column_names:
        col = table.column("created_at")
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us", tz=col.type.tz), safe=False)
        try:
            micros = col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidArgument(
                f"backfill source column 'created_at' is {col.type}: {exc}; expected a "
                "timestamp or int64 microseconds"
            ) from None
        used = (versions <= 0) & (micros != 0)
        check_times("created_at", micros[used], lambda i: f"row {np.flatnonzero(used)[i]}")
        versions = np.where(versions > 0, versions, micros)
    return versions


def _missing_keys(table: pa.Table) -> np.ndarray:
    """True for rows with a null or empty key part: no subject to write."""
    missing = np.zeros(table.num_rows, dtype=bool)
    for name in ("tenant_id", "entity_type", "entity_id"):
        col = table.column(name)
        empty = pc.fill_null(pc.equal(pc.cast(col, pa.string()), ""), True)
        missing |= empty.to_numpy(zero_copy_only=False)
    return missing


def judge_file(job: BackfillJob, table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reasons per row, vectors, source versions) for one whole file."""
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise InvalidArgument(f"backfill source lacks column(s) {missing}; expected {REQUIRED}")
    vectors, lengths = _vectors(table.column("vector"), job.dimension)
    settings = CheckSettings(job.dimension, job.entity_type)
    reasons = check_rows(
        settings, _column(table, "entity_type", ""), lengths, vectors, job.reference
    )
    reasons[~table.column("vector").is_valid().to_numpy(zero_copy_only=False)] = "missing_vector"
    reasons[_missing_keys(table)] = "missing_key"
    versions = _source_versions(table)
    reasons[(reasons == "") & (versions <= 0)] = "no_source_version"
    keys = list(
        zip(
            _column(table, "tenant_id", ""),
            _column(table, "entity_type", ""),
            _column(table, "entity_id", ""),
            strict=True,
        )
    )
    ok = np.flatnonzero(reasons == "")
    dup = duplicate_reasons([keys[i] for i in ok], versions[ok])
    reasons[ok[dup]] = "duplicate_key"
    return reasons, vectors, versions


def reference_from_file(path: Path, dimension: int, rows: int = 10_000) -> NormReference:
    """The dataset's own first rows, when the family has no history."""
    head = next(pq.ParquetFile(path).iter_batches(batch_size=rows, columns=["vector"]))
    vectors, lengths = _vectors(pa.chunked_array([head.column(0)]), dimension)
    return norm_reference(row_norms(vectors[lengths == dimension]), f"first rows of {path.name}")


_ROW_COLUMNS = ("tenant_id", "entity_type", "entity_id", "model_version", "attributes")


def _rows(
    table: pa.Table, idx: np.ndarray, vectors: np.ndarray, versions: np.ndarray
) -> list[VectorRow]:
    """The batch `idx` of the file as rows. Only the batch's rows become
    Python objects: converting the whole file's columns for every batch made
    a file cost O(rows² / batch_size)."""
    part = table.select([c for c in _ROW_COLUMNS if c in table.column_names]).take(pa.array(idx))
    tenants = part.column("tenant_id").to_pylist()
    types = part.column("entity_type").to_pylist()
    ids = part.column("entity_id").to_pylist()
    models = _column(part, "model_version", "")
    attrs = _column(part, "attributes", "{}")
    out = []
    for j, i in enumerate(idx.tolist()):
        raw = attrs[j]
        parsed = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
        out.append(
            VectorRow(
                EntityKey(tenants[j], types[j], ids[j]),
                vectors[i],
                int(versions[i]),
                models[j],
                {k: tuple(v) if isinstance(v, list) else v for k, v in parsed.items()},
            )
        )
    return out


def dead_letter_path(dead_letters: Path, source: Path, file: Path) -> Path:
    """The source file's path below `source`, mirrored under `dead_letters`
    (flattened names collided: `a/b.parquet` and `a__b.parquet` overwrote
    each other's rejected rows)."""
    rel = file.relative_to(source) if source.is_dir() else Path(file.name)
    return dead_letters / rel.parent / (rel.name.removesuffix(".parquet") + ".rejected.parquet")


def backfill(
    job: BackfillJob,
    sink: VectorSink,
    checkpoint: Path,
    dead_letters: Path,
    *,
    progress: TextIO | None = sys.stderr,
    clock: Callable[[], float] = time.monotonic,
    limiter: RowRateLimiter | None = None,
    min_interval: float = 0.5,
) -> BackfillReport:
    """Runs (or resumes) `job`; returns what this run did."""
    if job.source.is_dir() and dead_letters.resolve().is_relative_to(job.source.resolve()):
        # Its files would be read back as source on the next run (and as a
        # source file that appeared mid-job by the checkpoint).
        raise InvalidArgument(
            f"dead-letter directory {dead_letters} is inside the source {job.source}; "
            "put it elsewhere (the default is beside the checkpoint)"
        )
    ckpt = Checkpoint(checkpoint, job.spec())
    files = source_files(job.source)
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    bar = BackfillProgress(str(job.target), total, progress, clock=clock, min_interval=min_interval)
    if limiter is None and job.max_rows_per_s > 0:
        limiter = RowRateLimiter(job.max_rows_per_s)
    start = clock()
    rows_read = written = ignored = batches = skipped = 0
    for f in files:
        rel = f.relative_to(job.source).as_posix() if job.source.is_dir() else f.name
        size = f.stat().st_size
        state = ckpt.entry(
            rel,
            size,
            f,
            "a source file must not change during a backfill (write new files instead)",
        )
        if state["complete"]:
            bar.rejected.update(state.get("rejected", {}))
            bar.advance(pq.ParquetFile(f).metadata.num_rows, fresh=False)
            skipped += state["batches"]
            continue
        table = pq.read_table(f)
        try:
            reasons, vectors, versions = judge_file(job, table)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{f}: {exc.message}") from None
        rejected = np.flatnonzero(reasons != "")
        counts = Counter(reasons[rejected].tolist())
        if len(table) and len(rejected) / len(table) > job.max_reject_share:
            top = ", ".join(f"{r}={n}" for r, n in counts.most_common(3))
            raise FailedPrecondition(
                f"{f}: {len(rejected)} of {len(table)} rows rejected ({top}), more than "
                f"{job.max_reject_share:.0%}; the data or the norm reference "
                f"({job.reference.source if job.reference else 'none'}) is wrong — nothing of "
                "this file was written"
            )
        if len(rejected):
            dead = table.take(pa.array(rejected)).append_column(
                "reason", pa.array(reasons[rejected].tolist(), pa.string())
            )
            path = dead_letter_path(dead_letters, job.source, f)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(dead, path)
        state["rejected"] = dict(counts)
        bar.rejected.update(counts)
        accepted = np.flatnonzero(reasons == "")
        bar.advance(len(rejected), fresh=False)
        for i, lo in enumerate(range(0, len(accepted), job.batch_size)):
            idx = accepted[lo : lo + job.batch_size]
            if i < state["batches"]:
                skipped += 1
                bar.advance(len(idx), fresh=False)
                continue
            if limiter is not None:
                limiter.acquire(len(idx))
            w, ign = sink.write(job.target, _rows(table, idx, vectors, versions))
            # Only after the acknowledgement: a kill before this line replays the batch.
            state["batches"] = i + 1
            ckpt.save()
            batches += 1
            written += w
            ignored += ign
            rows_read += len(idx)
            bar.advance(len(idx))
        state["complete"] = True
        ckpt.save()
    bar.finish()
    rejected_total: Counter[str] = Counter()
    for st in ckpt.files.values():
        rejected_total.update(st.get("rejected", {}))
    return BackfillReport(
        len(files),
        rows_read,
        written,
        ignored,
        dict(rejected_total),
        batches,
        skipped,
        clock() - start,
    )


class ClientVectorSink:
    """Writes through the coordinators' packed bulk path
    (`RetrievalClient.upsert_matrix`: ids, one float32 matrix and attribute
    columns per request), one tenant-scoped client per tenant, in the job's
    batches."""

    def __init__(
        self,
        coordinator: str,
        purpose: str = "backfill",
        timeout: float = 60.0,
        credentials: Any = None,
    ) -> None:
        self._client = TenantClients(coordinator, purpose, timeout, credentials)

    def write(self, embedding: VersionRef, rows: Sequence[VectorRow]) -> tuple[int, int]:
        # One request names one tenant, entity type and model version.
        groups: dict[tuple[str, str, str], list[VectorRow]] = {}
        for r in rows:
            groups.setdefault((r.key.tenant_id, r.key.entity_type, r.model_version), []).append(r)
        written = ignored = 0
        for (tenant, entity_type, model_version), part in groups.items():
            names = sorted({n for r in part for n in (r.attributes or {})})
            attributes = {n: [(r.attributes or {}).get(n) for r in part] for n in names}
            w, i = self._client(tenant).upsert_matrix(
                embedding.name,
                embedding.version,
                [r.key.entity_id for r in part],
                np.stack([np.asarray(r.vector, dtype=np.float32) for r in part]),
                attributes=attributes or None,
                source_versions=np.array([r.source_version for r in part], dtype=np.int64),
                model_version=model_version,
                entity_type=entity_type,
            )
            written, ignored = written + w, ignored + i
        return written, ignored

    def close(self) -> None:
        self._client.close()
