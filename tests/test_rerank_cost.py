"""`python -m benchmarks.rerank_cost` runs on a small segment and reports what
it measured (the figures are for benchmarks/README.md, not asserted), and
fails when the two rerank ways answer differently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.rerank_cost import main


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_it_reports_both_rerank_ways(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metric: str
) -> None:
    out = tmp_path / "rerank.json"
    argv = ["--n", "2000", "--dim", "16", "--queries", "64", "--batch", "16"]
    assert main([*argv, "--metric", metric, "--out", str(out)]) == 0
    found = json.loads(out.read_text())
    assert found["identical_answers"] is True
    assert found["queries"] == 64 and found["candidates_per_query"] == 64
    assert 10 <= found["mean_rescored_candidates"] < 64
    for name in ("hnswlib", "search_batch", "rescore_every_candidate"):
        assert found[f"{name}_ms_per_query"] > 0, name
    assert "answers identical: yes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--queries", "8", "--batch", "16"])
