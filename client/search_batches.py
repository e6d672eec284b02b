"""Many searches at once: `RetrievalClient.search_batch`.

A matrix of query vectors goes out as `SearchBatch` calls asking for packed
hits (`PackedHits`: scores as one float32 array, ids as one blob), so a
caller with hundreds of queries pays neither a round trip per query nor an
object per hit on the wire; each answer's hits come back as arrays
(`core.hits_wire.HitColumns`). `search` stays the one-query form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from client.arguments import float_vectors, integer, text
from client.connection import ClientCalls
from client.search_results import SearchResponse, hit_columns, response_fields
from core.errors import Internal, InvalidArgument
from core.filters import Filter
from core.hits_wire import HitColumns
from core.vectors import to_bytes
from core.wire import filter_to_pb
from protos.vecshard.v1 import retrieval_pb2 as pb

# The coordinator's default limit on searches per request
# (limits.max_searches_per_request); larger batches go in several calls.
DEFAULT_SEARCHES_PER_CALL = 256


class SearchBatches(ClientCalls):
    """`search_batch`, mixed into RetrievalClient."""

    def describe_route(
        self, route: str, *, refresh: bool = False, timeout: float | None = None
    ) -> Any:
        raise NotImplementedError

    def search_batch(
        self,
        route: str,
        vectors: np.ndarray | Sequence[Sequence[float]],
        k: int = 10,
        *,
        filter: Filter | None = None,  # noqa: A002 - the natural name for callers
        timeout: float | None = None,
        require_complete: bool = False,
        skip_rerank: bool = False,
        searches_per_call: int = DEFAULT_SEARCHES_PER_CALL,
    ) -> list[SearchResponse[HitColumns]]:
        """Row i of `vectors` searched as `search` would (same route, k and
        filter for all), answer i for row i, its hits as arrays (see
        `SearchResponse`). `timeout` applies to each call of up to
        `searches_per_call` queries."""
        info = self.describe_route(text(route, "route"), timeout=timeout)
        matrix = float_vectors(vectors, "query vectors")
        if matrix.ndim != 2 or matrix.shape[1] != info.dimension:
            raise InvalidArgument(
                f"query vectors: shape {matrix.shape}, expected (queries, {info.dimension})"
            )
        if not np.isfinite(matrix).all():
            bad = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
            raise InvalidArgument(
                f"query vector {bad}: contains NaN or Inf, expected finite float32 values"
            )
        k = integer(k, "k")
        if not 1 <= k <= info.max_k:
            raise InvalidArgument(f"k={k!r}: expected an int in 1..{info.max_k}")
        if not isinstance(searches_per_call, int) or searches_per_call < 1:
            raise InvalidArgument(f"searches_per_call={searches_per_call!r}: expected an int ≥ 1")
        flt = filter_to_pb(filter)
        out: list[SearchResponse[HitColumns]] = []
        for lo in range(0, matrix.shape[0], searches_per_call):
            request = pb.SearchBatchRequest(
                requests=[
                    pb.SearchRequest(
                        route=route,
                        access=self.access,
                        query_vector=to_bytes(row),
                        k=k,
                        filter=flt,
                        require_complete=require_complete,
                        skip_rerank=skip_rerank,
                    )
                    for row in matrix[lo : lo + searches_per_call]
                ],
                packed_hits=True,
            )
            answers = self._rpc("SearchBatch", request, timeout).responses
            # Answers are matched to queries by position only: one missing or
            # extra would give every later row another query's hits.
            if len(answers) != len(request.requests):
                n = len(request.requests)
                raise Internal(
                    f"SearchBatch answered {n} queries (rows {lo} to {lo + n - 1}) with "
                    f"{len(answers)} responses; expected one response per query"
                )
            out.extend(SearchResponse(hits=hit_columns(r), **response_fields(r)) for r in answers)
        return out
