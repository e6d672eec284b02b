"""`vecshard delete-subject` as a resumable job (DESIGN §10).

Steps, in order: `plan` (what holds the subject, and its stored vectors),
`erase` (tombstones everywhere: nothing is served once it returns), `purge`
(compaction on every shard), `offline` (Parquet rewrite), `verify` (search
with the deleted vectors, lookups, features, file scan, offline re-read; the
coordinator writes the result to the audit trail).

The job's state is one JSON file per subject under the state directory,
written atomically (temporary file, fsync, rename) after every step. Killed
at any point — SIGKILL included — the same command resumes at the first step
not recorded as done; every step is idempotent, so one cut short is simply
run again. The state holds the subject's vectors only until verification;
the final report keeps counts, never vectors. Run again once the job has
completed, the command is a new request (new activity since): the finished
state moves to `done/` and a new job starts. `--no-purge` stops the job
before its purge, unverified, keeping what verification needs; the same
command without it finishes the job. Only a job whose every check ran —
the file scan included (`--no-scan` skips it) — reports `verified`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from client.erasure_client import ErasureClient, StoredCopy
from core.domain import EntityKey

STEPS = ("plan", "erase", "purge", "offline", "verify")
Say = Callable[[str], None]


def job_id(subject: EntityKey) -> str:
    return hashlib.sha256("\x1f".join(subject).encode()).hexdigest()[:16]


class JobState:
    def __init__(self, path: Path, subject: EntityKey) -> None:
        self.path = path
        if path.exists():
            self.data: dict[str, Any] = json.loads(path.read_text())
            if self.data.get("subject") != list(subject):
                raise SystemExit(f"{path} belongs to another subject; remove it or use --state-dir")
        else:
            self.data = {"job_id": path.stem, "subject": list(subject), "created": time.time()}
            self.data["done"] = {}

    @property
    def done(self) -> dict[str, Any]:
        result: dict[str, Any] = self.data["done"]
        return result

    def record(self, step: str, result: dict[str, Any]) -> None:
        self.done[step] = result
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _copies(plan: dict[str, Any]) -> list[StoredCopy]:
    return [
        StoredCopy(c["embedding"], c["index"], base64.b64decode(c["vector"]), c["source_version"])
        for c in plan["copies"]
    ]


def run_job(
    client: ErasureClient,
    subject: EntityKey,
    state_dir: Path,
    *,
    offline_roots: Sequence[Path] = (),
    purge: bool = True,
    scan_files: bool = True,
    why: str = "",
    say: Say = print,
) -> dict[str, Any]:
    """Runs (or resumes) the job; returns its report."""
    jid = job_id(subject)
    path = state_dir / f"{jid}.json"
    state = JobState(path, subject)
    if "report" in state.data:
        # A new request to erase the subject (new activity since, say): the
        # finished job's state is kept beside, and a new one starts.
        kept = state_dir / "done" / f"{jid}-{int(state.data['created'])}.json"
        kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(path, kept)
        say(f"job {jid}: an earlier erasure of this subject completed ({kept}); starting anew")
        state = JobState(path, subject)
    started = [s for s in STEPS if s in state.done]
    if started:
        say(f"job {jid}: resuming; done before: {', '.join(started)}")
    for step in STEPS:
        if step in state.done:
            continue
        if step == "purge" and not purge:
            # Tombstones only: the job waits (vectors kept to verify with)
            # until the same command runs without --no-purge.
            say(f"job {jid}: stopped before purge (--no-purge); rerun without it to finish")
            return {**_partial(state, subject), "pending": ["purge", "offline", "verify"]}
        t0 = time.monotonic()
        result = _STEP[step](client, subject, state, jid, why, offline_roots, purge, scan_files)
        result["seconds"] = round(time.monotonic() - t0, 3)
        state.record(step, result)
        say(f"job {jid}: {step} done: {_summary(step, result)}")
    report = _report(state, subject)
    # The vectors were kept only to verify with: drop them with the job.
    state.done["plan"]["copies"] = [{**c, "vector": ""} for c in state.done["plan"]["copies"]]
    state.data["report"] = report
    state.save()
    return report


def _plan(
    client: ErasureClient, subject: EntityKey, state: JobState, jid: str, why: str, *_: Any
) -> dict[str, Any]:
    plan = client.plan(subject, jid, why)
    return {
        "copies": [
            {
                "embedding": c.embedding,
                "index": c.index,
                "vector": base64.b64encode(c.vector).decode(),
                "source_version": c.source_version,
            }
            for c in plan.copies
        ],
        "embedding_versions": plan.embedding_versions,
        "index_versions": plan.index_versions,
        "feature_groups": plan.feature_groups,
    }


def _erase(
    client: ErasureClient, subject: EntityKey, state: JobState, jid: str, why: str, *_: Any
) -> dict[str, Any]:
    r = client.erase(subject, jid, why)
    return {
        "source_version": r.source_version,
        "records_deleted": r.records_deleted,
        "feature_rows_deleted": r.feature_rows_deleted,
        "index_versions": r.index_versions,
    }


def _purge(
    client: ErasureClient,
    subject: EntityKey,
    state: JobState,
    jid: str,
    why: str,
    offline_roots: Sequence[Path],
    purge: bool,
    scan_files: bool,
) -> dict[str, Any]:
    r = client.purge(subject, jid, why)
    return {"shards": list(r.shards), "index_partitions_compacted": r.index_partitions_compacted}


def _offline(
    client: ErasureClient,
    subject: EntityKey,
    state: JobState,
    jid: str,
    why: str,
    offline_roots: Sequence[Path],
    *_: Any,
) -> dict[str, Any]:
    if not offline_roots:
        return {"roots": []}
    from offline.erasure import erase_offline

    out: dict[str, Any] = {"roots": [], "rows_removed": 0, "files_rewritten": 0}
    for root in offline_roots:
        e = erase_offline(root, subject)
        out["roots"].append(str(root))
        out["rows_removed"] += e.rows_removed
        out["files_rewritten"] += e.files_rewritten
    return out


def _verify(
    client: ErasureClient,
    subject: EntityKey,
    state: JobState,
    jid: str,
    why: str,
    offline_roots: Sequence[Path],
    purge: bool,
    scan_files: bool,
) -> dict[str, Any]:
    offline_left: list[str] = []
    if offline_roots:
        from offline.erasure import find_offline

        offline_left = [
            f"{root}/{f}" for root in offline_roots for f in find_offline(root, subject)
        ]
    r = client.verify(
        subject,
        _copies(state.done["plan"]),
        scan_files=scan_files,
        job_id=jid,
        why=why,
        offline_rows_removed=int(state.done["offline"].get("rows_removed", 0)),
        offline_matches=len(offline_left),
    )
    return {
        "searches": r.searches,
        "search_matches": r.search_matches,
        "lookups": r.lookups,
        "lookup_matches": r.lookup_matches,
        "feature_reads": r.feature_reads,
        "feature_matches": r.feature_matches,
        "files_scanned": r.files_scanned,
        "file_matches": r.file_matches,
        "markers": r.markers,
        "offline_matches": len(offline_left),
        "findings": [f"{f.where}: {f.what}" for f in r.findings] + offline_left,
    }


_STEP: dict[str, Callable[..., dict[str, Any]]] = {
    "plan": _plan,
    "erase": _erase,
    "purge": _purge,
    "offline": _offline,
    "verify": _verify,
}


def _summary(step: str, result: dict[str, Any]) -> str:
    if step == "plan":
        return (
            f"{len(result['copies'])} stored copies in {len(result['index_versions'])} index "
            f"version(s), {len(result['feature_groups'])} feature group(s)"
        )
    if step == "verify":
        return f"{matches(result)} matches ({result['searches']} searches, {result['lookups']} lookups)"
    return ", ".join(f"{k}={v}" for k, v in result.items() if k != "seconds")


def matches(verify: dict[str, Any]) -> int:
    return sum(
        int(verify[k])
        for k in (
            "search_matches",
            "lookup_matches",
            "feature_matches",
            "file_matches",
            "offline_matches",
        )
    )


def _partial(state: JobState, subject: EntityKey) -> dict[str, Any]:
    """What a job stopped before its purge reports: never verified."""
    done = state.done
    return {
        "job_id": state.data["job_id"],
        "subject": {"tenant_id": subject[0], "entity_type": subject[1], "entity_id": subject[2]},
        "copies_found": len(done["plan"]["copies"]),
        "erase": done["erase"],
        "verified": False,
    }


def _report(state: JobState, subject: EntityKey) -> dict[str, Any]:
    done = state.done
    verify = done["verify"]
    return {
        "job_id": state.data["job_id"],
        "subject": {"tenant_id": subject[0], "entity_type": subject[1], "entity_id": subject[2]},
        "index_versions": done["plan"]["index_versions"],
        "feature_groups": done["plan"]["feature_groups"],
        "copies_found": len(done["plan"]["copies"]),
        "erase": done["erase"],
        "purge": done["purge"],
        "offline": done["offline"],
        "verify": verify,
        "matches": matches(verify),
        # Every check ran clean: a skipped file scan (--no-scan) is not proof.
        "verified": matches(verify) == 0 and int(verify["files_scanned"]) > 0,
    }
