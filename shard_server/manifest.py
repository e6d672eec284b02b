"""The segment manifest of one index partition: which sealed segment files
exist, with their sha256 checksums, written atomically beside RocksDB.

RocksDB stays the source of truth; segment files and the manifest are a
cache of derived data that saves rebuilding indexes at restart. So every
failure here is recoverable: a missing or unreadable manifest means "no
segments", a corrupt file means "rebuild those rows from RocksDB".

Atomic write: temporary file, fsync, rename over the old one, fsync the
directory, so a crash leaves the old manifest or the new one, never half.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from core.durable_files import sha256_file, write_atomic

MANIFEST = "MANIFEST.json"
FORMAT = 1


class ManifestError(ValueError):
    """The manifest exists but cannot be used (undecodable, other format)."""


@dataclass(frozen=True)
class SegmentEntry:
    id: str
    kind: str
    rows: int
    # Highest write sequence among the segment's rows.
    max_seq: int
    # file name → sha256 (hex)
    files: Mapping[str, str]


@dataclass(frozen=True)
class Manifest:
    index: str
    kind: str
    params: Mapping[str, Any]
    dimension: int
    metric: str
    next_segment: int
    # Highest write sequence covered by the listed segments.
    sequence: int = 0
    # IVF-PQ template file → sha256 (empty when there is none yet).
    template: Mapping[str, str] = field(default_factory=dict)
    segments: tuple[SegmentEntry, ...] = ()

    def referenced(self) -> set[str]:
        names = {MANIFEST, *self.template}
        for s in self.segments:
            names.update(s.files)
        return names


def write_manifest(directory: Path, manifest: Manifest) -> None:
    doc = {
        "format": FORMAT,
        "index": manifest.index,
        "kind": manifest.kind,
        "params": dict(manifest.params),
        "dimension": manifest.dimension,
        "metric": manifest.metric,
        "next_segment": manifest.next_segment,
        "sequence": manifest.sequence,
        "template": dict(manifest.template),
        "segments": [
            {
                "id": s.id,
                "kind": s.kind,
                "rows": s.rows,
                "max_seq": s.max_seq,
                "files": dict(s.files),
            }
            for s in manifest.segments
        ],
    }
    body = json.dumps(doc, indent=1, sort_keys=True).encode()

    def write(f: IO[bytes]) -> None:
        f.write(body)

    write_atomic(directory / MANIFEST, write)


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest, None when there is none; ManifestError when unusable."""
    path = directory / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        if doc.get("format") != FORMAT:
            raise ManifestError(f"{path}: format {doc.get('format')!r}, expected {FORMAT}")
        return Manifest(
            index=str(doc["index"]),
            kind=str(doc["kind"]),
            params=dict(doc["params"]),
            dimension=int(doc["dimension"]),
            metric=str(doc["metric"]),
            next_segment=int(doc["next_segment"]),
            sequence=int(doc["sequence"]),
            template={str(k): str(v) for k, v in doc["template"].items()},
            segments=tuple(
                SegmentEntry(
                    id=str(s["id"]),
                    kind=str(s["kind"]),
                    rows=int(s["rows"]),
                    max_seq=int(s["max_seq"]),
                    files={str(k): str(v) for k, v in s["files"].items()},
                )
                for s in doc["segments"]
            ),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, ManifestError):
            raise
        raise ManifestError(f"{path}: unreadable manifest ({type(exc).__name__}: {exc})") from None


def verify(directory: Path, files: Mapping[str, str]) -> None:
    """Raises ManifestError naming the first missing or altered file."""
    for name, digest in sorted(files.items()):
        path = directory / name
        if not path.is_file():
            raise ManifestError(f"{path}: missing")
        actual = sha256_file(path)
        if actual != digest:
            raise ManifestError(f"{path}: sha256 {actual[:12]}…, expected {digest[:12]}…")
