"""Seeded synthetic data clustered like a real catalogue, with attributes and tenants."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.datasets import Dataset, Metric, check_metric

CATEGORIES: tuple[str, ...] = (
    "books",
    "electronics",
    "fashion",
    "home",
    "sports",
    "toys",
    "grocery",
    "beauty",
)
TAGS: tuple[str, ...] = ("new", "sale", "popular", "eco", "premium", "limited", "bundle")


def gaussian_mixture(
    n: int,
    dim: int,
    n_clusters: int,
    n_queries: int,
    seed: int,
    n_tenants: int = 1,
    metric: Metric = "l2",
    cluster_std: float = 1.0,
    centre_spread: float = 4.0,
    category_purity: float = 0.7,
    name: str | None = None,
) -> Dataset:
    """Seeded clustered data with attributes and tenants, shaped like a real catalogue.

    Centres are drawn with per-coordinate std ``centre_spread``; each cluster has its own
    spread (``cluster_std`` times a factor in [0.5, 1.5]) and its own weight, because real
    embedding clusters differ in size and tightness. Queries come from the same mixture with
    fresh noise, never copies of base rows, so the nearest neighbour is not trivially the query.

    Attributes: ``cluster`` (the generating cluster), ``category`` (the cluster's dominant
    category with probability ``category_purity``, so filters correlate with geometry as they
    do in practice), ``price`` (log-normal, cents), ``year``, ``tags`` (0-3 strings per row).
    Tenants follow a Zipf-like skew, as a few large tenants usually dominate.

    Each component has its own random stream, so e.g. changing ``n_queries`` leaves the base
    unchanged for the same seed.
    """
    check_metric(metric)
    if min(n, dim, n_clusters, n_queries, n_tenants) < 1:
        raise ValueError("n, dim, n_clusters, n_queries and n_tenants must all be >= 1")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    centre_rng, base_rng, query_rng, attr_rng, tenant_rng = streams
    centres = centre_rng.normal(0.0, centre_spread, size=(n_clusters, dim)).astype(np.float32)
    stds = (cluster_std * centre_rng.uniform(0.5, 1.5, size=n_clusters)).astype(np.float32)
    weights = centre_rng.dirichlet(np.full(n_clusters, 2.0))
    labels = base_rng.choice(n_clusters, size=n, p=weights)
    base = _sample_around(base_rng, centres, stds, labels)
    queries = _sample_around(
        query_rng, centres, stds, query_rng.choice(n_clusters, n_queries, p=weights)
    )
    return Dataset(
        name=name or f"gmm-n{n}-d{dim}-c{n_clusters}-s{seed}",
        base=base,
        queries=queries,
        ground_truth=None,
        metric=metric,
        attributes=_synthetic_attributes(attr_rng, labels, category_purity),
        tenants=_synthetic_tenants(tenant_rng, n, n_tenants),
    )


def _sample_around(
    rng: np.random.Generator,
    centres: NDArray[np.float32],
    stds: NDArray[np.float32],
    labels: NDArray[np.int64],
) -> NDArray[np.float32]:
    # In place, so a 1M x 128 set needs one float32 array rather than three.
    points = rng.standard_normal(size=(len(labels), centres.shape[1]), dtype=np.float32)
    points *= stds[labels, None]
    points += centres[labels]
    return points


def _synthetic_attributes(
    rng: np.random.Generator, labels: NDArray[np.int64], category_purity: float
) -> dict[str, NDArray[Any]]:
    n = len(labels)
    vocab = np.array(CATEGORIES)
    dominant = rng.permutation(np.arange(labels.max() + 1) % len(vocab))
    own = rng.random(n) < category_purity
    category = np.where(own, vocab[dominant[labels]], vocab[rng.integers(0, len(vocab), n)])
    price = np.round(rng.lognormal(mean=3.0, sigma=1.0, size=n), 2)
    year = rng.integers(2000, 2026, size=n).astype(np.int64)
    return {
        "cluster": labels.astype(np.int64),
        "category": category,
        "price": price,
        "year": year,
        "tags": _synthetic_tags(rng, n),
    }


def _synthetic_tags(rng: np.random.Generator, n: int) -> NDArray[np.object_]:
    counts = rng.integers(0, 4, size=n)
    picks = np.argsort(rng.random((n, len(TAGS))), axis=1)
    tags = np.empty(n, dtype=object)
    for row, (count, order) in enumerate(zip(counts, picks, strict=True)):
        tags[row] = [TAGS[i] for i in sorted(order[:count])]
    return tags


def _synthetic_tenants(rng: np.random.Generator, n: int, n_tenants: int) -> NDArray[np.str_]:
    names = np.array([f"tenant-{i:03d}" for i in range(n_tenants)])
    skew = 1.0 / np.arange(1, n_tenants + 1)
    return names[rng.choice(n_tenants, size=n, p=skew / skew.sum())]
