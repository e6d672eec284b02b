"""Materialization offline → online into a real RocksDB feature store:
a full run, a killed run resumed from its checkpoint, a replayed batch whose
ack was lost, late files, refused checkpoints, and the progress line."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.errors import FailedPrecondition, InvalidArgument
from offline.erasure import erase_offline
from offline.materialize import MaterializeJob, Progress, materialize
from offline.parquet_store import FeatureFile, OfflineStore, table_to_rows
from registry.feature_batches import RowBatch
from registry.features import GroupRow, GroupSchema, PutAck
from shard_server.feature_store import FeatureShardStore, FeatureStore, entity_key
from tests.feature_catalog import CATALOG, DAY, MINUTE, PROFILE, T0, row, user

SCHEMA = CATALOG.schema(PROFILE)
MIDNIGHT = (T0 // DAY + 1) * DAY  # 2023-11-15T00:00Z: one file per day below


class Crash(Exception):
    """Stands in for the job's process dying."""


class CrashingSink:
    """A real feature store that dies on its `fail_on`-th put, either before
    the write or after it (the ack lost on the way back)."""

    def __init__(self, inner: FeatureStore, fail_on: int, after_write: bool = False) -> None:
        self.inner, self.fail_on, self.after_write = inner, fail_on, after_write
        self.puts = 0

    def put_batch(self, group: GroupSchema, rows: RowBatch) -> PutAck:
        self.puts += 1
        if self.puts == self.fail_on and not self.after_write:
            raise Crash
        ack = self.inner.put_batch(group, rows)
        if self.puts == self.fail_on:
            raise Crash
        return ack


class CountingSink:
    def __init__(self, inner: FeatureStore) -> None:
        self.inner = inner
        self.batches: list[int] = []

    def put_batch(self, group: GroupSchema, rows: RowBatch) -> PutAck:
        self.batches.append(len(rows))
        return self.inner.put_batch(group, rows)


@pytest.fixture
def offline(tmp_path: Path) -> OfflineStore:
    """Three days of rows, out of order, with re-computations and repeats."""
    rng = random.Random(3)
    store = OfflineStore(tmp_path / "offline")
    for day in range(3):
        rows = []
        for i in range(120):
            ts = MIDNIGHT + day * DAY + rng.randrange(24 * 60) * MINUTE
            rows.append(
                row(user(f"u{rng.randrange(40)}"), ts, gen=ts + rng.randrange(3), account_days=i)
            )
        store.write_features(SCHEMA, rows)
    return store


@pytest.fixture
def online(tmp_path: Path) -> Iterator:
    opened: list[FeatureShardStore] = []

    def open_store(name: str) -> FeatureStore:
        storage = FeatureShardStore(tmp_path / name)
        opened.append(storage)
        return FeatureStore(storage)

    yield open_store
    for s in opened:
        s.close()


def state(fs: FeatureStore) -> list[GroupRow]:
    return list(fs.scan(SCHEMA))


def test_full_run_leaves_the_newest_row_per_entity(
    offline: OfflineStore, online, tmp_path: Path
) -> None:
    fs = online("full")
    out = io.StringIO()
    report = materialize(
        MaterializeJob(SCHEMA, batch_size=50), offline, fs, tmp_path / "ck.json", progress=out
    )
    assert (report.files, report.batches, report.rows, report.skipped_batches) == (3, 9, 360, 0)
    assert report.written + report.ignored_older == 360
    newest: dict = {}
    for r in (r for f in offline.feature_files(SCHEMA) for r in _rows(offline, f)):
        if r.entity not in newest or r.supersedes(
            newest[r.entity].feature_timestamp, newest[r.entity].generated_at
        ):
            newest[r.entity] = r
    assert state(fs) == sorted(newest.values(), key=lambda r: entity_key(r.entity))
    assert report.max_feature_timestamp == max(r.feature_timestamp for r in newest.values())
    assert "360/360 rows (100.0%)" in out.getvalue().splitlines()[-1]
    # A second run with the same checkpoint has nothing to do.
    again = materialize(
        MaterializeJob(SCHEMA, batch_size=50), offline, fs, tmp_path / "ck.json", progress=None
    )
    assert (again.batches, again.rows) == (0, 0)


def _rows(store: OfflineStore, f: FeatureFile) -> list[GroupRow]:
    return [r for b in store.iter_batches(SCHEMA, f, 1000) for r in table_to_rows(SCHEMA, b)]


@pytest.mark.parametrize("after_write", [False, True], ids=["dies-before-write", "ack-lost"])
def test_killed_job_resumes_to_the_same_state_as_a_full_run(
    offline: OfflineStore, online, tmp_path: Path, after_write: bool
) -> None:
    job = MaterializeJob(SCHEMA, batch_size=40)
    full = online("full")
    materialize(job, offline, full, tmp_path / "full.json", progress=None)

    fs = online("resumed")
    ck = tmp_path / "resumed.json"
    with pytest.raises(Crash):
        materialize(
            job, offline, CrashingSink(fs, fail_on=5, after_write=after_write), ck, progress=None
        )
    done = json.loads(ck.read_text())["files"]
    assert sum(f["batches"] for f in done.values()) == 4  # only acknowledged batches
    counting = CountingSink(fs)
    report = materialize(job, offline, counting, ck, progress=None)
    assert report.skipped_batches == 4
    assert len(counting.batches) == report.batches == 9 - 4  # 3 files x 3 batches, less the 4 done
    assert state(fs) == state(full)


