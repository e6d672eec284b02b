"""`RetrievalClient.search_batch` against a stand-in transport: answer i is
row i's, and an answer that cannot be matched to the rows is refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from client.retrieval_client import RetrievalClient, RouteInfo
from core.errors import Internal
from protos.vecshard.v1 import retrieval_pb2 as pb

ROUTE = RouteInfo(
    route="r",
    bundle="b",
    index="ix@v1",
    embedding="e@v1",
    query_embedding="e@v1",
    dimension=4,
    metric="inner_product",
    max_k=100,
    attributes={},
)


def stand_in(monkeypatch: pytest.MonkeyPatch, answers: int | None) -> list[pb.SearchBatchRequest]:
    """Each SearchBatch call is answered with `answers` responses (None: one
    per query, each naming its query by `route`)."""
    sent: list[pb.SearchBatchRequest] = []

    def rpc(self: RetrievalClient, name: str, request: Any, *args: Any, **kw: Any) -> Any:
        assert name == "SearchBatch"
        sent.append(request)
        n = len(request.requests) if answers is None else answers
        resp = pb.SearchBatchResponse()
        for i in range(n):
            resp.responses.add(route=f"call{len(sent)}-q{i}").packed_hits.SetInParent()
        return resp

    monkeypatch.setattr(RetrievalClient, "_rpc", rpc)
    monkeypatch.setattr(RetrievalClient, "describe_route", lambda self, *a, **kw: ROUTE)
    return sent


def test_answers_come_back_in_row_order_across_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = stand_in(monkeypatch, None)
    with RetrievalClient("127.0.0.1:1", purpose="p", coalescing=None) as c:
        out = c.search_batch("r", np.eye(4, dtype=np.float32)[[0, 1, 2]], k=5, searches_per_call=2)
    assert [len(r.requests) for r in sent] == [2, 1]
    assert [a.route for a in out] == ["call1-q0", "call1-q1", "call2-q0"]


@pytest.mark.parametrize("answers", [2, 4, 0])
def test_an_answer_of_another_length_is_refused(
    monkeypatch: pytest.MonkeyPatch, answers: int
) -> None:
    # Returned as is, the caller's row i no longer matched answer i.
    stand_in(monkeypatch, answers)
    refused = pytest.raises(Internal, match=f"3 queries .* with {answers} responses; expected one")
    with RetrievalClient("127.0.0.1:1", purpose="p", coalescing=None) as c, refused:
        c.search_batch("r", np.eye(4, dtype=np.float32)[:3], k=5)
