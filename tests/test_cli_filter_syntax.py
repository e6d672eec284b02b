"""`vecshard search --filter`: the JSON written is the filter searched, or a
usage error naming what was wrong — never another filter taken silently, and
never a traceback."""

from __future__ import annotations

import re

import pytest

from cli import filter_syntax
from cli.main import main
from core.errors import InvalidArgument
from core.filters import And, Eq, In, Not, Range


def test_the_documented_forms_parse_to_the_filter_written() -> None:
    text = (
        '{"and": [{"eq": {"category": "books"}}, {"in": {"lang": ["en", "de"]}},'
        ' {"range": {"price": {"gte": 5, "lt": 20.5}}}, {"not": {"eq": {"n": -3}}}]}'
    )
    assert filter_syntax.parse(text) == And(
        (
            Eq("category", "books"),
            In("lang", ("en", "de")),
            Range("price", gte=5.0, lt=20.5),
            Not(Eq("n", -3)),
        )
    )


@pytest.mark.parametrize(
    ("bound", "shown"),
    [
        ("true", "gte true"),  # float(True) searched price >= 1
        ('"20"', 'gte "20"'),  # float("20") searched price >= 20
        ("null", "gte null"),  # float(None): a TypeError traceback
        ("[1]", "gte [1]"),
        ("1e999", "gte Infinity"),
        (str(2**63), f"gte {2**63}"),
    ],
)
def test_a_range_bound_that_is_not_a_number_is_refused(bound: str, shown: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(f"'price': {shown}; expected a number")):
        filter_syntax.parse(f'{{"range": {{"price": {{"gte": {bound}}}}}}}')


def test_int64_range_bounds_are_taken() -> None:
    f = filter_syntax.parse(f'{{"range": {{"n": {{"gte": {-(2**63)}, "lte": {2**63 - 1}}}}}}}')
    assert f == Range("n", gte=float(-(2**63)), lte=float(2**63 - 1))


@pytest.mark.parametrize(
    "text",
    [
        # Written: category == books AND lang == en; json keeps only the last "eq".
        '{"eq": {"category": "books"}, "eq": {"lang": "en"}}',
        '{"range": {"price": {"gte": 5, "gte": 50}}}',
        '{"and": [{"eq": {"a": 1, "a": 2}}]}',
    ],
)
def test_a_key_written_twice_is_refused_not_dropped(text: str) -> None:
    with pytest.raises(InvalidArgument, match="appears twice in one object"):
        filter_syntax.parse(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"eq": {"n": 99999999999999999999}}', "expected an int within int64"),
        (f'{{"in": {{"n": [1, {-(2**63) - 1}]}}}}', "expected an int within int64"),
        ('{"eq": {"flag": true}}', "booleans are not an attribute type"),
        ('{"eq": {"n": null}}', "expected str, int, float or list of str"),
        ('{"range": {"price": {"gte": NaN}}}', "NaN is not JSON"),
    ],
)
def test_a_value_the_sdk_would_refuse_is_refused_at_parse_time(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        filter_syntax.parse(text)


def test_a_bad_filter_is_a_usage_error_before_connecting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    nowhere = "127.0.0.1:1"
    rc = main(
        ["search", "--coordinator", nowhere, "--tenant", "t", "--purpose", "p", "--route", "r"]
        + ["--vector", "1,0", "--filter", '{"range": {"p": {"gte": null}}}']
    )
    assert rc == 1
    assert "error (INVALID_ARGUMENT): \"range\" on 'p': gte null" in capsys.readouterr().err
