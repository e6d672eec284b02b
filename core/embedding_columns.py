"""Stored embeddings of a batch of keys as arrays (`EmbeddingColumns`): one
float32 matrix, a status per key and the records' metadata as arrays — the
form BatchGetEmbeddings reads, moves and returns (DESIGN §5, STYLE 14).

Statuses are codes (`STATUSES`, the `LookupStatus` enum values of
common.proto). Where several shards answer for one key (centroid placement
asks them all), `merge` keeps, per key, the better answer by `better_mask`:
found beats deleted beats unavailable beats missing, and of two found
copies the newer `source_version` — one shard saying "missing" while the one
that may hold the key is down proves nothing, so that key is unavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

# Index = the LookupStatus enum value.
STATUSES: tuple[str, ...] = ("unspecified", "found", "missing", "deleted", "unavailable")
FOUND, MISSING, DELETED, UNAVAILABLE = 1, 2, 3, 4
# Reconciliation rank by code (higher wins).
_RANK = np.array([0, 4, 1, 3, 2], dtype=np.int8)


@dataclass(frozen=True, eq=False)
class EmbeddingColumns:
    """`len(status)` keys. Where a key is not found its row of `vectors` is
    zero, its numbers 0 and its model version index -1; `vectors` has no
    columns when vectors were not asked for; `attributes_json` (each key's
    attributes as a JSON object, "" where not found) only when asked."""

    status: npt.NDArray[np.uint8]
    vectors: npt.NDArray[np.float32]
    source_version: npt.NDArray[np.int64]
    created_at: npt.NDArray[np.int64]
    norm: npt.NDArray[np.float32]
    model_versions: list[str]
    model_version_index: npt.NDArray[np.int32]
    attributes_json: list[str] | None = None

    def __len__(self) -> int:
        return len(self.status)

    def statuses(self) -> list[str]:
        return [STATUSES[c] for c in self.status.tolist()]

    def model_version(self, i: int) -> str:
        j = int(self.model_version_index[i])
        return self.model_versions[j] if j >= 0 else ""


def unanswered(keys: int, dimension: int, status: int = UNAVAILABLE) -> EmbeddingColumns:
    """`keys` keys nobody answered for (or answered `status`)."""
    return EmbeddingColumns(
        np.full(keys, status, dtype=np.uint8),
        np.zeros((keys, dimension), dtype=np.float32),
        np.zeros(keys, dtype=np.int64),
        np.zeros(keys, dtype=np.int64),
        np.zeros(keys, dtype=np.float32),
        [],
        np.full(keys, -1, dtype=np.int32),
    )


def better_mask(current: EmbeddingColumns, answer: EmbeddingColumns) -> npt.NDArray[np.bool_]:
    """Where `answer` should replace `current` (same keys)."""
    cur, new = _RANK[current.status], _RANK[answer.status]
    both_found = (current.status == FOUND) & (answer.status == FOUND)
    out: npt.NDArray[np.bool_] = (new > cur) | (
        both_found & (answer.source_version > current.source_version)
    )
    return out


def merge(
    into: EmbeddingColumns, positions: npt.NDArray[np.int64], answer: EmbeddingColumns
) -> EmbeddingColumns:
    """`into` with the keys at `positions` replaced by `answer`'s where it is
    better (`answer` holds `len(positions)` keys, in that order)."""
    here = better_mask(take(into, positions), answer)
    if not here.any():
        return into
    rows, src = positions[here], np.flatnonzero(here)
    status, vectors = into.status.copy(), into.vectors.copy()
    sv, created, norm = into.source_version.copy(), into.created_at.copy(), into.norm.copy()
    status[rows] = answer.status[src]
    if answer.vectors.shape[1]:
        vectors[rows] = answer.vectors[src]
    sv[rows], created[rows] = answer.source_version[src], answer.created_at[src]
    norm[rows] = answer.norm[src]
    code = {v: i for i, v in enumerate(into.model_versions)}
    remap = _join_versions(code, answer.model_versions)
    versions = list(code)
    mv = into.model_version_index.copy()
    mv[rows] = remap[answer.model_version_index[src]]
    attrs = None
    if into.attributes_json is not None or answer.attributes_json is not None:
        attrs = list(into.attributes_json or [""] * len(into))
        for r, s in zip(rows.tolist(), src.tolist(), strict=True):
            attrs[r] = (answer.attributes_json or [""] * len(answer))[s]
    return EmbeddingColumns(status, vectors, sv, created, norm, versions, mv, attrs)


def _join_versions(code: dict[str, int], versions: Sequence[str]) -> np.ndarray:
    """Adds an answer's model versions to a version table (`code`: version
    → index, in order of first appearance); the answer's version index →
    the table's, with -1 (no version) kept as -1."""
    return np.array([code.setdefault(v, len(code)) for v in versions] + [-1])


