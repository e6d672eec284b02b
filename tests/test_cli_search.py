"""`vecshard search` against a stand-in SDK client: what it prints and how it
exits for a complete and for a partial answer, and what it asks the SDK for."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from cli import query_commands
from cli.main import main
from client.search_results import Hit, SearchResponse
from core.domain import EntityKey

SEARCH = ["search", "--coordinator", "127.0.0.1:1", "--tenant", "t", "--purpose", "p"]
SEARCH += ["--route", "r", "--vector", "1,0,0,0"]


@dataclass
class StandInClient:
    """Answers every search with `answer`; records what it was asked."""

    answer: SearchResponse[list[Hit]]
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __enter__(self) -> StandInClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def search(self, route: str, vector: np.ndarray, k: int, **kw: Any) -> Any:
        self.calls.append({"route": route, "k": k, **kw})
        return self.answer


def answer(*, partial: bool) -> SearchResponse[list[Hit]]:
    hit = Hit(EntityKey("t", "item", "a"), 1.0, 0, "s0")
    return SearchResponse(
        hits=[hit],
        route="r",
        bundle="b",
        index="ix@v1",
        embedding="e@v1",
        metric="inner_product",
        diagnostics={},
        partial=partial,
        missing_buckets=(3, 4, 5) if partial else (),
        completeness=0.5 if partial else 1.0,
    )


def stand_in(monkeypatch: pytest.MonkeyPatch, *, partial: bool) -> StandInClient:
    client = StandInClient(answer(partial=partial))

    def fake_client(args: argparse.Namespace) -> StandInClient:
        return client

    monkeypatch.setattr(query_commands, "_client", fake_client)
    return client


def test_a_complete_answer_exits_0_without_a_partial_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = stand_in(monkeypatch, partial=False)
    assert main(SEARCH) == 0
    out = capsys.readouterr()
    assert "item/a" in out.out and "partial" not in out.out + out.err
    assert client.calls[0]["require_complete"] is False


def test_a_partial_answer_says_so_on_stderr_and_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stand_in(monkeypatch, partial=True)
    assert main(SEARCH) == query_commands.EXIT_PARTIAL != 0
    out = capsys.readouterr()
    assert "item/a" in out.out  # the hits are still printed ...
    # ... and a script reading stdout is told apart by the exit code.
    assert "partial answer: completeness 0.50, missing buckets 3, 4, 5" in out.err


def test_require_complete_is_passed_to_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    client = stand_in(monkeypatch, partial=False)
    assert main([*SEARCH, "--require-complete"]) == 0
    assert client.calls[0]["require_complete"] is True
