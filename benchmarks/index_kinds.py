"""Index kinds, their parameters and the search parameter each benchmark sweeps.

The same parameters go to the in-process baseline and to the cluster's index version
(``registry.model.IndexVersion.params``), so both sides build the same index. Defaults
scale with the data (IVF lists grow with ``sqrt(n)``; PQ sub-quantizers must divide the
dimension), and every value can be overridden from the command line::

    --param hnsw.M=32 --param ivfpq.nlist=256 --sweep hnsw.ef_search=16,32,64
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.inprocess_index import pq_subquantizers

KINDS: tuple[str, ...] = ("flat", "hnsw", "ivfpq")


@dataclass(frozen=True)
class KindSweep:
    """One index kind: its parameters and the values of its search parameter to sweep."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    sweep_param: str | None = None
    values: tuple[int, ...] = ()

    def points(self) -> list[tuple[int | None, dict[str, Any]]]:
        """(sweep value, full parameters) per point; one ``(None, params)`` for flat."""
        if self.sweep_param is None:
            return [(None, dict(self.params))]
        return [(v, {**self.params, self.sweep_param: v}) for v in self.values]

    def index_name(self, value: int | None) -> str:
        return self.kind if value is None else f"{self.kind}_{self.sweep_param}{value}"


def default_sweeps(n: int, dim: int) -> dict[str, KindSweep]:
    """Defaults for ``n`` vectors of dimension ``dim``.

    HNSW and IVF-PQ follow the shard's own defaults (``registry/index_params.py``): HNSW
    M 16, ef_construction 100; IVF-PQ nlist 256, m = the largest divisor of the dimension up
    to dim/4, 8-bit codes, an exact rerank of 10 candidates per result — with fewer lists on
    small sets, because faiss needs about 39 training vectors per list and each shard trains
    its own quantizer on the rows it holds.
    """
    nlist = 2 ** int(math.log2(max(16, min(256, n // (4 * 39)))))
    return {
        "flat": KindSweep("flat"),
        "hnsw": KindSweep(
            "hnsw",
            {"M": 16, "ef_construction": 100, "ef_search": 64},
            "ef_search",
            (16, 32, 64, 128, 256),
        ),
        "ivfpq": KindSweep(
            "ivfpq",
            {
                "nlist": nlist,
                "m": pq_subquantizers(dim),
                "nbits": 8,
                "nprobe": 16,
                "refine_factor": 10,
            },
            "nprobe",
            tuple(v for v in (1, 4, 16, 64, 256) if v <= nlist),
        ),
    }


def _number(text: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _split(item: str, what: str) -> tuple[str, str, str]:
    target, sep, value = item.partition("=")
    kind, dot, name = target.partition(".")
    if not sep or not dot or not name or not value:
        raise ValueError(f"{what} {item!r}: expected KIND.NAME=VALUE, e.g. hnsw.M=32")
    if kind not in KINDS:
        raise ValueError(f"{what} {item!r}: unknown index kind {kind!r}; expected one of {KINDS}")
    return kind, name, value


def configure(
    base: Mapping[str, KindSweep], params: Iterable[str] = (), sweeps: Iterable[str] = ()
) -> dict[str, KindSweep]:
    """Applies ``--param KIND.NAME=VALUE`` and ``--sweep KIND.NAME=V1,V2,...`` overrides."""
    out = dict(base)
    for item in params:
        kind, name, value = _split(item, "--param")
        out[kind] = replace(out[kind], params={**out[kind].params, name: _number(value)})
    for item in sweeps:
        kind, name, value = _split(item, "--sweep")
        try:
            values = tuple(int(v) for v in value.split(","))
        except ValueError:
            raise ValueError(f"--sweep {item!r}: values must be integers") from None
        if any(v < 1 for v in values):
            raise ValueError(f"--sweep {item!r}: values must be >= 1")
        out[kind] = replace(out[kind], sweep_param=name, values=values)
    return out
