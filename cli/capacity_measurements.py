"""What `vecshard capacity` reads: the ingest and search benchmarks' JSON,
parsed into the few figures the model uses (`cli.capacity_model`), each
with where it came from. A file that lacks what the model needs is refused
with what to run, never filled in with a guess."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class MeasurementError(ValueError):
    """No usable measurement: what is missing and how to produce it."""


@dataclass(frozen=True)
class DimMeasurement:
    """One dimension of the ingest benchmark."""

    dim: int
    rows_per_shard: float
    bytes_per_vector: float  # RSS above the empty shard, after the search pass
    bytes_per_vector_after_flush: float
    empty_shard_bytes: float
    build_rows_per_s_per_core: float  # in-process index build of `build_rows`
    build_rows: int
    ingest_rows_per_s: float  # through the cluster (`shards` shards)
    ingest_cpu_us_per_row: float  # coordinator + every shard, per row
    inprocess_search_ms: float  # the search alone, one query per call


@dataclass(frozen=True)
class SearchMeasurement:
    """CPU per query of a cluster at a recall (one point)."""

    source: str
    kind: str
    dim: int
    shards: int
    rows_per_shard: float
    recall: float
    setting: str
    shard_ms: float  # mean over the shards
    coordinator_ms: float
    coordinator_per_shard_ms: float  # fitted over shard counts, or all of it
    # The search alone at the same setting, one query per call, and the rows
    # of the in-process index it ran on.
    inprocess_search_ms: float | None = None
    inprocess_rows: float | None = None
    inprocess_how: str = "measured CPU"


@dataclass(frozen=True)
class Measurements:
    files: tuple[str, ...]
    machine: str
    kind: str
    dims: tuple[DimMeasurement, ...]
    search: SearchMeasurement
    ingest_shards: int


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares line y = a + b·x (b = 0 with one point)."""
    if len(xs) == 1:
        return ys[0], 0.0
    mx, my = mean(xs), mean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my - b * mx, b


def latest(directory: Path, pattern: str) -> Path | None:
    found = sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MeasurementError(f"{path}: cannot read a measurement ({exc})") from None
    if not isinstance(doc, dict):
        raise MeasurementError(f"{path}: not a benchmark result (expected a JSON object)")
    return doc


def _machine(doc: Mapping[str, Any]) -> str:
    m = doc.get("machine") or {}
    load = (m.get("load_average_1_5_15") or [None])[0]
    return (
        f"{m.get('cpus_usable', '?')} CPUs ({m.get('cpu_model', '?')}), "
        f"load average {load if load is None else round(float(load), 1)}, "
        f"commit {str(m.get('git_commit') or '?')[:8]}, {m.get('date_utc', '?')}"
    )


def parse_ingest(
    doc: Mapping[str, Any], source: str
) -> tuple[str, int, list[DimMeasurement], dict[str, Any]]:
    if doc.get("benchmark") != "ingest" or not doc.get("runs"):
        raise MeasurementError(f"{source}: not an ingest benchmark result (no runs)")
    config = doc.get("config", {})
    dims = []
    for run in doc["runs"]:
        c = run["cluster"]
        memory = list(c["memory"].values())
        rows = mean([m["rows"] for m in memory])
        cpu = c["columns"]["cpu_us_per_row"]
        dims.append(
            DimMeasurement(
                dim=int(run["dim"]),
                rows_per_shard=rows,
                bytes_per_vector=mean([m["bytes_per_vector_after_search"]["rss"] for m in memory]),
                bytes_per_vector_after_flush=mean(
                    [m["bytes_per_vector_after_flush"]["rss"] for m in memory]
                ),
                empty_shard_bytes=mean([m["empty"]["rss"] for m in memory]),
                build_rows_per_s_per_core=float(run["inprocess"]["build_rows_per_s"]),
                build_rows=int(run["n"]),
                ingest_rows_per_s=float(c["columns"]["rows_per_s"]),
                ingest_cpu_us_per_row=sum(
                    float(v) for k, v in cpu.items() if k != "client" and v is not None
                ),
                inprocess_search_ms=float(run["inprocess"]["search_cpu_ms_per_query"]),
            )
        )
    first = doc["runs"][0]
    search = {
        "dim": int(first["dim"]),
        "shards": int(config.get("shards", 1)),
        "rows_per_shard": dims[0].rows_per_shard,
        **first["cluster"]["search"],
        "inprocess_search_ms": dims[0].inprocess_search_ms,
        "inprocess_rows": float(dims[0].build_rows),
    }
    return str(config.get("kind", "hnsw")), int(config.get("shards", 1)), dims, search


