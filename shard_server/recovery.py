"""Start-up of an index partition's segments: load what the manifest lists,
verify it, and let RocksDB decide which rows are still live.

Nothing here can lose data: RocksDB holds every acknowledged record, the
segment files only save rebuild work. A missing, altered or mismatched file
is logged as a warning and its rows come back from RocksDB into the growing
segment (which the shard then seals again); files no manifest lists —
leftovers of a crash mid-write, or of segments replaced just before one — are
deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.domain import EntityKey
from registry.index_params import IndexParams, IvfPqParams
from registry.model import EmbeddingFamily, IndexVersion
from shard_server import records as rec
from shard_server.ivfpq_segment import IvfPqTemplate
from shard_server.lifecycle import TEMPLATE_FILE, LifecyclePolicy
from shard_server.manifest import MANIFEST, Manifest, ManifestError, read_manifest, verify
from shard_server.sealed_segment import SealedSegment
from shard_server.segment_files import load_segment
from shard_server.storage import RECORDS, SEQUENCES, ShardStore, decode_sequence, encode_sequence

log = logging.getLogger(__name__)


@dataclass
class Recovered:
    manifest_found: bool = False
    segments: list[SealedSegment] = field(default_factory=list)
    template: IvfPqTemplate | None = None
    template_files: dict[str, str] = field(default_factory=dict)
    next_id: int = 1
    # Something listed could not be used: the manifest must be rewritten.
    damaged: bool = False


def _matches(m: Manifest, index: IndexVersion, family: EmbeddingFamily) -> bool:
    return (
        m.index == str(index.ref)
        and m.kind == index.kind.value
        and dict(m.params) == dict(index.params)
        and m.dimension == family.dimension
        and m.metric == family.metric.value
    )


def recover_segments(
    directory: Path,
    index: IndexVersion,
    family: EmbeddingFamily,
    params: IndexParams,
    policy: LifecyclePolicy,
) -> Recovered:
    directory.mkdir(parents=True, exist_ok=True)
    out = Recovered()
    try:
        manifest = read_manifest(directory)
    except ManifestError as exc:
        log.warning("%s; every row of %s is rebuilt from RocksDB", exc, index.ref)
        manifest, out.damaged = None, True
    if manifest is not None and not _matches(manifest, index, family):
        log.warning(
            "%s: manifest describes %s (%s), not this index version; rebuilding from RocksDB",
            directory,
            manifest.index,
            manifest.kind,
        )
        manifest, out.damaged = None, True
    if manifest is not None:
        out.manifest_found = True
        out.next_id = manifest.next_segment
        for entry in manifest.segments:
            try:
                out.segments.append(
                    load_segment(
                        directory,
                        entry,
                        family.dimension,
                        family.metric,
                        params,
                        policy.planner,
                        policy.build.use_gpu,
                    )
                )
            except Exception as exc:  # any unusable file: warn and rebuild from RocksDB
                log.warning(
                    "segment %s of %s is unusable (%s: %s); its rows are rebuilt from RocksDB",
                    entry.id,
                    index.ref,
                    type(exc).__name__,
                    exc,
                )
                out.damaged = True
        if manifest.template and isinstance(params, IvfPqParams):
            try:
                verify(directory, manifest.template)
                out.template = IvfPqTemplate.load(
                    directory / TEMPLATE_FILE, family.dimension, family.metric, params
                )
                out.template_files = dict(manifest.template)
            except Exception as exc:
                log.warning(
                    "IVF-PQ template of %s is unusable (%s: %s); it is trained again",
                    index.ref,
                    type(exc).__name__,
                    exc,
                )
                out.damaged = True
    keep = {MANIFEST, *out.template_files}
    for seg in out.segments:
        keep.update(seg.files)
    for path in directory.iterdir():
        if path.name not in keep and path.is_file():
            path.unlink()
    return out


def apply_liveness(
    segments: list[SealedSegment], live_seqs: dict[EntityKey, int]
) -> set[EntityKey]:
    """Masks every segment row that is not the current version of its key in
    RocksDB (deleted or overwritten since sealing); returns the keys the
    segments still serve."""
    covered: set[EntityKey] = set()
    for seg in segments:
        dead = np.zeros(len(seg), dtype=bool)
        for row, (key, seq) in enumerate(zip(seg.rows.keys, seg.rows.seqs.tolist(), strict=True)):
            if live_seqs.get(key) == seq and key not in covered:
                covered.add(key)
            else:
                dead[row] = True
        seg.mark_deleted(dead)
    return covered


def records_to_rebuild(
    store: ShardStore, prefix: bytes, found: Recovered
) -> list[tuple[int, rec.Record]]:
    """(write sequence, record) of every live record of the index version
    (`prefix`) that the loaded segments do not serve — the growing tail —
    in write order; the segments' rows that RocksDB no longer holds in that
    version are masked on the way."""
    live_seqs = {
        rec.parse_record_key(raw_key)[1]: decode_sequence(value)
        for raw_key, value in store.iter_prefix(SEQUENCES, prefix)
    }
    tail: list[tuple[int, rec.Record]] = []
    if found.manifest_found:
        covered = apply_liveness(found.segments, live_seqs)
        missing = sorted((seq, key) for key, seq in live_seqs.items() if key not in covered)
        for start in range(0, len(missing), 4096):
            chunk = missing[start : start + 4096]
            raw_keys = [rec.keyed(prefix, key) for _, key in chunk]
            for (seq, key), value in zip(chunk, store.multi_get(RECORDS, raw_keys), strict=True):
                if value is not None:
                    tail.append((seq, rec.decode_record(key, value)))
    else:
        tail = _scan_all(store, prefix, live_seqs)
    tail.sort(key=lambda t: t[0])
    return tail


def _scan_all(
    store: ShardStore, prefix: bytes, live_seqs: dict[EntityKey, int]
) -> list[tuple[int, rec.Record]]:
    """Every record (no manifest yet). Records written before write
    sequences were stored get sequence 0 recorded now."""
    out, backfill = [], []
    for raw_key, value in store.iter_prefix(RECORDS, prefix):
        _, key = rec.parse_record_key(raw_key)
        seq = live_seqs.get(key)
        if seq is None:
            seq = 0
            backfill.append((SEQUENCES, raw_key, encode_sequence(0)))
        out.append((seq, rec.decode_record(key, value)))
    if backfill:
        store.write(puts=backfill)
    return out
