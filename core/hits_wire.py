"""A search's hits as arrays on the public wire (`PackedHits`), both ways.

`SearchBatch` answers many searches at once, and a message per hit (a `Hit`
with its `EntityKey`) was the largest per-hit cost left on its path: in the
coordinator that builds it, the audit trail that reads it back, and the
client that decodes it. Packed, a search's hits are one float32 array, the
ids as one UTF-8 blob with end offsets, and small tables for the tenant,
entity type and shard (a code per hit only when a table has several
entries). The coordinator writes it (`fill_packed_hits`), the audit trail
and the SDK read it (`packed_hits_from_pb`): one codec, so they cannot
disagree.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import numpy as np

from core.domain import EntityKey, key_of
from core.errors import InvalidArgument
from core.record_columns import decode_pieces
from protos.vecshard.v1 import retrieval_pb2 as pb

# The array codes used below, by size: 4-byte "I" and "f", 2-byte "H" on
# every platform CPython builds for today; checked rather than assumed.
if (array("I").itemsize, array("H").itemsize, array("f").itemsize) != (4, 2, 4):
    raise ImportError("core.hits_wire needs 4-byte 'I' and 'f' and 2-byte 'H' arrays")


@dataclass(frozen=True, eq=False)
class HitColumns:
    """Hit i (rank i) scored `scores[i]`, is `keys[i]` and came from
    `shard_ids[i]`."""

    scores: np.ndarray  # (n,) float32
    entity_ids: list[str]
    tenant_ids: list[str]
    entity_types: list[str]
    shard_ids: list[str]

    def __len__(self) -> int:
        return len(self.entity_ids)

    @property
    def keys(self) -> list[EntityKey]:
        return list(
            map(key_of, zip(self.tenant_ids, self.entity_types, self.entity_ids, strict=True))
        )


def join_utf8(values: Sequence[str]) -> tuple[bytes, bytes]:
    """(the values' UTF-8 concatenated, each one's end offset as
    little-endian uint32). ASCII text (ids usually are) is encoded once.
    The `array` module, not numpy: hits come ten to a search, where
    numpy's per-call cost is most of the work."""
    text = "".join(values)
    if text.isascii():
        blob = text.encode()
        lengths: Iterable[int] = map(len, values)
    else:
        encoded = [v.encode() for v in values]
        blob = b"".join(encoded)
        lengths = map(len, encoded)
    return blob, _little_endian(array("I", accumulate(lengths)))


def _little_endian(values: array[Any]) -> bytes:
    if sys.byteorder == "big":
        values.byteswap()
    return values.tobytes()


def split_utf8(blob: bytes, ends: Sequence[int]) -> list[str]:
    """`join_utf8` undone (`core.record_columns.decode_pieces`)."""
    return decode_pieces(blob, [0, *ends[:-1]] if len(ends) else [], ends)


def string_table(values: Sequence[str]) -> tuple[list[str], bytes]:
    """(the distinct values, sorted; per value its index in them as
    little-endian uint16 — empty when there is only one distinct value)."""
    distinct = set(values)
    if len(distinct) <= 1:
        return list(distinct), b""
    if len(distinct) > 1 << 16:
        raise ValueError(f"{len(distinct)} distinct values: a table holds at most 65536")
    table = sorted(distinct)
    code = {v: i for i, v in enumerate(table)}
    return table, _little_endian(array("H", [code[v] for v in values]))


def from_string_table(table: Sequence[str], codes: bytes, n: int, what: str) -> list[str]:
    """`string_table` undone for `n` values."""
    if n == 0:
        return []
    if not codes:
        if len(table) != 1:
            raise InvalidArgument(f"packed hits: {what} table has {len(table)} entries, no codes")
        return [table[0]] * n
    if len(codes) != 2 * n:
        raise InvalidArgument(f"packed hits: {len(codes)} bytes of {what} codes for {n} hits")
    picked = _from_little_endian("H", codes)
    if max(picked) >= len(table):
        raise InvalidArgument(f"packed hits: a {what} code is past its table of {len(table)}")
    names = list(table)
    return [names[c] for c in picked]


def _from_little_endian(code: str, raw: bytes) -> array[Any]:
    values = array(code)
    values.frombytes(raw)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def fill_packed_hits(
    msg: pb.PackedHits,
    scores: Sequence[float],
    keys: Sequence[EntityKey],
    shard_ids: Sequence[str],
) -> None:
    """Writes the hits into `msg` (a response's own field: no copy)."""
    if not keys:
        msg.SetInParent()  # present and empty: the answer is packed all the same
        return
    tenants, types, ids = zip(*keys, strict=True)
    msg.scores = _little_endian(array("f", scores))
    msg.entity_ids, msg.id_ends = join_utf8(ids)
    for table, codes, values in (
        (msg.tenant_ids, "tenant_codes", tenants),
        (msg.entity_types, "type_codes", types),
        (msg.shard_ids, "shard_codes", shard_ids),
    ):
        names, packed = string_table(values)
        table.extend(names)
        if packed:
            setattr(msg, codes, packed)


def packed_hits_from_pb(msg: pb.PackedHits) -> HitColumns:
    """The hits of a `PackedHits`; InvalidArgument naming what does not fit.
    (No numpy but for the scores: a search's ten hits cost less this way.)"""
    if len(msg.scores) % 4 or len(msg.id_ends) % 4:
        raise InvalidArgument("packed hits: scores and id_ends must be 4 bytes per hit")
    scores = np.frombuffer(msg.scores, dtype="<f4")
    ends = _from_little_endian("I", msg.id_ends)
    n = scores.shape[0]
    if len(ends) != n:
        raise InvalidArgument(f"packed hits: {n} scores but {len(ends)} id ends")
    blob = msg.entity_ids
    if (ends[-1] if n else 0) != len(blob) or ends != array("I", sorted(ends)):
        raise InvalidArgument(
            f"packed hits: id ends do not cut the {len(blob)} bytes of ids in order"
        )
    try:
        ids = split_utf8(blob, ends)
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"packed hits: an entity id is not UTF-8 ({exc})") from None
    return HitColumns(
        scores=scores,
        entity_ids=ids,
        tenant_ids=from_string_table(msg.tenant_ids, msg.tenant_codes, n, "tenant"),
        entity_types=from_string_table(msg.entity_types, msg.type_codes, n, "entity type"),
        shard_ids=from_string_table(msg.shard_ids, msg.shard_codes, n, "shard"),
    )
