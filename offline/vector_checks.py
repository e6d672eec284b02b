"""Validation of embedding rows before a backfill writes them (DESIGN §11),
as array operations over a batch: one reason code per row, "" for a row
that passes. Pure: no I/O, no clock.

Reasons, in the order they are checked (a row gets the first that applies):
`entity_type` (not the family's), `dimension`, `non_finite` (NaN/Inf),
`zero_norm`, `near_zero_norm` (below `near_zero_ratio` × the reference
median norm), `norm_outlier` (log-norm more than `max_deviations` robust
standard deviations from the reference), `duplicate_key` (the same key again
in the file: the row with the highest source_version is kept, the last one
on a tie, as the shards would keep it). The backfill itself marks a row
`missing_key` (a null or empty tenant_id, entity_type or entity_id) or
`missing_vector` (a null vector) before any of these, and
`no_source_version` after them.

The reference is the norm distribution of the family's history (an earlier
version's offline embeddings) or, without one, of the dataset's own first
batch; either way it is fixed for the whole job and saved in its checkpoint,
so a resumed job judges every row the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

REASONS = (
    "missing_key",  # a null or empty tenant_id, entity_type or entity_id
    "missing_vector",  # a null vector
    "entity_type",
    "dimension",
    "non_finite",
    "zero_norm",
    "near_zero_norm",
    "norm_outlier",
    "duplicate_key",
    "no_source_version",
)
# Median absolute deviation → standard deviation for normal data.
MAD_SIGMA = 1.4826


@dataclass(frozen=True)
class NormReference:
    """Robust statistics of log(norm): median and scaled MAD."""

    median_log: float
    sigma_log: float
    source: str = ""

    @property
    def median(self) -> float:
        return float(np.exp(self.median_log))


def norm_reference(norms: np.ndarray, source: str, min_sigma: float = 0.05) -> NormReference:
    """From the positive finite norms of a sample; `min_sigma` keeps a data
    set of identical norms (e.g. normalized vectors) from rejecting every
    rounding difference."""
    good = norms[np.isfinite(norms) & (norms > 0)]
    if not len(good):
        raise ValueError(f"no positive finite norm in the reference sample ({source})")
    logs = np.log(good.astype(np.float64))
    median = float(np.median(logs))
    sigma = max(float(np.median(np.abs(logs - median))) * MAD_SIGMA, min_sigma)
    return NormReference(median, sigma, source)


@dataclass(frozen=True)
class CheckSettings:
    dimension: int
    entity_type: str
    near_zero_ratio: float = 1e-3
    max_deviations: float = 8.0


def row_norms(vectors: np.ndarray) -> np.ndarray:
    v64 = vectors.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        norms: np.ndarray = np.sqrt(np.einsum("ij,ij->i", v64, v64))
    return norms


def check_rows(
    settings: CheckSettings,
    entity_types: Sequence[str],
    lengths: np.ndarray,
    vectors: np.ndarray,
    reference: NormReference | None,
) -> np.ndarray:
    """Reasons for every row (object array of str), duplicates excepted
    (`duplicate_reasons` judges those over the whole file). `vectors` is
    (n, dimension), with rows of another length zero-filled; `lengths` holds
    each row's real length."""
    n = len(lengths)
    reasons = np.full(n, "", dtype=object)

    def mark(mask: np.ndarray, reason: str) -> None:
        reasons[(reasons == "") & mask] = reason

    mark(np.asarray(entity_types, dtype=object) != settings.entity_type, "entity_type")
    mark(lengths != settings.dimension, "dimension")
    finite = np.isfinite(vectors).all(axis=1) if n else np.zeros(0, bool)
    mark(~finite, "non_finite")
    norms = np.where(finite, row_norms(np.where(np.isfinite(vectors), vectors, 0.0)), 0.0)
    mark(norms == 0.0, "zero_norm")
    if reference is not None:
        mark(norms < settings.near_zero_ratio * reference.median, "near_zero_norm")
        with np.errstate(divide="ignore"):
            deviation = np.abs(np.log(np.maximum(norms, 1e-300)) - reference.median_log)
        mark(deviation > settings.max_deviations * reference.sigma_log, "norm_outlier")
    return reasons


def duplicate_reasons(keys: Sequence[tuple[str, str, str]], versions: np.ndarray) -> np.ndarray:
    """True for every row another row of the same key supersedes: the one
    with the highest source_version is kept (the last one on a tie)."""
    best: dict[tuple[str, str, str], int] = {}
    for i, key in enumerate(keys):
        j = best.get(key)
        if j is None or versions[i] >= versions[j]:
            best[key] = i
    keep = np.zeros(len(keys), dtype=bool)
    keep[list(best.values())] = True
    return ~keep
