"""A batch of queries to one index partition, checked and prepared as one
matrix: the query-side counterpart of `row_batch`. Pure: numpy over plain
data; `IndexPartition.search` drives it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.errors import InvalidArgument
from core.filters import validate_filter
from core.scoring import prepare_queries
from core.vectors import check_vector
from registry.model import EmbeddingFamily, IndexVersion
from shard_server.model import Query


def prepared_queries(
    queries: Sequence[Query], family: EmbeddingFamily, index: IndexVersion, normalize: bool
) -> np.ndarray:
    """The batch's checks (the first bad query rejects it, named) and its
    vectors as one prepared float32 matrix."""
    dim, max_k = family.dimension, index.max_k
    for i, q in enumerate(queries):
        if q.vector.shape != (dim,):
            check_vector(q.vector, dim, what=f"query {i}")
        if q.k <= 0 or q.k > max_k:
            raise InvalidArgument(f"query {i}: k={q.k}, expected 1..{max_k}")
        if q.filter is not None:
            validate_filter(q.filter, index.attributes)
    matrix = np.stack([q.vector for q in queries])
    if not np.isfinite(matrix).all():
        bad = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        check_vector(queries[bad].vector, dim, what=f"query {bad}")
    return prepare_queries(matrix, family.metric, normalize)