def _shard_ms(cpu: Mapping[str, float | None]) -> list[float]:
    return [float(v) for k, v in cpu.items() if k.startswith("shard") and v is not None]


def search_from_ingest(point: Mapping[str, Any], kind: str, source: str) -> SearchMeasurement:
    cpu = point["cpu_ms_per_query"]
    shards = int(point["shards"])
    coordinator = float(cpu.get("coordinator") or 0.0)
    return SearchMeasurement(
        source=f"{source} (search pass)",
        kind=kind,
        dim=int(point["dim"]),
        shards=shards,
        rows_per_shard=float(point["rows_per_shard"]),
        recall=float(point["recall_at_10"]),
        setting=", ".join(f"{k}={v}" for k, v in point.get("params", {}).items()),
        shard_ms=mean(_shard_ms(cpu)),
        coordinator_ms=coordinator,
        coordinator_per_shard_ms=coordinator / shards,
        inprocess_search_ms=point.get("inprocess_search_ms"),
        inprocess_rows=point.get("inprocess_rows"),
    )


def _inprocess_search_ms(point: Mapping[str, Any], threads: float) -> tuple[float, str]:
    """CPU per query of an in-process point, and where it came from. The CPU
    the benchmark measured (`cpu_ms_per_query_loaded.total`): the wall time of
    `threads` threads per query counts every wait for a core as search, so on
    a busy machine the serving overhead (shard CPU minus this) came out too
    small, down to 0, and the point no longer planned back to its measured
    CPU. Wall time only for a point that recorded no CPU (an older benchmark)."""
    total = (point.get("cpu_ms_per_query_loaded") or {}).get("total")
    if total is not None and float(total) > 0:
        return float(total), "measured CPU"
    qps = float(point["qps"])
    return threads * 1e3 / qps, (
        f"wall time, {threads:g} thread(s) / {qps:,.0f} QPS: the point recorded no CPU, "
        "so waits for a core count as search"
    )


def _shards_reached(shards: int, replicas: int) -> int | None:
    """Shards one query of a search-benchmark cluster reached. Buckets go
    round robin, each on `replicas` distinct shards (`assign_buckets`), and
    the coordinator asks one replica per bucket, preferring shards it already
    chose: without replicas a query reaches every shard, with every shard
    holding every bucket it reaches one. In between, the greedy cover varies
    with the replicas' load: None, the point cannot be read as the model's
    shards (each holding its share of the rows, each reached by every query)."""
    replicas = min(max(replicas, 1), shards)
    if replicas == 1:
        return shards
    return 1 if replicas == shards else None


