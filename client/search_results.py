"""What a search answers, as the SDK returns it: `Hit`s for `search`, arrays
(`core.hits_wire.HitColumns`) for `search_batch` — one `SearchResponse` type,
read from the wire by one function per part."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from core.domain import EntityKey
from core.hits_wire import HitColumns, packed_hits_from_pb
from core.wire import key_from_pb
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb

METRIC_NAMES = {cpb.INNER_PRODUCT: "inner_product", cpb.COSINE: "cosine", cpb.L2: "l2"}


@dataclass(frozen=True)
class Hit:
    key: EntityKey
    score: float
    rank: int
    shard_id: str


H = TypeVar("H", list[Hit], HitColumns)


@dataclass(frozen=True)
class SearchResponse(Generic[H]):
    """A search's answer. `search` gives its hits as `Hit` objects
    (`SearchResponse[list[Hit]]`); `search_batch` as arrays
    (`SearchResponse[HitColumns]`: `hits.scores` float32, `hits.entity_ids`,
    `hits.tenant_ids`, `hits.entity_types`, `hits.shard_ids`, hit i being
    rank i; `hits.keys` builds `EntityKey`s)."""

    hits: H
    route: str
    bundle: str
    index: str
    embedding: str
    metric: str
    diagnostics: Mapping[str, float | str]
    # Some buckets did not answer in time: hits are the best of the rest.
    partial: bool = False
    missing_buckets: tuple[int, ...] = ()
    completeness: float = 1.0
    # Pass as `cursor=` for the next page; empty on the last page.
    next_cursor: str = ""


def response_fields(r: pb.SearchResponse) -> dict[str, Any]:
    """Everything of a search's answer but its hits, as the SDK's response
    types name it."""
    d = r.diagnostics
    return {
        "route": r.route,
        "bundle": r.bundle,
        "index": f"{r.index_name}@{r.index_version}",
        "embedding": f"{r.embedding_name}@{r.embedding_version}",
        "metric": METRIC_NAMES.get(r.metric, "unspecified"),
        "diagnostics": {
            "resolve_ms": d.resolve_ms,
            "fanout_ms": d.fanout_ms,
            "merge_ms": d.merge_ms,
            "shards_searched": d.shards_searched,
            "shards_skipped": d.shards_skipped,
            "candidates": d.candidates,
            "hedges_fired": d.hedges_fired,
            "arm": d.arm,
        },
        "partial": r.partial,
        "missing_buckets": tuple(r.missing_buckets),
        "completeness": r.completeness,
        "next_cursor": r.next_cursor,
    }


def hit_list(r: pb.SearchResponse) -> list[Hit]:
    """A response's hits as `Hit`s, packed or not (a coalesced search asks
    for packed hits: the coordinator builds no message per hit)."""
    if r.HasField("packed_hits"):
        c = packed_hits_from_pb(r.packed_hits)
        return list(map(Hit, c.keys, c.scores.tolist(), range(len(c)), c.shard_ids))
    return [Hit(key_from_pb(h.key), h.score, h.rank, h.shard_id) for h in r.hits]


def hit_columns(r: pb.SearchResponse) -> HitColumns:
    """A response's hits as arrays, packed or not: a coordinator from before
    packed hits ignores the request for them and answers a message per hit."""
    if r.HasField("packed_hits"):
        return packed_hits_from_pb(r.packed_hits)
    return HitColumns(
        scores=np.array([h.score for h in r.hits], dtype=np.float32),
        entity_ids=[h.key.entity_id for h in r.hits],
        tenant_ids=[h.key.tenant_id for h in r.hits],
        entity_types=[h.key.entity_type for h in r.hits],
        shard_ids=[h.shard_id for h in r.hits],
    )
