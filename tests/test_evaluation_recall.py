"""Recall against exact search by segment kind, from the shards' answers to
the stored evaluation: each kind's recall over shards is weighted by the
(query, segment) pairs measured on that kind. It was weighted by each
shard's whole query count, and the pairs never crossed the public wire, so
a shard that measured a kind on a handful of queries weighed as much as one
that measured it on all of them."""

from __future__ import annotations

from typing import Any

import pytest

from client.evaluation_client import EvaluationClient
from coordinator.evaluation_convert import check_recall_response, shard_recall
from core.domain import VersionRef
from offline.evaluation import EvaluateJob, Evaluation
from protos.vecshard.v1.internal import shard_pb2 as spb
from registry.model import IndexVersion


def _shard(shard_id: str, kinds: list[tuple[str, int, float]]) -> spb.CheckRecallResponse:
    return spb.CheckRecallResponse(
        shard_id=shard_id,
        queries=100,
        recall=1.0,
        kinds=[spb.KindRecall(kind=k, queries=n, recall=r, rows=n) for k, n, r in kinds],
        rows=1000,
    )


def test_a_kinds_recall_is_weighted_by_the_queries_measured_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = [
        # A small HNSW segment met by 10 of this shard's 100 queries.
        _shard("a", [("hnsw", 10, 0.5), ("flat", 100, 1.0)]),
        _shard("b", [("hnsw", 90, 1.0)]),
    ]
    wire = check_recall_response([shard_recall(a) for a in answers])

    def rpc(self: EvaluationClient, name: str, request: Any, timeout: float | None) -> Any:
        assert name == "CheckRecall"
        return wire

    monkeypatch.setattr(EvaluationClient, "_rpc", rpc)
    index = IndexVersion("ix", "v1", VersionRef("items", "v1"))
    ev = EvaluationClient("127.0.0.1:1")
    try:
        shards = ev.check_recall("ix@v1", 10, 100)
        assert [s.queries_by_kind for s in shards] == [{"hnsw": 10, "flat": 100}, {"hnsw": 90}]
        measured = Evaluation("127.0.0.1:1", EvaluateJob(index.ref))._recall_vs_exact(ev, index, 10)
    finally:
        ev.close()
    # (0.5 x 10 + 1.0 x 90) / 100, not (0.5 x 100 + 1.0 x 100) / 200.
    assert measured["recall_by_segment_kind"] == {
        "hnsw": pytest.approx(0.95),
        "flat": pytest.approx(1.0),
    }
