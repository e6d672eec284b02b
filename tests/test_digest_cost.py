"""`python -m benchmarks.digest_cost` runs on a small load and reports what
it measured (the figures themselves are for benchmarks/README.md, not
asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.digest_cost import main


def test_it_reports_every_cost_per_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cost.json"
    assert main(["--rows", "300", "--dim", "8", "--out", str(out)]) == 0
    found = json.loads(out.read_text())
    assert (found["rows"], found["dim"]) == (300, 8)
    for name in ("feature_digest_us_per_row", "record_digest_us_per_row", "expiry_scan_us_per_row"):
        assert found[name] > 0, name
    assert "share of one core" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--rows", "0"])