def take(c: EmbeddingColumns, rows: npt.NDArray[np.int64] | slice) -> EmbeddingColumns:
    """The keys at `rows` (a slice: views, no copy); the version table shared."""
    attrs = c.attributes_json
    if attrs is not None:
        attrs = attrs[rows] if isinstance(rows, slice) else [attrs[i] for i in rows.tolist()]
    return EmbeddingColumns(
        c.status[rows],
        c.vectors[rows],
        c.source_version[rows],
        c.created_at[rows],
        c.norm[rows],
        c.model_versions,
        c.model_version_index[rows],
        attrs,
    )


def blank(c: EmbeddingColumns, mask: npt.NDArray[np.bool_], status: int) -> EmbeddingColumns:
    """`c` with the keys where `mask` set to `status` and nothing else."""
    if not mask.any():
        return c
    out = EmbeddingColumns(
        np.where(mask, np.uint8(status), c.status).astype(np.uint8),
        np.where(mask[:, None], np.float32(0), c.vectors).astype(np.float32),
        np.where(mask, 0, c.source_version),
        np.where(mask, 0, c.created_at),
        np.where(mask, np.float32(0), c.norm).astype(np.float32),
        c.model_versions,
        np.where(mask, -1, c.model_version_index).astype(np.int32),
        None
        if c.attributes_json is None
        else ["" if m else a for a, m in zip(c.attributes_json, mask.tolist(), strict=True)],
    )
    return out


def expire(c: EmbeddingColumns, ttl_seconds: int, now_us: int) -> EmbeddingColumns:
    """Records created before the TTL read as missing (session embeddings,
    a family's retention), before the shards delete them."""
    if not ttl_seconds:
        return c
    old = (c.status == FOUND) & (c.created_at < now_us - ttl_seconds * 1_000_000)
    return blank(c, old, MISSING)


def reconcile(
    parts: Sequence[tuple[npt.NDArray[np.int64], EmbeddingColumns]], keys: int, dimension: int
) -> EmbeddingColumns:
    """One answer per key from answers for some key positions each (which
    may overlap: `merge` keeps the better); a key nobody answered for is
    unavailable."""
    if _disjoint(parts):
        return _scatter(parts, keys, dimension)
    out = unanswered(keys, dimension, status=0)
    for positions, answer in parts:
        out = merge(out, positions, answer)
    return blank(out, out.status == 0, UNAVAILABLE)


def _disjoint(parts: Sequence[tuple[npt.NDArray[np.int64], EmbeddingColumns]]) -> bool:
    """Whether each key was answered once (hash placement: one shard per
    bucket) and without attributes: then `merge` has nothing to choose."""
    if not parts or any(a.attributes_json is not None for _, a in parts):
        return False
    at = np.concatenate([p for p, _ in parts])
    return bool(np.unique(at).shape[0] == at.shape[0])


def _scatter(
    parts: Sequence[tuple[npt.NDArray[np.int64], EmbeddingColumns]], keys: int, dimension: int
) -> EmbeddingColumns:
    """`reconcile` of disjoint answers: each written at its positions once,
    not merged into a copy of the whole answer per part. The same result,
    model version table included (a part's versions join it, in order, when
    it answered a key)."""
    out = unanswered(keys, dimension, status=0)
    code: dict[str, int] = {}
    for positions, a in parts:
        if not (a.status != 0).any():
            continue
        remap = _join_versions(code, a.model_versions)
        out.status[positions] = a.status
        if a.vectors.shape[1]:
            out.vectors[positions] = a.vectors
        out.source_version[positions] = a.source_version
        out.created_at[positions] = a.created_at
        out.norm[positions] = a.norm
        out.model_version_index[positions] = remap[a.model_version_index]
    scattered = replace(out, model_versions=list(code))
    return blank(scattered, scattered.status == 0, UNAVAILABLE)
