"""The requests a load test sends: kinds, their pools of pre-built requests, and the mix.

Every request is serialized once before the run, so the generator's per-request work is
picking a pool entry and handing bytes to gRPC; building protos on the hot path would make
the generator, not the server, the bottleneck at a few thousand requests per second.

Kinds are pluggable: ``search``, ``search_filtered`` and ``batch_get`` are built in, and any
RetrievalService RPC (GetFeatures once it exists) can join the mix from a proto-JSON
request file (``request_from_json``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import Message
from numpy.typing import NDArray

from benchmarks import retrieval_api
from core.filters import Filter
from core.vectors import to_bytes
from core.wire import filter_to_pb
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb


@dataclass(frozen=True)
class RequestKind:
    """One kind of request in the mix, e.g. unfiltered searches."""

    name: str
    rpc: str
    requests: tuple[bytes, ...]

    def __post_init__(self) -> None:
        retrieval_api.method(self.rpc)  # fail at set-up, not mid-run
        if not self.requests:
            raise ValueError(f"request kind {self.name!r} has no requests to send")

    @property
    def path(self) -> str:
        return retrieval_api.method_path(self.rpc)

    @property
    def partial_reader(self) -> type[Message] | None:
        return retrieval_api.partial_flag_reader(self.rpc)


@dataclass(frozen=True)
class RequestMix:
    """Kinds with relative weights; ``plan`` draws which request goes at each send time."""

    kinds: tuple[RequestKind, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.kinds or len(self.kinds) != len(self.weights):
            raise ValueError("a request mix needs one positive weight per kind, and a kind")
        if not all(math.isfinite(w) and w > 0 for w in self.weights):
            raise ValueError(f"mix weights must be positive, got {self.weights}")
        names = [k.name for k in self.kinds]
        if len(set(names)) != len(names):
            raise ValueError(f"request kinds must have distinct names, got {names}")

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.kinds]

    def plan(self, n: int, seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Per scheduled request: the kind's index and the request's index in its pool."""
        rng = np.random.default_rng(seed)
        p = np.asarray(self.weights, dtype=np.float64)
        kinds = rng.choice(len(self.kinds), size=n, p=p / p.sum())
        sizes = np.array([len(k.requests) for k in self.kinds], dtype=np.int64)
        picks = (rng.random(n) * sizes[kinds]).astype(np.int64)
        return kinds.astype(np.int64), picks


def parse_mix(text: str) -> dict[str, float]:
    """``"search=70,search_filtered=20,batch_get=10"`` → weights by kind name."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            weight = float(value) if sep else math.nan
        except ValueError:
            weight = math.nan
        if not name or not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"mix entry {part!r}: expected NAME=WEIGHT with a positive weight")
        if name in weights:
            raise ValueError(f"mix names {name!r} twice")
        weights[name] = weight
    if not weights:
        raise ValueError(f"mix {text!r} is empty; expected e.g. search=80,batch_get=20")
    return weights


def build_mix(weights: Mapping[str, float], available: Mapping[str, RequestKind]) -> RequestMix:
    missing = sorted(set(weights) - set(available))
    if missing:
        raise ValueError(
            f"the mix names {missing}, which this run cannot build; available kinds: "
            f"{sorted(available)}"
        )
    names = list(weights)
    return RequestMix(tuple(available[n] for n in names), tuple(weights[n] for n in names))


def access_context(tenant_id: str, purpose: str) -> cpb.AccessContext:
    return cpb.AccessContext(tenant_id=tenant_id, purpose=purpose, principal="vecshard-loadtest")


def search_requests(
    route: str,
    access: cpb.AccessContext,
    queries: NDArray[np.float32],
    k: int,
    filters: Sequence[Filter | None] = (None,),
) -> tuple[bytes, ...]:
    """One request per query, cycling through ``filters`` so every filter gets used."""
    if not filters:
        raise ValueError("filters must hold at least one entry (None means unfiltered)")
    pbs = [filter_to_pb(f) for f in filters]
    return tuple(
        pb.SearchRequest(
            route=route, access=access, query_vector=to_bytes(q), k=k, filter=pbs[i % len(pbs)]
        ).SerializeToString()
        for i, q in enumerate(queries)
    )


def batch_get_requests(
    access: cpb.AccessContext,
    embedding: tuple[str, str],
    entity_ids: Sequence[str],
    keys_per_request: int,
    n_requests: int,
    seed: int,
    include_vectors: bool = True,
) -> tuple[bytes, ...]:
    """Lookups of ``keys_per_request`` random ids each, as a ranking stage would send."""
    if not entity_ids:
        raise ValueError("batch_get needs entity ids to look up")
    if keys_per_request < 1:
        raise ValueError(f"keys_per_request must be >= 1, got {keys_per_request}")
    rng = np.random.default_rng(seed)
    ids = np.asarray(entity_ids, dtype=object)
    name, version = embedding
    return tuple(
        pb.BatchGetEmbeddingsRequest(
            access=access,
            embedding_name=name,
            embedding_version=version,
            keys=[cpb.EntityKey(entity_id=str(e)) for e in rng.choice(ids, keys_per_request)],
            include_vectors=include_vectors,
        ).SerializeToString()
        for _ in range(n_requests)
    )


def json_request_kind(
    name: str, rpc: str, bodies: Sequence[Mapping[str, object]], access: cpb.AccessContext
) -> RequestKind:
    """Any RetrievalService RPC from proto-JSON bodies (e.g. GetFeatures once it exists)."""
    fill = {"tenantId": access.tenant_id, "purpose": access.purpose}
    return RequestKind(
        name, rpc, tuple(retrieval_api.request_from_json(rpc, b, fill) for b in bodies)
    )
