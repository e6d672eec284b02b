"""Moving an audit chain's closed files off the coordinator's volume, while it
runs, without breaking the chain.

Why: a coordinator writes ~870 bytes of audit per search (deploy/README.md),
about 1.5 GB an hour at 500 searches a second, on a volume that evicts the
pod when full. A closed file (every file but the newest: the writer only ever
appends to the newest, and rotation opens a newer one) never changes again,
so it can be moved; what must hold is that the archive and what stays behind
still form one chain — the archive from where it began, the rest continuing
exactly from the archive's last record (`verify --archived` checks the rest
from its first record; this checks the seam).

Each file is copied, fsynced, compared byte for byte by hash, and only then
removed from the volume: a crash at any point leaves every record in at
least one place, and a rerun finishes the move.
"""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from core.audit_chain import segment_files, verify_chain
from core.durable_files import fsync_dir, sha256_file, write_file_atomic
from core.errors import FailedPrecondition


@dataclass(frozen=True)
class Archived:
    files: int
    bytes: int
    first_seq: int  # of what stays on the volume (0: nothing was closed, nothing moved)


def _first_link(path: Path) -> tuple[int, str]:
    with open(path, "rb") as f:
        record = json.loads(f.readline())
    return int(record["seq"]), str(record["prev"])


def archive_closed(chain: Path, dest: Path, key: bytes) -> Archived:
    """Moves every closed file of `chain` into `dest` (that chain's archive
    directory), after checking that both verify and meet without a gap;
    refuses (FailedPrecondition, nothing moved) when they do not. The newest
    file is neither moved nor read: it is being written (its last line may be
    half flushed)."""
    closed = segment_files(chain)[:-1]
    if not closed:
        return Archived(0, 0, 0)
    # Gap records (records lost while the coordinator was down) travel into
    # the archive, where verification keeps reporting them; refusing them
    # here would only fill the volume.
    here = verify_chain(chain, key, from_genesis=False, files=closed)
    if here.problems:
        raise FailedPrecondition(f"{chain} does not verify ({here.problems[0]}); nothing moved")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    done = {p.name for p in segment_files(dest)}
    # A file copied by a run that stopped before removing it is in both.
    pending = [p for p in closed if p.name not in done]
    if done and pending:
        there = verify_chain(dest, key, from_genesis=False)
        if there.problems:
            raise FailedPrecondition(f"{dest} does not verify ({there.problems[0]}); nothing moved")
        seq, prev = _first_link(pending[0])
        if (seq, prev) != (there.last_seq + 1, there.last_hash):
            raise FailedPrecondition(
                f"{chain} does not continue {dest}: it starts at seq {seq}, the archive ends at "
                f"seq {there.last_seq}; nothing moved"
            )
    moved = size = 0
    for path in closed:
        target = dest / path.name
        if target.name in done:
            if sha256_file(target) != sha256_file(path):
                raise FailedPrecondition(
                    f"{target} differs from {path}: the archive holds another chain; "
                    "nothing more moved"
                )
        else:
            copied = write_file_atomic(target, functools.partial(shutil.copyfile, path))
            if copied != sha256_file(path):
                raise FailedPrecondition(f"{target} differs from {path} after copying; kept both")
        size += path.stat().st_size
        path.unlink()
        moved += 1
    fsync_dir(chain)
    return Archived(moved, size, here.last_seq + 1)
