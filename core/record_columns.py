"""Embedding records as columns: the bulk form of a write (DESIGN §5, "Bulk
writes travel the same way").

Why columns: a Python object per record (a protobuf message, a dataclass, a
dict of attributes) costs more than storing the record, so a bulk write keeps
its ids in one buffer with offsets, its vectors in one float32 matrix, its
versions in int64 arrays and each attribute in one typed column with a
presence mask, from the SDK through the coordinator to the shard. Per-record
objects appear only where a row is looked at alone (an error message, a test).

Pure numpy: the SDK, both planes and the tests share these types; the proto
codec is `core.columns_wire`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from core.domain import AttrType, AttrValue
from core.errors import InvalidArgument

OFFSET = np.dtype("<i8")


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(lengths.shape[0] + 1, dtype=OFFSET)
    np.cumsum(lengths, out=out[1:])
    return out


def decode_pieces(data: bytes, starts: Sequence[int], ends: Sequence[int]) -> list[str]:
    """The UTF-8 strings data[starts[i]:ends[i]]. ASCII data (ids usually
    are) is decoded once and sliced: byte offsets are character offsets."""
    if data.isascii():
        text = data.decode()
        return [text[a:b] for a, b in zip(starts, ends, strict=True)]
    return [data[a:b].decode() for a, b in zip(starts, ends, strict=True)]


def gather_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions covering [starts[i], starts[i] + lengths[i]) for every i, in
    order: the index array that gathers variable-length pieces in one step."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    shift: np.ndarray = np.repeat(starts.astype(np.int64) - (ends - lengths), lengths)
    positions: np.ndarray = np.arange(total, dtype=np.int64) + shift
    return positions


@dataclass(frozen=True, eq=False)
class PackedStrings:
    """n UTF-8 strings in one buffer: string i is data[offsets[i]:offsets[i+1]]."""

    data: bytes
    offsets: np.ndarray  # (n + 1,) int64, from 0 to len(data), non-decreasing

    @classmethod
    def of(cls, strings: Iterable[str]) -> PackedStrings:
        encoded = [s.encode() for s in strings]
        lengths = np.fromiter(map(len, encoded), dtype=OFFSET, count=len(encoded))
        return cls(b"".join(encoded), _offsets(lengths))

    @classmethod
    def from_buffers(cls, data: bytes, offsets: np.ndarray, n: int, what: str) -> PackedStrings:
        """Checks what came over the wire: n + 1 offsets from 0 to the end of
        the data, never decreasing, each at the start of a UTF-8 character, and
        valid UTF-8 throughout (so every string decodes)."""
        offsets = np.asarray(offsets)
        if offsets.shape != (n + 1,):
            raise InvalidArgument(f"{what}: {offsets.shape[0]} offsets, expected {n + 1} (n + 1)")
        if n and (offsets[0] != 0 or offsets[-1] != len(data) or (np.diff(offsets) < 0).any()):
            raise InvalidArgument(
                f"{what}: offsets must rise from 0 to {len(data)} (the data's length)"
            )
        if not n and len(data):
            raise InvalidArgument(f"{what}: {len(data)} bytes of data for no strings")
        try:
            data.decode()
        except UnicodeDecodeError as exc:
            raise InvalidArgument(
                f"{what}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
            ) from None
        if len(data):
            raw = np.frombuffer(data, dtype=np.uint8)
            starts = offsets[:-1][offsets[:-1] < len(data)]
            if ((raw[starts] & 0xC0) == 0x80).any():
                raise InvalidArgument(f"{what}: an offset splits a UTF-8 character")
        return cls(data, offsets.astype(OFFSET, copy=False))

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def __getitem__(self, i: int) -> str:
        return self.data[self.offsets[i] : self.offsets[i + 1]].decode()

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def lengths(self) -> np.ndarray:
        """Byte length of each string."""
        return np.diff(self.offsets)

    def raw_list(self) -> list[bytes]:
        o = self.offsets.tolist()
        d = self.data
        return [d[a:b] for a, b in zip(o[:-1], o[1:], strict=True)]

    def tolist(self) -> list[str]:
        o = self.offsets.tolist()
        return decode_pieces(self.data, o[:-1], o[1:])

    def strings_at(self, rows: np.ndarray) -> list[str]:
        """Strings `rows` (an int array) as a list: two gathers, no per-item
        index arithmetic in Python (a search batch's hits at once)."""
        starts = self.offsets[rows].tolist()
        ends = self.offsets[rows + 1].tolist()
        d = self.data
        return [d[a:b].decode() for a, b in zip(starts, ends, strict=True)]

    def take(self, rows: np.ndarray) -> PackedStrings:
        # The picked rows' lengths only: a search's ten hits of a 50,000-row
        # segment must not cost a pass over all its offsets.
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        raw = np.frombuffer(self.data, dtype=np.uint8)
        picked = raw[gather_ranges(starts, lengths)]
        return PackedStrings(picked.tobytes(), _offsets(lengths))


@dataclass(frozen=True, eq=False)
class StringLists:
    """One list of strings per row: row i holds items[offsets[i]:offsets[i+1]]."""

    items: PackedStrings
    offsets: np.ndarray  # (n + 1,) int64 into items

    @classmethod
    def of(cls, lists: Sequence[Sequence[str]]) -> StringLists:
        lengths = np.fromiter(map(len, lists), dtype=OFFSET, count=len(lists))
        return cls(PackedStrings.of(s for lst in lists for s in lst), _offsets(lengths))

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def row(self, i: int) -> tuple[str, ...]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return tuple(self.items[j] for j in range(a, b))

    def tolist(self) -> list[tuple[str, ...]]:
        items = self.items.tolist()
        o = self.offsets.tolist()
        return [tuple(items[a:b]) for a, b in zip(o[:-1], o[1:], strict=True)]

    def take(self, rows: np.ndarray) -> StringLists:
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.diff(self.offsets)[rows]
        picked = gather_ranges(self.offsets[:-1][rows], counts)
        return StringLists(self.items.take(picked), _offsets(counts))


ColumnValues = np.ndarray | PackedStrings | StringLists


def type_fits(declared: AttrType, given: AttrType) -> bool:
    """`core.filters.validate_attributes` over a column's type: an int is a
    valid float, nothing else converts."""
    return given is declared or (declared is AttrType.FLOAT and given is AttrType.INT)


@dataclass(frozen=True, eq=False)
class AttributeColumn:
    """One attribute over n rows: typed values and which rows carry it.
    Values of rows without the attribute are placeholders (0, "", ())."""

    type: AttrType
    values: ColumnValues  # int64 / float64 array, PackedStrings, StringLists
    present: np.ndarray  # (n,) bool

    def __post_init__(self) -> None:
        expected = {
            AttrType.INT: np.ndarray,
            AttrType.FLOAT: np.ndarray,
            AttrType.STRING: PackedStrings,
            AttrType.STRING_LIST: StringLists,
        }[self.type]
        if not isinstance(self.values, expected):
            raise TypeError(f"{self.type.value} column holds {type(self.values).__name__}")
        if len(self.values) != self.present.shape[0]:
            raise InvalidArgument(
                f"attribute column: {len(self.values)} values for {self.present.shape[0]} rows"
            )

    @classmethod
    def of(cls, kind: AttrType, values: Sequence[AttrValue | None]) -> AttributeColumn:
        """A column from per-row values (None = the row lacks the attribute)."""
        present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
        data: ColumnValues
        if kind is AttrType.INT:
            data = np.array([0 if v is None else v for v in values], dtype=np.int64)
        elif kind is AttrType.FLOAT:
            data = np.array([0.0 if v is None else v for v in values], dtype=np.float64)
        elif kind is AttrType.STRING:
            data = PackedStrings.of("" if v is None else cast(str, v) for v in values)
        else:
            data = StringLists.of([() if v is None else cast(Sequence[str], v) for v in values])
        return cls(kind, data, present)

    def __len__(self) -> int:
        return int(self.present.shape[0])

    def value(self, i: int) -> AttrValue | None:
        if not self.present[i]:
            return None
        if isinstance(self.values, StringLists):
            return self.values.row(i)
        if isinstance(self.values, PackedStrings):
            return self.values[i]
        item: int | float = self.values[i].item()
        return item

    def tolist(self) -> list[AttrValue | None]:
        values: list[AttrValue] = list(self.values.tolist())
        return [v if p else None for v, p in zip(values, self.present.tolist(), strict=True)]

    def take(self, rows: np.ndarray) -> AttributeColumn:
        values: ColumnValues = (
            self.values[rows] if isinstance(self.values, np.ndarray) else self.values.take(rows)
        )
        return AttributeColumn(self.type, values, self.present[rows])


@dataclass(frozen=True, eq=False)
class RecordColumns:
    """Records of one tenant and one entity type as columns. A source_version
    or created_at of 0 means unset (the coordinator's clock fills it in)."""

    entity_ids: PackedStrings
    vectors: np.ndarray  # (n, d) float32
    source_versions: np.ndarray  # (n,) int64
    created_at: np.ndarray  # (n,) int64
    attributes: Mapping[str, AttributeColumn] = field(default_factory=dict)
    model_version: str = ""
    entity_type: str = ""  # "" = the family's

    def __post_init__(self) -> None:
        n = len(self.entity_ids)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != n:
            raise InvalidArgument(
                f"records: vectors of shape {self.vectors.shape}, expected ({n}, dimension)"
            )
        for name in ("source_versions", "created_at"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise InvalidArgument(f"records: {name} has shape {arr.shape}, expected ({n},)")
        for name, col in self.attributes.items():
            if len(col) != n:
                raise InvalidArgument(
                    f"records: attribute {name!r} has {len(col)} rows, expected {n}"
                )

    def __len__(self) -> int:
        return len(self.entity_ids)

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])

    def take(self, rows: np.ndarray) -> RecordColumns:
        rows = np.asarray(rows, dtype=np.int64)
        return RecordColumns(
            self.entity_ids.take(rows),
            self.vectors[rows],
            self.source_versions[rows],
            self.created_at[rows],
            {name: col.take(rows) for name, col in self.attributes.items()},
            self.model_version,
            self.entity_type,
        )

    def attributes_of(self, i: int) -> dict[str, AttrValue]:
        """Row i's attributes as a dict (error messages, tests)."""
        out = {}
        for name, col in self.attributes.items():
            value = col.value(i)
            if value is not None:
                out[name] = value
        return out


def first_row(mask: np.ndarray | np.bool_) -> int | None:
    """The first row a boolean mask flags, or None."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def batch_winners(keys: Sequence[Hashable], versions: Sequence[int]) -> dict[Hashable, int] | None:
    """Which row of each key a batch that repeats keys keeps: the highest
    source_version, the last on a tie (a retried batch is idempotent) — the
    shard's rule (`shard_server.row_batch.latest_rows`), and where the
    coordinator places a repeated key (`coordinator.buckets`). None when no
    key repeats."""
    if len(set(keys)) == len(keys):
        return None
    best: dict[Hashable, int] = {}
    for i, (key, version) in enumerate(zip(keys, versions, strict=True)):
        j = best.get(key)
        if j is None or version >= versions[j]:
            best[key] = i
    return best
