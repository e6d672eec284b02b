"""Every public data-plane RPC, fed mutations of a valid request through real
processes, answers with a status a caller can act on: OK or a client error
naming what was wrong — never INTERNAL, UNKNOWN or a dead server.

The valid requests are the SDK's own (recorded as it sends them); each
mutation changes one field of one: a bytes field cut, lengthened, emptied or
scrambled (the packed columns: vectors, times, values, validity, offsets), a
number at its extremes, a string emptied or odd, a repeated field one item
short or long. (Reading through what it accepted found feature rows stored
with times no clock gives — nanoseconds taken for microseconds — now refused
by `core.timestamps`.)
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import RetrievalClient
from core.filters import Range
from tests.conftest import ClusterFactory
from tests.specs import route_spec, tenant_docs

pytestmark = pytest.mark.integration

T0 = 1_800_000_000 * 1_000_000
SPEC = (Path(__file__).resolve().parent.parent / "deploy/examples/50-features.yaml").read_text()
ACTIONABLE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
}
NUMBERS: dict[int, list[Any]] = {
    FD.TYPE_BOOL: [True, False],
    FD.TYPE_DOUBLE: [float("nan"), float("inf"), -1.0, 1e308],
    FD.TYPE_FLOAT: [float("nan"), -1.0],
    FD.TYPE_ENUM: [0, 99],
    FD.TYPE_UINT32: [0, 2**32 - 1],
    FD.TYPE_INT32: [-1, 2**31 - 1, -(2**31)],
    FD.TYPE_INT64: [-1, 2**63 - 1, -(2**63)],
    FD.TYPE_UINT64: [2**64 - 1],
}
STRINGS = ["", "\x00", "x" * 600, "é\x1f:"]


def _copy(msg: Message) -> Message:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def _bytes_variants(raw: bytes, rng: random.Random) -> list[bytes]:
    out = [b"", raw[:-1], raw + b"\x00", raw[: len(raw) // 2], rng.randbytes(len(raw))]
    if len(raw) >= 8:
        out.append(np.full(len(raw) // 8, -1, np.int64).tobytes())  # all bits set
    return out


def mutations(msg: Message, rng: random.Random, path: str = "") -> Iterator[tuple[str, Message]]:
    """(what changed, a copy of `msg` with that one change)."""
    for fd in msg.DESCRIPTOR.fields:
        name = f"{path}{fd.name}"
        entry = fd.message_type
        if entry is not None and entry.GetOptions().map_entry:
            entries = getattr(msg, fd.name)
            if entry.fields_by_name["value"].type == FD.TYPE_MESSAGE:
                for key in sorted(entries)[:1]:
                    for what, sub in mutations(entries[key], rng, f"{name}[{key}]."):
                        c = _copy(msg)
                        getattr(c, fd.name)[key].CopyFrom(sub)
                        yield what, c
        elif fd.type == FD.TYPE_MESSAGE and fd.is_repeated:
            items = getattr(msg, fd.name)
            if len(items):
                for what, sub in mutations(items[0], rng, f"{name}[0]."):
                    c = _copy(msg)
                    getattr(c, fd.name)[0].CopyFrom(sub)
                    yield what, c
                c = _copy(msg)
                getattr(c, fd.name).add().CopyFrom(items[-1])
                yield f"{name}: one more", c
        elif fd.type == FD.TYPE_MESSAGE:
            if msg.HasField(fd.name):
                for what, sub in mutations(getattr(msg, fd.name), rng, f"{name}."):
                    c = _copy(msg)
                    getattr(c, fd.name).CopyFrom(sub)
                    yield what, c
        elif fd.is_repeated:
            items = getattr(msg, fd.name)
            if len(items):
                c = _copy(msg)
                del getattr(c, fd.name)[-1]
                yield f"{name}: one fewer", c
                c = _copy(msg)
                getattr(c, fd.name).append(items[-1])
                yield f"{name}: one more", c
        else:
            if fd.type == FD.TYPE_BYTES:
                values: list[Any] = _bytes_variants(getattr(msg, fd.name), rng)
            elif fd.type == FD.TYPE_STRING:
                values = STRINGS
            else:
                values = NUMBERS.get(fd.type, [-1])
            for v in values:
                c = _copy(msg)
                setattr(c, fd.name, v)
                yield f"{name}={v!r:.40}", c


@pytest.fixture(scope="module")
def cluster(make_module_cluster: ClusterFactory) -> LocalCluster:
    c = make_module_cluster(num_shards=2)
    attrs = {"genre": "string", "year": "int", "price": "float", "tags": "string_list"}
    with RegistryClient(c.coordinator_target) as reg:
        reg.apply(SPEC)
        reg.apply(tenant_docs())
        reg.apply(route_spec(dim=8, metric="cosine", family="fam", attributes=attrs))
    return c


def client(cluster: LocalCluster) -> RetrievalClient:
    return RetrievalClient(cluster.coordinator_target, tenant_id="acme", purpose="recommendation")


def recorded_requests(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, Message]]:
    """The SDK's requests for a write, searches, a lookup and feature calls."""
    seen: list[tuple[str, Message]] = []
    send = RetrievalClient._rpc

    def record(self: RetrievalClient, name: str, request: Any, *args: Any, **kw: Any) -> Any:
        first = request[0] if isinstance(request, list) else request  # a stream: its message
        seen.append((name, _copy(first)))
        return send(self, name, request, *args, **kw)

    monkeypatch.setattr(RetrievalClient, "_rpc", record)
    vectors = np.random.default_rng(1).normal(size=(20, 8)).astype(np.float32)
    ids = [f"i{i}" for i in range(20)]
    with client(cluster) as c:
        c.upsert_matrix(
            "fam",
            "v1",
            ids,
            vectors,
            attributes={"genre": ["a"] * 20, "year": list(range(20)), "tags": [("x",)] * 20},
        )
        c.search("r", vectors[0], k=5, filter=Range("year", gte=3))
        c.search_batch("r", vectors[:2], k=5)
        c.batch_get("fam", "v1", ids[:3])
        c.put_features("item_stats", "v1", [(("item", "x"), T0, {"item_ctr": 0.5})])
        c.put_features("user_profile", "v1", [(("user", "u1"), T0, {"age_bucket": "18-24"})])
        c.get_features("home_ranker", "v1", [("user", "u1"), ("item", "x")])
    monkeypatch.undo()
    return [(n, r) for n, r in seen if n != "DescribeRoute"]


