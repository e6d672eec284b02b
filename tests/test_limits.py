"""Input limits (issue 14, defect 5): each refused with INVALID_ARGUMENT
naming the limit; values at the limit pass."""

from __future__ import annotations

import math

import pytest

from core.domain import AttrType, AttrValue, EntityKey
from core.errors import InvalidArgument
from core.filters import Eq, Filter, In, Not, Range, validate_filter
from core.limits import DEFAULT_LIMITS, Limits

L = DEFAULT_LIMITS


def test_key_parts_at_the_limit_pass_and_one_byte_more_is_refused() -> None:
    L.check_key(EntityKey("t" * 128, "e" * 128, "i" * 512), "k")
    for key, name in [
        (EntityKey("t" * 129, "e", "i"), "max_tenant_id_bytes"),
        (EntityKey("t", "e" * 129, "i"), "max_entity_type_bytes"),
        (EntityKey("t", "e", "i" * 513), "max_entity_id_bytes"),
        (EntityKey("t", "e", "é" * 257), "max_entity_id_bytes"),  # bytes, not characters
    ]:
        with pytest.raises(InvalidArgument, match=name):
            L.check_key(key, "records[0]")


def test_a_10kb_entity_id_is_refused_naming_the_record() -> None:
    with pytest.raises(InvalidArgument, match=r"records\[3\]: entity_id is 10240 bytes"):
        L.check_key(EntityKey("t", "item", "x" * 10240), "records[3]")


@pytest.mark.parametrize(
    ("attrs", "limit"),
    [
        ({f"a{i}": i for i in range(65)}, "max_attributes_per_record"),
        ({"n" * 129: 1}, "max_attribute_name_bytes"),
        ({"blob": "x" * 4097}, "max_attribute_value_bytes"),
        ({"blob": "x" * (50 * 1024 * 1024)}, "max_attribute_value_bytes"),
        ({"tags": tuple(str(i) for i in range(257))}, "max_attribute_list_items"),
        ({"tags": ("x" * 3000, "y" * 3000)}, "max_attribute_value_bytes"),
        ({f"s{i}": "x" * 4000 for i in range(5)}, "max_attributes_bytes"),
        ({"f": math.nan}, "finite"),
    ],
)
def test_attribute_limits(attrs: dict[str, AttrValue], limit: str) -> None:
    with pytest.raises(InvalidArgument, match=limit):
        L.check_attributes(attrs, "records[0]")


def test_attributes_within_limits_pass() -> None:
    L.check_attributes({"genre": "x" * 4096, "year": 1999, "tags": ("a",) * 256}, "r")


def test_batch_counts() -> None:
    L.check_count("upsert records", 10_000, "max_records_per_request")
    with pytest.raises(InvalidArgument, match=r"10001 in one request.*max_records_per_request"):
        L.check_count("upsert records", 10_001, "max_records_per_request")


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entity_id_bytes"):
        Limits(max_entity_id_bytes=0)


SCHEMA = {"price": AttrType.FLOAT, "year": AttrType.INT, "genre": AttrType.STRING}


@pytest.mark.parametrize(
    "f",
    [
        Range("price", gte=math.nan),
        Range("price", lt=math.inf),
        Not(Range("year", gt=-math.inf)),
        Eq("price", math.nan),
        In("price", (1.0, math.nan)),
    ],
)
def test_non_finite_filter_values_are_refused(f: Filter) -> None:
    with pytest.raises(InvalidArgument, match="finite"):
        validate_filter(f, SCHEMA)
