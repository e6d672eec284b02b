"""The SDK-threads benchmark runs end to end on tiny data (a real cluster):
coalescing on forms batches and every answer equals the uncoalesced one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import sdk_threads


@pytest.mark.parametrize("work", ["search", "lookups"])
def test_sdk_threads_compares_coalescing_off_and_on(
    work: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sdk.json"
    argv = ["--n", "2000", "--queries", "50", "--threads", "6", "--seconds", "1"]
    argv += ["--rounds", "1", "--in-flight", "1", "--work", work, "--out", str(out)]
    assert sdk_threads.main(argv) == 0
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {"off", "in_flight=1"}
    off, on = runs["off"][0], runs["in_flight=1"][0]
    assert off["queries"] > 0 and on["queries"] > 0
    assert off["errors"] == 0 and on["errors"] == 0
    assert off["batch_calls"] == 0 and on["mean_batch"] > 1
    assert off["answers_equal"] and on["answers_equal"]
    assert on["cpu_ms_per_query"]["coordinator"] > 0
    assert "answers equal: True" in capsys.readouterr().out
