"""The audit trail's files: append-only, hash-chained, rotated (DESIGN §10).

One chain per coordinator, in its own directory, as JSON lines in segment
files `audit-<first seq>.jsonl`. Every record carries its sequence number and
the hash of the record before it, and its own hash is

    HMAC-SHA256(chain key, previous hash ‖ canonical JSON of the record)

so editing, removing or reordering any record breaks the chain at that point,
and — because the hash is keyed — whoever can write the files but lacks the
key cannot recompute a consistent chain after a change. Rotation only starts a
new file; the chain runs on across files.

What a chain alone cannot show is a cut at its end (the newest records or
file removed). So the coordinator also *anchors* its head — (seq, hash) — in
etcd, outside the files, every second; verification against the anchor finds
a removed tail too (`verify_chain(..., anchor=...)`). A cut made while the
coordinator is down is found when it restarts (`ChainWriter.reconcile`): it
writes a *gap* record naming the anchored head and what it found, which every
later verification reports, and numbers on from the anchored head, so the
anchor only ever moves forward.

Stdlib only: the coordinator writes with it, `vecshard audit verify` and the
Parquet export read with it.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from core.durable_files import fsync_dir

GENESIS = "0" * 64
PREFIX = "audit-"
SUFFIX = ".jsonl"
LOCK = ".lock"
GAP = "gap"  # the `event` of a record that says records are missing before it


def derive_keys(secret: bytes) -> tuple[bytes, bytes]:
    """(chain key, id-hashing salt) from the audit secret, kept apart so the
    salt given to someone matching ids cannot forge the chain."""
    chain = hmac.new(secret, b"vecshard audit chain v1", hashlib.sha256).digest()
    salt = hmac.new(secret, b"vecshard audit ids v1", hashlib.sha256).digest()
    return chain, salt


def read_secret(path: Path) -> bytes:
    text = path.read_bytes().strip()
    if len(text) < 32:
        raise ValueError(f"audit key {path} is too short; expected at least 32 bytes")
    return text


def canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(key: bytes, prev: str, body: bytes) -> str:
    return hmac.new(key, prev.encode() + body, hashlib.sha256).hexdigest()


def seal(key: bytes, seq: int, prev: str, record: Mapping[str, Any]) -> tuple[bytes, str]:
    """The line for `record` at `seq` after `prev`, and the record's hash.

    The line is the canonical body with `hash` appended as its last member
    (one serialization per record: this runs for every call served);
    verification parses the line and recomputes the body's canonical form."""
    body = canonical({**record, "seq": seq, "prev": prev})
    digest = chain_hash(key, prev, body)
    return body[:-1] + b',"hash":"' + digest.encode() + b'"}\n', digest


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{PREFIX}*{SUFFIX}"))


def _first_seq(path: Path) -> int:
    """The seq a segment file starts at, from its name (`audit-<seq>.jsonl`)."""
    try:
        return int(path.name[len(PREFIX) : -len(SUFFIX)])
    except ValueError:  # not a name the writer gives: no record is looked for there
        return -1


def hash_at(directory: Path, seq: int) -> str | None:
    """The hash of record `seq` if this volume still holds it (it may have
    been archived or removed): read from the one file whose name says it
    starts at or before `seq`."""
    starts = [p for p in segment_files(directory) if 0 <= _first_seq(p) <= seq]
    if not starts:
        return None
    for _path, _n, line in iter_lines(directory, starts[-1:]):
        if not line.endswith(b"\n"):
            break
        try:
            record = json.loads(line)
            if int(record["seq"]) == seq:
                return str(record["hash"])
        except (ValueError, KeyError, TypeError):
            return None
    return None


