"""Typed parameters of each index kind, validated against the family's dimension.

`IndexVersion.params` is a free-form mapping (it travels through etcd as JSON);
this module is the one place that says which keys each kind takes, their
defaults and their valid ranges, so a shard and the registry reject the same
bad values with the same message instead of failing deep inside hnswlib/faiss.

    flat    refine_factor (unused, accepted for symmetry: exact search is exact)
    hnsw    M, ef_construction, ef_search, refine_factor, seed
    ivfpq   nlist, m, nbits, nprobe, refine_factor, train_size, train_iterations, seed

Why `refine_factor` everywhere: approximate candidates are always rescored
exactly against the stored float32 vectors; the factor says how many
candidates per requested result the index hands to that rescoring (HNSW hands
over max(ef_search, k * refine_factor); IVF-PQ k * refine_factor).

Stated parameters (issue 4 acceptance, tests/test_shard_recall.py: 100,000 x
128 Gaussian-mixture vectors, 100 clusters, seed 4, L2, through a shard
process, recall@10 against exact float64 search):

    hnsw   M=16, ef_construction=100, ef_search=64                    recall ≈ 0.987
    ivfpq  nlist=256, m=32, nbits=8, nprobe=16, refine_factor=10,
           train_size=10000                                            recall ≈ 0.99

and 1.0 for both under a 1%-selective filter (the planner scans the allowed
rows exactly) and under a 20% one (the filter is pushed into the index).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import InvalidArgument
from registry.model import IndexKind

# faiss warns below 39 training points per centroid; we refuse to train with fewer.
MIN_POINTS_PER_CENTROID = 39


@dataclass(frozen=True)
class FlatParams:
    refine_factor: int = 1


@dataclass(frozen=True)
class HnswParams:
    M: int = 16  # noqa: N815 - hnswlib's and the literature's name
    ef_construction: int = 100
    ef_search: int = 64
    refine_factor: int = 1
    # Graph construction seed (with one build thread the graph is reproducible).
    seed: int = 100


@dataclass(frozen=True)
class IvfPqParams:
    nlist: int = 256
    # Sub-quantizers; 0 = the largest divisor of the dimension ≤ dimension/4
    # (4 dimensions per byte of code, which keeps recall after rerank high).
    m: int = 0
    nbits: int = 8
    nprobe: int = 16
    refine_factor: int = 10
    # Training sample size; 0 = max(10,000, the minimum for nlist and 2^nbits).
    train_size: int = 0
    train_iterations: int = 10
    # Seed of the training sample and of k-means.
    seed: int = 0

    @property
    def min_train_rows(self) -> int:
        """Fewest vectors the quantizer and codebooks may be trained on."""
        return MIN_POINTS_PER_CENTROID * max(self.nlist, 1 << self.nbits)


IndexParams = FlatParams | HnswParams | IvfPqParams

_CLASSES: dict[IndexKind, type[IndexParams]] = {
    IndexKind.FLAT: FlatParams,
    IndexKind.HNSW: HnswParams,
    IndexKind.IVFPQ: IvfPqParams,
}

# (lowest, highest) accepted value of each integer parameter.
_RANGES: dict[str, tuple[int, int]] = {
    "refine_factor": (1, 1000),
    "M": (2, 256),
    "ef_construction": (1, 100_000),
    "ef_search": (1, 100_000),
    "nlist": (1, 1 << 20),
    "m": (0, 4096),
    "nbits": (1, 16),
    "nprobe": (1, 1 << 20),
    "train_size": (0, 1 << 28),
    "train_iterations": (1, 1000),
    "seed": (0, 2**31 - 1),
}


def _default_m(dimension: int) -> int:
    cap = max(1, dimension // 4)
    return max(d for d in range(1, cap + 1) if dimension % d == 0)


def parse_index_params(kind: IndexKind, params: Mapping[str, Any], dimension: int) -> IndexParams:
    """The typed parameters of an index version, or InvalidArgument naming the bad key."""
    cls = _CLASSES[kind]
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise InvalidArgument(
            f"index params for kind {kind.value!r}: unknown key(s) {unknown}; "
            f"expected some of {names}"
        )
    values: dict[str, int] = {}
    for name, raw in params.items():
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise InvalidArgument(
                f"index params for kind {kind.value!r}: {name}={raw!r}, expected an integer"
            )
        lo, hi = _RANGES[name]
        if not lo <= raw <= hi:
            raise InvalidArgument(
                f"index params for kind {kind.value!r}: {name}={raw}, expected {lo}..{hi}"
            )
        values[name] = raw
    parsed = cls(**values)
    if isinstance(parsed, IvfPqParams):
        parsed = _complete_ivfpq(parsed, dimension)
    return parsed


def _complete_ivfpq(p: IvfPqParams, dimension: int) -> IvfPqParams:
    m = p.m or _default_m(dimension)
    if dimension % m:
        raise InvalidArgument(
            f"index params for kind 'ivfpq': m={m} must divide the dimension {dimension}"
        )
    if p.nprobe > p.nlist:
        raise InvalidArgument(
            f"index params for kind 'ivfpq': nprobe={p.nprobe} exceeds nlist={p.nlist}"
        )
    p = dataclasses.replace(p, m=m)
    train = p.train_size or max(10_000, p.min_train_rows)
    if train < p.min_train_rows:
        raise InvalidArgument(
            f"index params for kind 'ivfpq': train_size={train} is below "
            f"{p.min_train_rows} ({MIN_POINTS_PER_CENTROID} x max(nlist, 2^nbits))"
        )
    return dataclasses.replace(p, train_size=train)