def test_late_files_are_picked_up_and_changed_files_refused(
    offline: OfflineStore, online, tmp_path: Path
) -> None:
    fs = online("s")
    ck = tmp_path / "ck.json"
    job = MaterializeJob(SCHEMA, start_date="2023-11-16", batch_size=1000)
    first = materialize(job, offline, fs, ck, progress=None)
    assert (first.files, first.rows) == (2, 240)
    offline.write_features(SCHEMA, [row(user("late"), MIDNIGHT + 2 * DAY, account_days=1)])
    second = materialize(job, offline, fs, ck, progress=None)
    assert (second.files, second.rows) == (3, 1)
    assert fs.multi_get(SCHEMA, [user("late")])[0] is not None
    victim = offline.feature_files(SCHEMA, start_date="2023-11-16")[0].path
    # Rewritten in place (valid Parquet, other content): not what the checkpoint saw.
    pq.write_table(pq.read_table(victim).slice(0, 10), victim)
    with pytest.raises(FailedPrecondition, match="append-only"):
        materialize(job, offline, fs, ck, progress=None)


def test_an_offline_erasure_neither_stops_nor_repeats_materialization(
    online, tmp_path: Path
) -> None:
    """Found in review: the erasure rewrote files in place, and the
    checkpoint refused the changed file on every later run."""
    store = OfflineStore(tmp_path / "offline")
    store.write_features(SCHEMA, [row(user("u"), T0, account_days=1), row(user("x"), T0)])
    store.write_features(SCHEMA, [row(user("u"), T0, account_days=2)])  # a tie: the later wins
    fs, ck, job = online("s"), tmp_path / "ck.json", MaterializeJob(SCHEMA)
    materialize(job, store, fs, ck, progress=None)

    assert erase_offline(store.root, user("x")).rows_removed == 1
    store.write_features(SCHEMA, [row(user("new"), T0 + DAY, account_days=3)])
    counting = CountingSink(fs)
    report = materialize(job, store, counting, ck, progress=None)

    # The rewritten first file was sent whole before: not again (it would
    # hand u's tie back to the older row); only the new day's row is sent.
    assert (report.rows, counting.batches) == (1, [1])
    (u,) = fs.multi_get(SCHEMA, [user("u")])
    assert u is not None and u.values["account_days"] == 2
    # Read order (a join's tie-break) keeps the rewritten file first.
    assert store.read_features(SCHEMA).column("account_days").to_pylist() == [1, 2, 3]
    assert materialize(job, store, counting, ck, progress=None).rows == 0


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (None, "2023-11-5", "end_date '2023-11-5'; expected a UTC day as YYYY-MM-DD"),
        ("20231114", None, "start_date '20231114'"),
        ("2023-11-31", None, "start_date '2023-11-31'"),
        ("2023-11-17", "2023-11-16", "after end_date"),
    ],
)
def test_day_ranges_are_days(
    offline: OfflineStore, start: str | None, end: str | None, message: str
) -> None:
    """Found in review: days were compared as text unchecked, so an end of
    2023-11-5 selected 2023-11-14 and every later day."""
    with pytest.raises(InvalidArgument, match=message):
        MaterializeJob(SCHEMA, start_date=start, end_date=end)
    if "after" in message:  # an empty range to the store (a join's TTL window may be one)
        assert offline.feature_files(SCHEMA, start, end) == []
    else:
        with pytest.raises(InvalidArgument, match=message):
            offline.feature_files(SCHEMA, start, end)
    days = [f.date for f in offline.feature_files(SCHEMA, "2023-11-16", "2023-11-16")]
    assert days == ["2023-11-16"]


def test_a_checkpoint_of_another_job_is_refused(
    offline: OfflineStore, online, tmp_path: Path
) -> None:
    ck = tmp_path / "ck.json"
    materialize(MaterializeJob(SCHEMA, batch_size=100), offline, online("a"), ck, progress=None)
    with pytest.raises(FailedPrecondition, match="belongs to job"):
        materialize(MaterializeJob(SCHEMA, batch_size=99), offline, online("b"), ck, progress=None)


def test_a_checkpoint_is_bound_to_its_destination_and_its_source(
    offline: OfflineStore, online, tmp_path: Path
) -> None:
    """The same group into another cluster (or from another offline store)
    with the default checkpoint path skipped every batch as done (found in
    review): nothing was written there, and the job said it succeeded."""
    ck = tmp_path / "ck.json"
    job = MaterializeJob(SCHEMA, batch_size=100, destination="cluster-a:50051")
    materialize(job, offline, online("a"), ck, progress=None)
    other = MaterializeJob(SCHEMA, batch_size=100, destination="cluster-b:50051")
    with pytest.raises(FailedPrecondition, match="belongs to job .*cluster-a"):
        materialize(other, offline, online("b"), ck, progress=None)
    elsewhere = OfflineStore(tmp_path / "another-store")
    with pytest.raises(FailedPrecondition, match="belongs to job"):
        materialize(job, elsewhere, online("c"), ck, progress=None)
    again = materialize(job, offline, online("d"), ck, progress=None)  # the same job resumes
    assert again.skipped_batches > 0 and again.rows == 0


def test_progress_line_reports_rate_and_eta() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = Progress("user_profile@v1", 1000, out, clock=lambda: now[0], min_interval=1.0)
    bar.advance(200, fresh=False)  # resumed rows count as done but not toward the rate
    now[0] = 2.0
    bar.advance(300)
    now[0] = 2.5
    bar.advance(100)  # within min_interval: not drawn
    assert out.getvalue().splitlines() == [
        "materialize user_profile@v1: 200/1,000 rows (20.0%) 0 rows/s ETA ?",
        "materialize user_profile@v1: 500/1,000 rows (50.0%) 150 rows/s ETA 3s",
    ]
    bar.finish()
    assert out.getvalue().splitlines()[-1].endswith("600/1,000 rows (60.0%) 160 rows/s ETA 2s")
