"""A sealed segment on disk: `<id>.npz` (rows, summary; arrays and JSON, never
pickles), `<id>.vectors.npy` (the float32 vectors, mapped read-only once
written: the segment's rerank reads them there, so the process keeps no
second copy beside the index's) and, for indexed kinds, `<id>.hnsw` /
`<id>.ivfpq` (the library's own format). Written atomically; loaded only
after their checksums match the manifest. Segments written before the vector
file existed (vectors and keys inside the `.npz`) still load, with their
vectors in memory.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import IO, Any

import numpy as np

from core.domain import EntityKey, Metric
from core.durable_files import write_atomic, write_file_atomic
from core.record_columns import PackedStrings
from registry.index_params import HnswParams, IndexParams, IvfPqParams
from shard_server.columns import AttributeColumns
from shard_server.hnsw_segment import HnswIndex
from shard_server.ivfpq_segment import IvfPqIndex
from shard_server.key_table import KeyTable
from shard_server.manifest import SegmentEntry, verify
from shard_server.planner import PlannerPolicy
from shard_server.sealed_segment import AnnIndex, SealedSegment
from shard_server.segment_rows import SegmentRows
from shard_server.summary import BucketStats, SegmentSummary


def _blob(doc: object) -> np.ndarray:
    return np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)


def _doc(arr: np.ndarray) -> Any:  # a JSON document this module wrote
    return json.loads(arr.tobytes())


def save_segment(directory: Path, seg: SealedSegment) -> dict[str, str]:
    """Writes the segment's files; returns file name → sha256 and records
    them on the segment (so `release` can delete them)."""
    directory.mkdir(parents=True, exist_ok=True)
    rows, summary = seg.rows, seg.summary()
    attr_arrays, attr_doc = rows.columns.to_payload()
    keys = rows.keys
    arrays = {
        "sq_norms": rows.sq_norms,
        "tenants": rows.tenants,
        "buckets": rows.buckets,
        "seqs": rows.seqs,
        "centroids": summary.centroids,
        "radii": summary.radii,
        "key_tenants": keys.tenants,
        "key_types": keys.types,
        "key_ids": np.frombuffer(keys.ids.data, dtype=np.uint8),
        "key_offsets": keys.ids.offsets,
        "key_names_json": _blob(
            {"tenants": list(keys.tenant_names), "types": list(keys.type_names)}
        ),
        "tenant_names_json": _blob(list(rows.tenant_names)),
        "attrs_json": np.frombuffer(attr_doc, dtype=np.uint8),
        "bucket_stats_json": _blob(
            {
                str(b): {"rows": s.rows, "ranges": s.ranges, "tenants": sorted(s.tenants)}
                for b, s in summary.buckets.items()
            }
        ),
        **attr_arrays,
    }

    def write_rows(f: IO[bytes]) -> None:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy stub: **arrays may fill allow_pickle

    def write_vectors(f: IO[bytes]) -> None:
        np.save(f, np.ascontiguousarray(rows.vectors, dtype="<f4"), allow_pickle=False)

    vectors = _vectors_file(seg.id)
    files = {
        f"{seg.id}.npz": write_atomic(directory / f"{seg.id}.npz", write_rows),
        vectors: write_atomic(directory / vectors, write_vectors),
    }
    if seg.index is not None:
        name = f"{seg.id}.{seg.kind}"
        files[name] = write_file_atomic(directory / name, seg.index.save)
    seg.files, seg.directory = files, directory
    # From now on the rows read their vectors from the file just written.
    seg.rows = rows.with_vectors(_mapped(directory / vectors, rows.vectors.shape))
    return files


def _vectors_file(seg_id: str) -> str:
    return f"{seg_id}.vectors.npy"


def _mapped(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    if not shape[0]:  # numpy cannot map an empty file region
        return np.zeros(shape, dtype=np.float32)
    vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    if vectors.dtype != np.dtype("<f4") or vectors.shape != shape:
        raise ValueError(f"{path}: {vectors.dtype} {vectors.shape}, expected float32 {shape}")
    return vectors.view(np.ndarray)  # still the mapping (`segment_rows.file_mapped`)


def _keys(arrays: dict[str, np.ndarray]) -> KeyTable:
    if "keys_json" in arrays:  # written before key tables
        return KeyTable.of([EntityKey(*k) for k in _doc(arrays["keys_json"])])
    names = _doc(arrays["key_names_json"])
    assert isinstance(names, dict)
    n = arrays["key_tenants"].shape[0]
    ids = PackedStrings.from_buffers(
        arrays["key_ids"].tobytes(), arrays["key_offsets"], n, "segment keys"
    )
    return KeyTable(
        arrays["key_tenants"], names["tenants"], arrays["key_types"], names["types"], ids
    )


def load_segment(
    directory: Path,
    entry: SegmentEntry,
    dim: int,
    metric: Metric,
    params: IndexParams,
    planner: PlannerPolicy,
    use_gpu: bool,
) -> SealedSegment:
    """Loads a segment; raises (ManifestError, ValueError, OSError, ...) when
    a file is missing, altered or does not match the index version."""
    verify(directory, entry.files)
    data = (directory / f"{entry.id}.npz").read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    keys = _keys(arrays)
    if "vectors" in arrays:  # written before the vector file: kept in memory
        vectors = arrays["vectors"]
    else:
        vectors = _mapped(directory / _vectors_file(entry.id), (len(keys), dim))
    rows = SegmentRows(
        keys=keys,
        vectors=vectors,
        sq_norms=arrays["sq_norms"],
        tenants=arrays["tenants"],
        tenant_names=tuple(_doc(arrays["tenant_names_json"])),
        buckets=arrays["buckets"],
        seqs=arrays["seqs"],
        columns=AttributeColumns.from_payload(arrays, arrays["attrs_json"].tobytes()),
    )
    if len(rows) != entry.rows or rows.dim != dim:
        raise ValueError(
            f"{directory / entry.id}: {len(rows)} rows of dimension {rows.dim}, "
            f"expected {entry.rows} of dimension {dim}"
        )
    stats = {
        int(b): BucketStats(
            rows=int(s["rows"]),
            ranges={a: (float(r[0]), float(r[1]), int(r[2])) for a, r in s["ranges"].items()},
            tenants=frozenset(s["tenants"]),
        )
        for b, s in _doc(arrays["bucket_stats_json"]).items()
    }
    summary = SegmentSummary(arrays["centroids"], arrays["radii"], stats)
    index: AnnIndex | None = None
    path = directory / f"{entry.id}.{entry.kind}"
    if entry.kind == "hnsw" and isinstance(params, HnswParams):
        index = HnswIndex.load(path, dim, len(rows), metric, params)
    elif entry.kind == "ivfpq" and isinstance(params, IvfPqParams):
        index = IvfPqIndex.load(path, dim, len(rows), metric, params, use_gpu)
    elif entry.kind != "flat":
        raise ValueError(f"{path}: segment kind {entry.kind!r} does not fit this index version")
    seg = SealedSegment(entry.id, rows, metric, index, summary, planner)
    seg.files, seg.directory = dict(entry.files), directory
    return seg
