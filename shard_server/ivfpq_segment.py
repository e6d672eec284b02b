"""The IVF-PQ index of a sealed segment (faiss), and the trained template
every segment of an index version shares.

The coarse quantizer and the PQ codebooks are trained once per index version
(`IvfPqTemplate.train`, on a seeded sample) and persisted; each segment is a
clone of the empty trained template with its own rows added (labels = row
numbers). So sealing and compaction never retrain, and segments of one index
version encode vectors the same way. PQ scores are approximate: the segment
reranks `k * refine_factor` candidates exactly.

GPU: with `use_gpu` and faiss reporting a device, unfiltered searches run on a
GPU copy of the segment's index; filtered searches (IDSelector) and every
build stay on the CPU, which is the default and the path CI tests.

Threads: faiss parallelizes with OpenMP, whose thread count is a setting of
each thread, not of the process: a thread that never set it starts at
OpenMP's default, one per core. A shard calls faiss from gRPC worker threads
(searches), the maintenance thread (training, adding, summaries) and the
recall sampler, so a count set once where the shard was constructed held in
none of them — every IVF-PQ query forked a team of one thread per core, and
builds ignored `build_threads`. So every entry point into faiss sets the
count of the thread it runs in (`set_faiss_threads`, a thread-local store).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np

from core.domain import Metric
from registry.index_params import IvfPqParams
from shard_server.segment import SearchOptions

# faiss's generated type stubs miss much of its Python API (search
# parameters, GPU helpers); it is used untyped here.
faiss: Any = _faiss


# One query runs on one thread: concurrent requests (gRPC workers) bring the
# parallelism, and an OpenMP team per query costs more CPU than it saves time.
SEARCH_THREADS = 1


def set_faiss_threads(threads: int) -> None:
    """Sets faiss's OpenMP thread count for the calling thread only (see the
    module docstring: a count set in another thread does not hold here)."""
    faiss.omp_set_num_threads(threads)


def _faiss_metric(metric: Metric) -> int:
    return faiss.METRIC_L2 if metric is Metric.L2 else faiss.METRIC_INNER_PRODUCT


def gpu_available() -> bool:
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def _to_gpu(index: Any) -> Any:
    """A GPU copy of a CPU index (only reached when gpu_available())."""
    resources = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(resources, 0, index)
    gpu.referenced_objects = [resources]  # the GPU index must not outlive its resources
    return gpu


@dataclass(frozen=True, eq=False)
class IvfPqTemplate:
    """A trained, empty IndexIVFPQ: quantizer and codebooks of one index version."""

    index: Any
    params: IvfPqParams
    metric: Metric

    @classmethod
    def train(
        cls, vectors: np.ndarray, metric: Metric, params: IvfPqParams, threads: int = 1
    ) -> IvfPqTemplate:
        n, dim = vectors.shape
        if n < params.min_train_rows:
            raise ValueError(f"IVF-PQ training needs ≥ {params.min_train_rows} vectors, got {n}")
        rng = np.random.default_rng(params.seed)
        sample = vectors[np.sort(rng.choice(n, size=min(n, params.train_size), replace=False))]
        quantizer = faiss.IndexFlatL2(dim) if metric is Metric.L2 else faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(
            quantizer, dim, params.nlist, params.m, params.nbits, _faiss_metric(metric)
        )
        # Polysemous training is only for Hamming-distance search, which we do
        # not use, and it costs more than the rest of training together.
        index.do_polysemous_training = False
        index.cp.niter = params.train_iterations
        index.cp.seed = params.seed
        index.pq.cp.niter = params.train_iterations
        index.pq.cp.seed = params.seed
        set_faiss_threads(threads)
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        return cls(faiss.clone_index(index), params, metric)

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, dim: int, metric: Metric, params: IvfPqParams) -> IvfPqTemplate:
        index = faiss.read_index(str(path))
        _check(index, dim, params, path)
        if index.ntotal != 0:
            raise ValueError(f"{path}: template holds {index.ntotal} vectors, expected none")
        return cls(index, params, metric)


def _check(index: Any, dim: int, params: IvfPqParams, path: Path) -> None:
    if not index.is_trained or index.d != dim or index.nlist != params.nlist:
        raise ValueError(
            f"{path}: IVF-PQ index (d={index.d}, nlist={index.nlist}, trained={index.is_trained}) "
            f"does not match dimension {dim} and nlist {params.nlist}"
        )


class IvfPqIndex:
    kind = "ivfpq"

    def __init__(self, index: Any, params: IvfPqParams, metric: Metric, use_gpu: bool) -> None:
        self._index = index
        self.params = params
        self.metric = metric
        self._gpu = _to_gpu(index) if use_gpu and gpu_available() else None

    @classmethod
    def build(cls, template: IvfPqTemplate, vectors: np.ndarray, use_gpu: bool) -> IvfPqIndex:
        index = faiss.clone_index(template.index)
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index, template.params, template.metric, use_gpu)

    @classmethod
    def load(
        cls, path: Path, dim: int, rows: int, metric: Metric, params: IvfPqParams, use_gpu: bool
    ) -> IvfPqIndex:
        index = faiss.read_index(str(path))
        _check(index, dim, params, path)
        if index.ntotal != rows:
            raise ValueError(f"{path}: holds {index.ntotal} vectors, expected {rows}")
        return cls(index, params, metric, use_gpu)

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    def nbytes(self) -> int:
        return int(self._index.ntotal) * (self.params.m * self.params.nbits // 8 + 8)

    def coarse_assignment(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The IVF centroids and the list each vector falls in (for the summary)."""
        quantizer = self._index.quantizer
        centroids = quantizer.reconstruct_n(0, self._index.nlist)
        _, lists = quantizer.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
        return np.asarray(centroids, dtype=np.float32), lists[:, 0].astype(np.int64)

    def search(
        self,
        query: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        allowed_count: int,
        options: SearchOptions,
        boost: float,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        nprobe = options.nprobe or self.params.nprobe
        # A filter leaves ~selectivity of each probed list: probe more lists.
        nprobe = min(self.params.nlist, math.ceil(nprobe * boost))
        refine = options.refine_factor or self.params.refine_factor
        n = min(k * refine, allowed_count)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        set_faiss_threads(SEARCH_THREADS)
        if allowed is None:
            index = self._gpu if self._gpu is not None else self._index
            dist, labels = index.search(q, n, params=faiss.SearchParametersIVF(nprobe=nprobe))
        else:
            packed = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(packed), faiss.swig_ptr(packed))
            params = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector)
            dist, labels = self._index.search(q, n, params=params)
        found = labels[0] >= 0
        rows = labels[0][found].astype(np.int64)
        d = dist[0][found].astype(np.float64)
        scores = -np.sqrt(np.maximum(d, 0.0)) if self.metric is Metric.L2 else d
        return rows, scores.astype(np.float32)

    def rescore_window(
        self, queries: np.ndarray, kth: np.ndarray, max_norm: float
    ) -> np.ndarray | None:
        """None: product-quantized scores carry no usable error bound, so
        every candidate is rescored (what the refine factor asks for)."""
        return None

    def search_many(
        self, queries: np.ndarray, k: int, allowed_count: int, options: SearchOptions
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """`search` without a filter for a matrix of queries in one faiss
        call: (rows, scores), one row per query; None when some query got
        fewer candidates than asked (the caller then searches it alone)."""
        nprobe = min(self.params.nlist, options.nprobe or self.params.nprobe)
        refine = options.refine_factor or self.params.refine_factor
        n = min(k * refine, allowed_count)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        set_faiss_threads(SEARCH_THREADS)
        index = self._gpu if self._gpu is not None else self._index
        dist, labels = index.search(q, n, params=faiss.SearchParametersIVF(nprobe=nprobe))
        if (labels < 0).any():
            return None
        d = dist.astype(np.float64)
        scores = -np.sqrt(np.maximum(d, 0.0)) if self.metric is Metric.L2 else d
        return labels.astype(np.int64), scores.astype(np.float32)