def _last_record(path: Path) -> tuple[dict[str, Any] | None, int]:
    """The last complete record of a file and the byte length of the file up
    to its end (a torn last line, from a crash mid-write, is not counted)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end == 0:
        return None, 0
    start = data.rfind(b"\n", 0, end - 1) + 1
    return json.loads(data[start:end]), end


class ChainWriter:
    """Appends to one chain. One writer per directory (an flock guards it);
    not thread-safe: the coordinator's audit thread is its only user."""

    def __init__(self, directory: Path, key: bytes, rotate_bytes: int = 64 << 20) -> None:
        if rotate_bytes < 4096:
            raise ValueError(f"rotate_bytes {rotate_bytes} must be at least 4096")
        self.directory = directory
        self.key = key
        self.rotate_bytes = rotate_bytes
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = open(directory / LOCK, "a")  # noqa: SIM115 - held for the writer's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(
                f"audit chain {directory} is held by another process; each coordinator needs "
                "its own audit directory (set --name)"
            ) from None
        self.seq, self.prev = 0, GENESIS
        self.torn_bytes = 0
        self._file: IO[bytes] | None = None
        self._size = 0
        files = segment_files(directory)
        if files:
            last, end = _last_record(files[-1])
            size = files[-1].stat().st_size
            if end < size:  # a torn tail: the crash lost what was never fsynced
                self.torn_bytes = size - end
                with open(files[-1], "r+b") as f:
                    f.truncate(end)
                    os.fsync(f.fileno())
            if last is not None:
                self.seq, self.prev = int(last["seq"]), str(last["hash"])
            self._open(files[-1])

    def reconcile(self, anchored: tuple[int, str] | None) -> dict[str, Any] | None:
        """Checks the head found on disk against the head anchored in etcd
        before anything is appended, and returns the gap record to append
        first, or None when the chain on disk reaches the anchored head.

        A chain behind its anchor lost records while no writer held it (a
        tail cut, a volume lost): the writer numbers on from the anchored
        head and links to its hash, so sequence numbers are never reused and
        the anchor never moves back; the gap record names both heads, and
        `verify_chain` reports it. Refusing to start instead would recover
        nothing (the records are gone either way) and would turn a cut, or a
        pod that lost its volume, into an outage.

        A chain at or past its anchor must hold the anchored record with the
        anchored hash (else it was replaced: another chain, or a rewrite). A
        non-empty chain with no anchor cannot be checked for a cut (the
        anchor was removed, or etcd lost it): recorded too."""
        head = {"head_seq": self.seq, "head_hash": self.prev}
        if anchored is None:
            if self.seq == 0:
                return None  # a new chain: nothing to check yet
            return {"event": GAP, "reason": "unanchored", **head}
        a_seq, a_hash = anchored
        found = {"anchored_seq": a_seq, "anchored_hash": a_hash, **head}
        if self.seq < a_seq:
            self.seq, self.prev = a_seq, a_hash
            return {"event": GAP, "reason": "behind", **found}
        at_anchor = hash_at(self.directory, a_seq) if a_seq > 0 else GENESIS
        if at_anchor == a_hash:
            return None
        return {"event": GAP, "reason": "diverged", "hash_at_anchored_seq": at_anchor, **found}

    def disk_bytes(self) -> int:
        """Bytes of the chain's files on disk now (rotated ones included until
        they are shipped and removed): what fills the audit volume."""
        total = 0
        for path in segment_files(self.directory):
            try:
                total += path.stat().st_size
            except FileNotFoundError:  # shipped away meanwhile
                continue
        return total

    def _open(self, path: Path) -> None:
        # Owner-only: the trail names principals, tenants and hashed ids.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "ab")
        self._size = path.stat().st_size

    def append(self, records: list[Mapping[str, Any]]) -> None:
        for record in records:
            if self._file is None or self._size >= self.rotate_bytes:
                self._rotate()
            assert self._file is not None
            line, digest = seal(self.key, self.seq + 1, self.prev, record)
            self._file.write(line)
            self._size += len(line)
            self.seq, self.prev = self.seq + 1, digest

    def _rotate(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None  # a failed open below must not leave a closed file to flush
        path = self.directory / f"{PREFIX}{self.seq + 1:012d}{SUFFIX}"
        self._open(path)
        fsync_dir(self.directory)

    def sync(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None
        self._lock.close()


@dataclass
class Verification:
    directory: Path
    files: int = 0
    records: int = 0
    first_seq: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)
    # Gaps the writer found and recorded (`ChainWriter.reconcile`): records
    # are missing, but the chain around the gap record is intact, so it can
    # still be archived; `ok` is false all the same.
    gaps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.gaps


def iter_lines(
    directory: Path, files: Sequence[Path] | None = None
) -> Iterator[tuple[Path, int, bytes]]:
    for path in segment_files(directory) if files is None else files:
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                yield path, n, line


def _gap_fits(record: Mapping[str, Any], seq: int, link: str, before: tuple[int, str]) -> bool:
    """Whether a sealed gap record sits where its writer put it: right after
    the head it found on disk (`before`, the record before it here), numbered
    on from that head or from the anchored one. A gap record elsewhere (more
    removed around it) is checked like any other record."""
    head = (record.get("head_seq"), record.get("head_hash"))
    if before[0] >= 0 and head != before:
        return False
    anchored = (record.get("anchored_seq"), record.get("anchored_hash"))
    return (seq - 1, link) in (head, anchored)


def describe_gap(record: Mapping[str, Any]) -> str:
    """What a gap record says, for a person."""
    reason = record.get("reason")
    head, anchored = record.get("head_seq"), record.get("anchored_seq")
    if reason == "behind":
        return (
            f"at a restart the chain ended at seq {head}, behind the head anchored in etcd at "
            f"seq {anchored}: records {head + 1}..{anchored} were removed while no writer held it"
            if isinstance(head, int) and isinstance(anchored, int)
            else "at a restart the chain was behind the head anchored in etcd"
        )
    if reason == "diverged":
        found = record.get("hash_at_anchored_seq")
        what = "is not on this volume" if found is None else "has another hash"
        return (
            f"at a restart, the anchored record seq {anchored} {what}: "
            "the chain was replaced or rewritten before it"
        )
    if reason == "unanchored":
        return (
            f"at a restart no head was anchored in etcd for this chain (at seq {head}): "
            "a cut at its end before then cannot be ruled out"
        )
    return f"records are missing before it ({reason})"


def verify_chain(
    directory: Path,
    key: bytes,
    from_genesis: bool = True,
    anchor: tuple[int, str] | None = None,
    files: Sequence[Path] | None = None,
) -> Verification:
    """Checks every record's hash, sequence and link. With `from_genesis`
    the chain must start at 1 (nothing removed from its beginning); else the
    first record found is taken as the start (older files were archived).
    With `anchor` (seq, hash) — the head the coordinator recorded elsewhere —
    the chain must reach that record, with that hash. `files`: only these of
    the chain's files, in order (the closed ones, while the newest is written).
    A gap record its writer left (records lost while it was down) is reported
    in `gaps`, and the check goes on past it."""
    chosen = segment_files(directory) if files is None else list(files)
    out = Verification(directory, files=len(chosen))
    anchored_hash: str | None = None
    prev: str | None = GENESIS if from_genesis else None
    expected_seq: int | None = 1 if from_genesis else None
    for path, n, line in iter_lines(directory, chosen):
        where = f"{path.name}:{n}"
        if not line.endswith(b"\n"):
            out.problems.append(f"{where}: torn last line (not terminated)")
            break
        try:
            record = json.loads(line)
            seq, link, digest = int(record.pop("seq")), str(record.pop("prev")), record.pop("hash")
        except (ValueError, KeyError, TypeError) as exc:
            out.problems.append(f"{where}: not an audit record ({exc})")
            break
        body = canonical({**record, "seq": seq, "prev": link})
        sealed = hmac.compare_digest(chain_hash(key, link, body), str(digest))
        before = (-1, "") if expected_seq is None or prev is None else (expected_seq - 1, prev)
        if sealed and record.get("event") == GAP and _gap_fits(record, seq, link, before):
            out.gaps.append(f"{where}: seq {seq}: {describe_gap(record)}")
        elif expected_seq is not None and seq != expected_seq:
            kind = "removed" if seq > expected_seq else "reordered or duplicated"
            out.problems.append(f"{where}: seq {seq}, expected {expected_seq} (records {kind})")
            break
        elif prev is not None and link != prev:
            out.problems.append(f"{where}: seq {seq} links to a hash that is not its predecessor's")
            break
        elif not sealed:
            out.problems.append(f"{where}: seq {seq} was altered (its hash does not match)")
            break
        if out.records == 0:
            out.first_seq = seq
        out.records += 1
        out.last_seq, out.last_hash = seq, str(digest)
        prev, expected_seq = str(digest), seq + 1
        if anchor is not None and seq == anchor[0]:
            anchored_hash = str(digest)
    if anchor is not None and not out.problems:
        if out.last_seq < anchor[0]:
            out.problems.append(
                f"the chain ends at seq {out.last_seq}, but its head was anchored at seq "
                f"{anchor[0]}: records were removed from its end"
            )
        elif anchored_hash != anchor[1]:
            out.problems.append(f"seq {anchor[0]} does not have the anchored hash")
    return out


def read_records(directory: Path) -> Iterator[dict[str, Any]]:
    for _path, _n, line in iter_lines(directory):
        if line.endswith(b"\n"):
            yield json.loads(line)


def chains(root: Path) -> list[Path]:
    """Every chain directory under an audit root (one per coordinator)."""
    if segment_files(root):
        return [root]
    return sorted(d for d in root.iterdir() if d.is_dir() and segment_files(d))