def search_from_bench(
    doc: Mapping[str, Any], kind: str, recall: float, source: str
) -> SearchMeasurement | None:
    """The cheapest cluster point (CPU per query, single-query calls) at or
    above the recall; the coordinator's CPU fitted over the shards a query
    reached. A point of a cluster run with `--replicas` is read as the
    shards its queries reached: where every shard held every bucket, one
    shard of all `n` rows whose CPU per query is the sum of the shards' (each
    answered its share of the queries)."""
    n = float((doc.get("dataset") or {}).get("n") or 0)
    dim = int((doc.get("dataset") or {}).get("dim") or 0)
    copies = {int(c["shards"]): int(c.get("replicas") or 1) for c in doc.get("clusters", [])}
    candidates = [
        p
        for p in doc.get("points", [])
        if p.get("system") == "cluster"
        and p.get("kind") == kind
        and p.get("batch", 1) == 1
        and (p.get("cpu_ms_per_query_loaded") or {}).get("coordinator") is not None
        and _shard_ms(p["cpu_ms_per_query_loaded"])
    ]
    reached = {
        id(p): _shards_reached(int(p["shards"]), copies.get(int(p["shards"]), 1))
        for p in candidates
    }
    points = [p for p in candidates if reached[id(p)] is not None]
    good = [p for p in points if float(p["recall_at_k"]) >= recall]
    if not good and any(float(p["recall_at_k"]) >= recall for p in candidates):
        shown = sorted(
            {
                (int(p["shards"]), copies[int(p["shards"])])
                for p in candidates
                if reached[id(p)] is None
            }
        )
        raise MeasurementError(
            f"{source}: the points at recall ≥ {recall} come from clusters of "
            + ", ".join(f"{s} shards with --replicas {r}" for s, r in shown)
            + ": a query reached a varying number of them (the coordinator's cover of the "
            "replicas), which the model cannot read; run `vecshard bench search` with "
            "--replicas 1, or with --replicas equal to the shard count"
        )
    if not good or not n or not dim:
        return None

    def total(p: Mapping[str, Any]) -> float:
        cpu = p["cpu_ms_per_query_loaded"]
        return float(cpu["coordinator"]) + sum(_shard_ms(cpu))

    best = min(good, key=total)
    same_setting = [p for p in points if p.get("value") == best.get("value")]
    fanouts = sorted({reached[id(p)] or 0 for p in same_setting})
    coord = [
        mean(
            [
                float(p["cpu_ms_per_query_loaded"]["coordinator"])
                for p in same_setting
                if reached[id(p)] == f
            ]
        )
        for f in fanouts
    ]
    base, per_shard = fit_line([float(f) for f in fanouts], coord)
    if len(fanouts) == 1 or per_shard <= 0:
        base, per_shard = 0.0, coord[0] / fanouts[0]
    inproc = [
        p for p in doc.get("points", [])
        if p.get("system") == "in-process" and p.get("kind") == kind and p.get("value") == best.get("value")
    ]  # fmt: skip
    threads = float((doc.get("settings") or {}).get("threads") or 1)
    inproc_ms, inproc_how = _inprocess_search_ms(inproc[0], threads) if inproc else (None, "")
    cpu = best["cpu_ms_per_query_loaded"]
    fanout, held = reached[id(best)] or 1, int(best["shards"])
    how = "cluster point"
    if fanout < held:
        how += f"; {held} shards each holding every bucket (--replicas {held}): a query reached one"
    return SearchMeasurement(
        source=f"{source} ({how})",
        kind=kind,
        dim=dim,
        shards=fanout,
        rows_per_shard=n / fanout,
        recall=float(best["recall_at_k"]),
        setting=f"{best.get('param')}={best.get('value')}" if best.get("param") else "",
        shard_ms=mean(_shard_ms(cpu)) * held / fanout,
        coordinator_ms=base + per_shard * fanout,
        coordinator_per_shard_ms=per_shard,
        inprocess_search_ms=inproc_ms,
        inprocess_rows=n if inproc else None,
        inprocess_how=inproc_how,
    )


def load_measurements(ingest: Path, search: Path | None, recall: float) -> Measurements:
    doc = _load(ingest)
    try:
        kind, shards, dims, point = parse_ingest(doc, str(ingest))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise MeasurementError(
            f"{ingest}: an ingest result without {exc} (written by an older benchmark?); "
            "run `python -m benchmarks.ingest_bench` again"
        ) from None
    measured: SearchMeasurement | None = None
    files = [str(ingest)]
    if search is not None:
        measured = search_from_bench(_load(search), kind, recall, str(search))
        if measured is not None:
            files.append(str(search))
    if measured is None:
        measured = search_from_ingest(point, kind, str(ingest))
        if measured.recall < recall:
            raise MeasurementError(
                f"the measured search reached recall@10 {measured.recall:.3f} "
                f"({measured.setting}), below --recall {recall}; run the search benchmark "
                "(`vecshard bench search`, which sweeps the search effort) and pass --search"
            )
    return Measurements(tuple(files), _machine(doc), kind, tuple(dims), measured, shards)