def test_mutated_requests_get_an_actionable_status(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = recorded_requests(cluster, monkeypatch)
    assert {n for n, _ in requests} == {
        "UpsertColumns", "Search", "SearchBatch", "BatchGetEmbeddings", "PutFeatures",
        "GetFeatures",
    }  # fmt: skip
    rng = random.Random(7)
    codes: Counter[tuple[str, str]] = Counter()
    wrong: list[str] = []
    with client(cluster) as c:
        stub, metadata = c._stubs[0], c._conn.metadata
        for name, valid in requests:
            call = getattr(stub, name)
            streamed = name == "PutFeatures"
            for what, request in [("as sent", valid), *mutations(valid, rng)]:
                try:
                    call(iter([request]) if streamed else request, timeout=20, metadata=metadata)
                    code, detail = grpc.StatusCode.OK, ""
                except grpc.RpcError as exc:
                    code, detail = exc.code(), exc.details() or ""
                codes[(name, code.name)] += 1
                if code not in ACTIONABLE or (what == "as sent" and code != grpc.StatusCode.OK):
                    wrong.append(f"{name} {what}: {code.name} {detail[:200]}")
        assert not wrong, "\n".join(wrong)
        # Each RPC refused some mutation (the mutations reach its checks) ...
        refused = {n for (n, code), _ in codes.items() if code != "OK"}
        assert refused == {n for n, _ in requests}
        # ... and every server still answers.
        assert len(c.search("r", np.ones(8, np.float32), k=3).hits) == 3
