"""Materialization: a feature group's offline rows pushed to the online store,
as a resumable, idempotent batch job.

The job reads the group's Parquet files for a day range in one fixed order
(by path) and fixed-size batches, and writes each batch through a
`FeatureSink` (in process: a shard's `FeatureStore`; in a cluster: the
coordinator's PutFeatures). After a batch is acknowledged, a checkpoint file
records it (written to a temporary file, synced, then renamed, so a crash
leaves the old or the new checkpoint, never half of one). A restart skips
what the checkpoint says is done.

Why replays are harmless: a crash between an acknowledged put and its
checkpoint replays that one batch, and online writes are idempotent — a row
older than the stored one is ignored, an equal one replaces it with the same
bytes. Files that appear after a run (a late day) are picked up by the next
run with the same checkpoint; a file that changed size since the checkpoint
is refused rather than half-skipped (an erasure writes a new file instead,
see `Checkpoint.entry`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np

from core.errors import FailedPrecondition, InvalidArgument
from offline.arrow_columns import table_to_batch
from offline.erasure import original_name
from offline.parquet_store import OfflineStore, check_day_range
from offline.tenant_clients import TenantClients
from registry.feature_batches import RowBatch
from registry.features import GroupSchema, PutAck

CHECKPOINT_FORMAT = 1


class FeatureSink(Protocol):
    """Where materialized rows go, a batch of columns at a time (in process:
    a shard's `FeatureStore`; in a cluster: `GrpcFeatureSink`). `put_batch`
    returns only once the rows are durable (acknowledged), and must be
    idempotent for a replayed batch."""

    def put_batch(self, group: GroupSchema, batch: RowBatch) -> PutAck: ...


@dataclass(frozen=True)
class MaterializeJob:
    group: GroupSchema
    # Inclusive UTC days (YYYY-MM-DD); None: unbounded.
    start_date: str | None = None
    end_date: str | None = None
    batch_size: int = 10_000
    # Where the rows go (the CLI: the coordinator's address): a checkpoint of
    # a job into one cluster must not mark the same job into another done.
    destination: str = ""

    def __post_init__(self) -> None:
        check_day_range(self.start_date, self.end_date)
        if self.batch_size <= 0:
            raise InvalidArgument(f"batch_size {self.batch_size}; expected a positive number")

    def spec(self) -> dict[str, Any]:
        """What identifies the job in its checkpoint."""
        return {
            "group": self.group.ref.name,
            "version": self.group.ref.version,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "batch_size": self.batch_size,
            "destination": self.destination,
        }


@dataclass(frozen=True)
class MaterializeReport:
    files: int
    batches: int  # written by this run
    skipped_batches: int  # done by an earlier run, per the checkpoint
    rows: int  # sent by this run
    written: int
    ignored_older: int
    # Newest feature_timestamp sent by this run: feeds the materialization-lag gauge.
    max_feature_timestamp: int | None


class Progress:
    """One stderr line with rows done, rate and ETA; redrawn in place on a
    terminal, one line per update otherwise (logs). No dependency."""

    def __init__(
        self,
        label: str,
        total: int,
        stream: TextIO | None,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = 0.5,
    ) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.clock, self.min_interval = clock, min_interval
        self.done = 0
        self._start = clock()
        self._fresh = 0  # rows done by this run; the rate ignores resumed ones
        self._last_draw: float | None = None
        self._tty = bool(stream is not None and stream.isatty())

    def advance(self, rows: int, fresh: bool = True) -> None:
        self.done += rows
        if fresh:
            self._fresh += rows
        now = self.clock()
        if self._last_draw is None or now - self._last_draw >= self.min_interval:
            self._draw(now)

    def line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self._fresh / elapsed
        pct = 100.0 * self.done / self.total if self.total else 100.0
        left = self.total - self.done
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        return (
            f"materialize {self.label}: {self.done:,}/{self.total:,} rows ({pct:.1f}%) "
            f"{rate:,.0f} rows/s ETA {eta}"
        )

    def _draw(self, now: float) -> None:
        self._last_draw = now
        if self.stream is None:
            return
        if self._tty:
            self.stream.write("\r" + self.line(now))
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def finish(self) -> None:
        self._draw(self.clock())
        if self.stream is not None and self._tty:
            self.stream.write("\n")
            self.stream.flush()


class Checkpoint:
    """Per file: its size when first seen, batches done, and whether done."""

    def __init__(self, path: Path, spec: dict[str, Any]) -> None:
        self.path = path
        self.spec = spec
        self.files: dict[str, dict[str, Any]] = {}
        if path.exists():
            doc = json.loads(path.read_text())
            if doc.get("format") != CHECKPOINT_FORMAT or doc.get("job") != spec:
                raise FailedPrecondition(
                    f"checkpoint {path} belongs to job {doc.get('job')}; expected {spec}. "
                    "Use another checkpoint path, or delete it to start over"
                )
            self.files = doc["files"]

    def entry(self, rel: str, size: int, path: Path, changed: str) -> dict[str, Any]:
        """The state of file `rel` (relative to the job's base), added when
        new; FailedPrecondition (`changed` says why) when its size changed
        since. A file the offline erasure rewrote under a new name
        (`offline.erasure.original_name`) starts complete when a file it
        replaces was: its rows are a subset of rows already sent, and sending
        them again after later files would hand a tie of equal rows back to
        the older one online."""
        state = self.files.get(rel)
        if state is None:
            origin = original_name(rel)
            done = origin != rel and any(
                st["complete"] for name, st in self.files.items() if original_name(name) == origin
            )
            state = self.files[rel] = {"size": size, "batches": 0, "complete": done}
        if state["size"] != size:
            raise FailedPrecondition(
                f"{path} is {size} bytes but was {state['size']} when checkpointed; {changed}"
            )
        return state

    def save(self) -> None:
        doc = {"format": CHECKPOINT_FORMAT, "job": self.spec, "files": self.files}
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as fh:
            json.dump(doc, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def materialize(
    job: MaterializeJob,
    store: OfflineStore,
    sink: FeatureSink,
    checkpoint: Path,
    *,
    progress: TextIO | None = sys.stderr,
    clock: Callable[[], float] = time.monotonic,
    min_interval: float = 0.5,
) -> MaterializeReport:
    """Runs (or resumes) `job`; returns what this run did."""
    # The source too: file names are relative to the store's root.
    ckpt = Checkpoint(checkpoint, {**job.spec(), "offline": str(store.root.resolve())})
    base = store.feature_dir(job.group.ref)
    files = store.feature_files(job.group, job.start_date, job.end_date)
    bar = Progress(
        str(job.group.ref), sum(f.num_rows for f in files), progress, clock, min_interval
    )
    batches = skipped = rows_sent = written = ignored = 0
    max_ts: int | None = None
    for f in files:
        rel = f.path.relative_to(base).as_posix()
        state = ckpt.entry(
            rel,
            f.size,
            f.path,
            "offline files are append-only, so refusing to guess what was already materialized",
        )
        if state["complete"]:
            skipped += state["batches"]
            bar.advance(f.num_rows, fresh=False)
            continue
        for i, batch in enumerate(store.iter_batches(job.group, f, job.batch_size)):
            if i < state["batches"]:
                skipped += 1
                bar.advance(batch.num_rows, fresh=False)
                continue
            rows = table_to_batch(job.group, batch)
            ack = sink.put_batch(job.group, rows)
            # Only after the ack: a crash before this line replays the batch.
            state["batches"] = i + 1
            ckpt.save()
            batches += 1
            rows_sent += len(rows)
            written += ack.written
            ignored += ack.ignored_older
            if len(rows):
                newest = int(rows.feature_timestamp.max())
                max_ts = newest if max_ts is None else max(max_ts, newest)
            bar.advance(len(rows))
        state["complete"] = True
        ckpt.save()
    bar.finish()
    return MaterializeReport(len(files), batches, skipped, rows_sent, written, ignored, max_ts)


class GrpcFeatureSink:
    """Materializes into a running cluster through the coordinator's
    PutFeatures — columns, not a message per value — with one
    tenant-scoped client per tenant in the data."""

    def __init__(
        self,
        coordinator: str,
        purpose: str = "materialization",
        timeout: float = 60.0,
        credentials: Any = None,
    ) -> None:
        self._client = TenantClients(coordinator, purpose, timeout, credentials)

    def put_batch(self, group: GroupSchema, batch: RowBatch) -> PutAck:
        """The batch as columns, one PutFeatures stream per tenant in it."""
        by_tenant: dict[str, list[int]] = {}
        for i, key in enumerate(batch.entities):
            by_tenant.setdefault(key.tenant_id, []).append(i)
        written = ignored = 0
        for tenant, rows in by_tenant.items():
            part = batch.take(np.array(rows, dtype=np.int64)) if len(by_tenant) > 1 else batch
            w, i = self._client(tenant).put_feature_columns(
                group.ref.name,
                group.ref.version,
                [k.entity_id for k in part.entities],
                part.feature_timestamp,
                dict(part.columns),
                generated_at_us=part.generated_at,
                batch_size=max(1, len(part)),
            )
            written, ignored = written + w, ignored + i
        return PutAck(written, ignored)

    def close(self) -> None:
        self._client.close()
