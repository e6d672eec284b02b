"""The in-process baselines: the same index libraries the shards use, called directly.

The figure users compare is cluster ÷ in-process at equal recall: what the network, the
coordinator and sharding cost over the bare library on the same vectors. So each baseline
is the library alone with one query per call (as the coordinator sends them): numpy for
exact search, hnswlib for HNSW, faiss IVF-PQ with an exact float32 rerank of
``refine_factor * k`` candidates (the shard always reranks IVF-PQ candidates exactly).
Parameter names and defaults are the shard's (``registry/index_params.py``).

Build threads use every core; search threads are set by the caller; each index library
runs one query on one thread, so N caller threads use N cores, like N concurrent requests
through the cluster. faiss's OpenMP thread count is a setting of each thread (a thread that
never set it forks one OpenMP thread per core), so the IVF-PQ baseline pins it to 1 in the
thread that searches, on every search, not where the index was built.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray


class InProcessIndex(Protocol):
    kind: str

    def set_search_param(self, value: int | None) -> None:
        """Sets the sweep parameter (ef_search, nprobe); ``None`` for kinds without one."""
        ...

    def search(self, query: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        """Row ids of the top-k, best first, for one query."""
        ...


def _normalized(x: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.where(norms == 0, 1, norms)).astype(np.float32)


class NumpyFlat:
    """Exact search with one float32 matrix-vector product per query."""

    kind = "flat"

    def __init__(self, base: NDArray[np.float32], metric: str) -> None:
        self.metric = metric
        self.base = _normalized(base) if metric == "cosine" else np.ascontiguousarray(base)
        self.sq_norms = (self.base.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)

    def set_search_param(self, value: int | None) -> None:
        if value is not None:
            raise ValueError("flat search has no search parameter")

    def search(self, query: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        q = _normalized(query) if self.metric == "cosine" else query
        products = self.base @ q
        # Smaller is better: squared distance up to the constant |q|^2, or -similarity.
        dist = self.sq_norms - 2 * products if self.metric == "l2" else -products
        top = np.argpartition(dist, k - 1)[:k] if k < len(dist) else np.arange(len(dist))
        return top[np.argsort(dist[top], kind="stable")].astype(np.int64)


class Hnswlib:
    """hnswlib HNSW; ``ef_search`` is the sweep parameter."""

    kind = "hnsw"

    def __init__(
        self, base: NDArray[np.float32], metric: str, params: Mapping[str, Any], threads: int
    ) -> None:
        import hnswlib

        space = {"l2": "l2", "inner_product": "ip", "cosine": "cosine"}[metric]
        self.index = hnswlib.Index(space=space, dim=base.shape[1])
        self.index.init_index(
            max_elements=len(base),
            M=int(params.get("M", 16)),
            ef_construction=int(params.get("ef_construction", 200)),
            random_seed=int(params.get("seed", 100)),
        )
        self.index.add_items(base, np.arange(len(base)), num_threads=threads)
        self.set_search_param(int(params.get("ef_search", 64)))

    def set_search_param(self, value: int | None) -> None:
        if value is None:
            raise ValueError("hnsw needs ef_search")
        self.index.set_ef(int(value))

    def search(self, query: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        labels, _ = self.index.knn_query(query[None, :], k=k, num_threads=1)
        ids: NDArray[np.int64] = labels[0].astype(np.int64)  # hnswlib is untyped
        return ids


class FaissIvfPq:
    """faiss IVF-PQ plus an exact rerank of ``refine_factor * k`` candidates; ``nprobe`` swept.

    Trained like the shard trains its per-index-version template: a seeded sample of
    ``max(10,000, 39 * max(nlist, 2**nbits))`` rows, ``train_iterations`` k-means rounds,
    no polysemous training.
    """

    kind = "ivfpq"

    def __init__(
        self, base: NDArray[np.float32], metric: str, params: Mapping[str, Any], threads: int
    ) -> None:
        import faiss

        dim = base.shape[1]
        data = _normalized(base) if metric == "cosine" else np.ascontiguousarray(base)
        self.metric = metric
        faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        nlist = int(params.get("nlist", 256))
        m = int(params.get("m", 0)) or pq_subquantizers(dim)
        nbits = int(params.get("nbits", 8))
        seed = int(params.get("seed", 0))
        iterations = int(params.get("train_iterations", 10))
        quantizer = faiss.IndexFlatL2(dim) if metric == "l2" else faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits, faiss_metric)
        ivf.do_polysemous_training = False  # type: ignore[attr-defined]  # SWIG attribute, not in faiss's stub
        ivf.cp.niter = ivf.pq.cp.niter = iterations
        ivf.cp.seed = ivf.pq.cp.seed = seed
        faiss.omp_set_num_threads(threads)
        train_rows = int(params.get("train_size", 0)) or max(10_000, 39 * max(nlist, 2**nbits))
        rng = np.random.default_rng(seed)
        sample = data[
            np.sort(rng.choice(len(data), size=min(len(data), train_rows), replace=False))
        ]
        ivf.train(sample)
        self._keep = (quantizer, ivf)  # the refine wrapper does not own them
        self.ivf = ivf
        # Adding through the wrapper fills both the IVF-PQ codes and the exact vectors.
        self.index = faiss.IndexRefineFlat(ivf)
        self.index.add(data)
        self.index.k_factor = float(params.get("refine_factor", 10))
        self.set_search_param(int(params.get("nprobe", 16)))
        self._set_threads = faiss.omp_set_num_threads

    def set_search_param(self, value: int | None) -> None:
        if value is None:
            raise ValueError("ivfpq needs nprobe")
        self.ivf.nprobe = int(value)

    def search(self, query: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        q = _normalized(query) if self.metric == "cosine" else query
        # One query per call: an OpenMP team would only add overhead; callers bring threads.
        # Set here, in the caller's thread: the count set in the building thread holds there
        # only (a thread-local store, ~0.2 µs).
        self._set_threads(1)
        _, labels = self.index.search(q[None, :], k)
        ids: NDArray[np.int64] = labels[0].astype(np.int64)  # numpy types [0] as Any
        return ids


def pq_subquantizers(dim: int) -> int:
    """Largest divisor of ``dim`` not above ``dim / 4`` (4 dimensions per code byte), the
    shard's default, which keeps recall after the exact rerank high."""
    return max(d for d in range(1, max(1, dim // 4) + 1) if dim % d == 0)


def build(
    kind: str, base: NDArray[np.float32], metric: str, params: Mapping[str, Any], threads: int
) -> tuple[InProcessIndex, float]:
    """The baseline index for ``kind`` and the seconds its build took."""
    t0 = time.perf_counter()
    index: InProcessIndex
    if kind == "flat":
        index = NumpyFlat(base, metric)
    elif kind == "hnsw":
        index = Hnswlib(base, metric, params, threads)
    elif kind == "ivfpq":
        index = FaissIvfPq(base, metric, params, threads)
    else:
        raise ValueError(f"unknown index kind {kind!r}; expected flat, hnsw or ivfpq")
    return index, time.perf_counter() - t0
