"""`vecshard features materialize` options: days are read as dates, so a day
the offline store would compare as other text is a usage error."""

from __future__ import annotations

import pytest

from cli.feature_commands import cmd_materialize
from cli.main import build_parser

MATERIALIZE = ["features", "materialize", "--group", "g@v1", "--offline", "/nowhere"]
MATERIALIZE += ["--coordinator", "127.0.0.1:1"]


@pytest.mark.parametrize("day", ["2024-1-5", "05/01/2024", "2024-02-30", "yesterday", ""])
def test_a_day_that_is_not_yyyy_mm_dd_is_a_usage_error(
    day: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for option in ("--start", "--end"):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([*MATERIALIZE, option, day])
        assert exc.value.code == 2
        assert f"argument {option}: {day!r}: expected a day YYYY-MM-DD" in capsys.readouterr().err


def test_days_are_passed_on_as_yyyy_mm_dd() -> None:
    args = build_parser().parse_args([*MATERIALIZE, "--start", "2024-01-05", "--end", "20240110"])
    assert (args.start, args.end) == ("2024-01-05", "2024-01-10")
    args = build_parser().parse_args(MATERIALIZE)
    assert (args.start, args.end) == (None, None)


def test_a_start_after_the_end_is_refused_before_anything_runs() -> None:
    args = build_parser().parse_args([*MATERIALIZE, "--start", "2024-02-01", "--end", "2024-01-31"])
    with pytest.raises(SystemExit, match="--start 2024-02-01 is after --end 2024-01-31"):
        cmd_materialize(args)


def test_the_pipelines_write_for_a_purpose_the_example_tenants_allow() -> None:
    """Feature writes check the tenant's purposes (as searches and embedding
    writes did): materialization wrote with a fixed purpose the example
    tenants did not list, and was refused (found in review)."""
    from pathlib import Path

    import yaml

    args = build_parser().parse_args(MATERIALIZE)
    assert args.purpose == "materialization"
    assert build_parser().parse_args([*MATERIALIZE, "--purpose", "etl"]).purpose == "etl"
    backfill = ["embeddings", "backfill", "--from", "/nowhere", "--to", "f@v1"]
    bf = build_parser().parse_args([*backfill, "--coordinator", "127.0.0.1:1"])
    examples = Path(__file__).resolve().parents[1] / "deploy" / "examples"
    docs = [
        d
        for f in ("10-tenants.yaml", "20-embeddings.yaml")
        for d in yaml.safe_load_all((examples / f).read_text())
        if d
    ]
    for doc in docs:
        allowed = doc["spec"].get("allowed_purposes")
        if not allowed:
            continue  # every purpose
        if doc["kind"] == "Tenant":
            assert {args.purpose, bf.purpose} <= set(allowed), doc["spec"]
        elif doc["kind"] == "EmbeddingFamily":
            assert bf.purpose in allowed, doc["spec"]
