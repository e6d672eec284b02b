"""`vecshard delete-subject`'s job bookkeeping (`cli.erasure_job`), with a
stand-in for the coordinator (the real one: tests/test_delete_subject_e2e.py):
a second request for a subject whose erasure completed runs a new job; a
tombstone-only run (--no-purge) stops before the purge, unverified, and the
same command finishes it later; a job whose file scan was skipped is not
reported verified (found in review: both used to exit 0 having done nothing
more)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cli.erasure_job import run_job
from core.domain import EntityKey

SUBJECT = EntityKey("acme", "user", "u1")


class Coordinator:
    """The calls a job makes, recorded; every check comes back clean."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def plan(self, *_: Any) -> SimpleNamespace:
        self.calls.append("plan")
        copy = SimpleNamespace(
            embedding="e@v1", index="ix@v1", vector=b"\x00" * 16, source_version=3
        )
        return SimpleNamespace(
            copies=[copy], embedding_versions=["e@v1"], index_versions=["ix@v1"], feature_groups=[]
        )

    def erase(self, *_: Any) -> SimpleNamespace:
        self.calls.append("erase")
        return SimpleNamespace(
            source_version=4, records_deleted=1, feature_rows_deleted=0, index_versions=1
        )

    def purge(self, *_: Any) -> SimpleNamespace:
        self.calls.append("purge")
        return SimpleNamespace(shards=["s1"], index_partitions_compacted=1)

    def verify(self, subject: EntityKey, copies: list[Any], **kw: Any) -> SimpleNamespace:
        self.calls.append("verify" if kw["scan_files"] else "verify (no scan)")
        return SimpleNamespace(
            searches=1, search_matches=0, lookups=1, lookup_matches=0, feature_reads=0,
            feature_matches=0, files_scanned=12 if kw["scan_files"] else 0, file_matches=0,
            markers=1, findings=[],
        )  # fmt: skip


def _run(tmp_path: Path, **kw: Any) -> tuple[Coordinator, dict[str, Any]]:
    c = Coordinator()
    return c, run_job(c, SUBJECT, tmp_path, say=lambda _: None, **kw)  # type: ignore[arg-type]


def test_a_second_request_for_a_subject_runs_a_new_job(tmp_path: Path) -> None:
    first, report = _run(tmp_path)
    assert first.calls == ["plan", "erase", "purge", "verify"] and report["verified"]
    second, again = _run(tmp_path)
    assert second.calls == ["plan", "erase", "purge", "verify"] and again["verified"]
    (kept,) = (tmp_path / "done").iterdir()
    assert json.loads(kept.read_text())["report"]["job_id"] == report["job_id"]


def test_no_purge_stops_unverified_and_the_same_command_finishes_the_job(tmp_path: Path) -> None:
    first, partial = _run(tmp_path, purge=False)
    assert first.calls == ["plan", "erase"]
    assert partial["verified"] is False and partial["pending"] == ["purge", "offline", "verify"]
    later, report = _run(tmp_path)
    assert later.calls == ["purge", "verify"]  # resumed: the plan's vectors were kept
    assert report["verified"] is True


def test_a_job_whose_file_scan_was_skipped_is_not_verified(tmp_path: Path) -> None:
    c, report = _run(tmp_path, scan_files=False)
    assert c.calls[-1] == "verify (no scan)"
    assert report["matches"] == 0 and report["verified"] is False
