"""Capacity planning from measurements: how many shards, cores and how much
memory a deployment needs, derived from what the benchmarks measured on
this code — bytes per vector, CPU per query, index build rate, ingest CPU —
never from constants. Pure: plain data in (the benchmark JSON, parsed here),
a `Plan` with every step of its derivation out.

The model, and what it assumes (each stated in the plan it prints):

* **Memory per vector** is linear in the dimension, `a + b·d`, fitted to the
  ingest benchmark's dimensions (RSS per vector above the empty shard after
  a search pass touched every vector: index, keys, mapped vector pages).
* **A shard** holds as many vectors as fit in `shard_memory × headroom`
  after its fixed memory (the empty shard's RSS, RocksDB's memtable and
  block-cache bounds, the feature-row cache, a full growing segment).
* **A query** goes to one replica of every shard (hash placement). A shard
  spends a serving overhead (measured shard CPU minus the same search in
  process, at the same setting) plus that search, scaled to the dimension by
  the ingest benchmark's in-process search (fitted, linear: its ratio at d
  over the measured d) and grown with log₂ of the rows it holds (HNSW's hops:
  an assumption, scaled from the measured rows), so that planning the
  measured point gives back its measured CPU; the coordinator spends a per-query part plus a
  part per shard (fitted over shard counts when the search benchmark
  measured several, otherwise all of it counted per shard).
* **Cores** are CPU seconds per second divided by a target utilization;
  replicas beyond the requested ones are added where one replica of a shard
  cannot serve the query rate.
* **Builds** (initial load, rebuilding one shard) use the measured build
  rate per core, scaled linearly in the dimension and by n·log₂n.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1 << 20
GIB = 1 << 30


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


@dataclass(frozen=True)
class Measurements:
    files: tuple[str, ...]
    machine: str
    kind: str
    dims: tuple[DimMeasurement, ...]
    search: SearchMeasurement
    ingest_shards: int


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares line y = a + b·x (b = 0 with one point)."""
    if len(xs) == 1:
        return ys[0], 0.0
    mx, my = _mean(xs), _mean(ys)
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
        rows = _mean([m["rows"] for m in memory])
        cpu = c["columns"]["cpu_us_per_row"]
        dims.append(
            DimMeasurement(
                dim=int(run["dim"]),
                rows_per_shard=rows,
                bytes_per_vector=_mean([m["bytes_per_vector_after_search"]["rss"] for m in memory]),
                bytes_per_vector_after_flush=_mean(
                    [m["bytes_per_vector_after_flush"]["rss"] for m in memory]
                ),
                empty_shard_bytes=_mean([m["empty"]["rss"] for m in memory]),
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
        shard_ms=_mean(_shard_ms(cpu)),
        coordinator_ms=coordinator,
        coordinator_per_shard_ms=coordinator / shards,
        inprocess_search_ms=point.get("inprocess_search_ms"),
        inprocess_rows=point.get("inprocess_rows"),
    )


def search_from_bench(
    doc: Mapping[str, Any], kind: str, recall: float, source: str
) -> SearchMeasurement | None:
    """The cheapest cluster point (CPU per query, single-query calls) at or
    above the recall; the coordinator's CPU fitted over the shard counts."""
    n = float((doc.get("dataset") or {}).get("n") or 0)
    dim = int((doc.get("dataset") or {}).get("dim") or 0)
    points = [
        p
        for p in doc.get("points", [])
        if p.get("system") == "cluster"
        and p.get("kind") == kind
        and p.get("batch", 1) == 1
        and (p.get("cpu_ms_per_query_loaded") or {}).get("coordinator") is not None
        and _shard_ms(p["cpu_ms_per_query_loaded"])
    ]
    good = [p for p in points if float(p["recall_at_k"]) >= recall]
    if not good or not n or not dim:
        return None

    def total(p: Mapping[str, Any]) -> float:
        cpu = p["cpu_ms_per_query_loaded"]
        return float(cpu["coordinator"]) + sum(_shard_ms(cpu))

    best = min(good, key=total)
    same_setting = [p for p in points if p.get("value") == best.get("value")]
    shards = sorted({int(p["shards"]) for p in same_setting})
    coord = [
        _mean(
            [
                float(p["cpu_ms_per_query_loaded"]["coordinator"])
                for p in same_setting
                if p["shards"] == s
            ]
        )
        for s in shards
    ]
    base, per_shard = _fit([float(s) for s in shards], coord)
    if len(shards) == 1 or per_shard <= 0:
        base, per_shard = 0.0, coord[0] / shards[0]
    inproc = [
        p for p in doc.get("points", [])
        if p.get("system") == "in-process" and p.get("kind") == kind and p.get("value") == best.get("value")
    ]  # fmt: skip
    threads = float((doc.get("settings") or {}).get("threads") or 1)
    cpu = best["cpu_ms_per_query_loaded"]
    return SearchMeasurement(
        source=f"{source} (cluster point)",
        kind=kind,
        dim=dim,
        shards=int(best["shards"]),
        rows_per_shard=n / int(best["shards"]),
        recall=float(best["recall_at_k"]),
        setting=f"{best.get('param')}={best.get('value')}" if best.get("param") else "",
        shard_ms=_mean(_shard_ms(cpu)),
        coordinator_ms=base + per_shard * int(best["shards"]),
        coordinator_per_shard_ms=per_shard,
        inprocess_search_ms=threads * 1e3 / float(inproc[0]["qps"]) if inproc else None,
        inprocess_rows=n if inproc else None,
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


@dataclass(frozen=True)
class Target:
    vectors: float
    dim: int
    qps: float
    recall: float
    replicas: int = 1
    shard_memory_gib: float = 64.0
    memory_headroom: float = 0.8
    cores_per_shard: int = 16
    cores_per_coordinator: int = 16
    utilization: float = 0.6
    upserts_per_second: float = 0.0
    # What a shard started with the defaults holds in memory beside its
    # vectors: RocksDB's memtables and block cache, the feature-row cache, and
    # a growing segment of up to `seal_rows`. ShardConfig's defaults, copied so
    # that `capacity` needs no server extra; tests/test_capacity.py holds them equal.
    memtable_mib: float = 64.0
    block_cache_mib: float = 32.0
    feature_cache_mib: float = 256.0
    seal_rows: int = 20_000


@dataclass
class Plan:
    shards: int
    replicas: int
    shard_processes: int
    vectors_per_shard: float
    shard_memory_bytes: float
    total_memory_bytes: float
    shard_cores: float
    coordinators: int
    coordinator_cores: float
    ingest_cores: float
    total_cores: float
    rebuild_shard_hours: float
    derivation: list[str] = field(default_factory=list)


def _per_dim(m: Measurements, values: Sequence[float], dim: int, what: str) -> tuple[float, str]:
    """A measured quantity at `dim`: fitted linear in the dimension over the
    measured dimensions (or the measurement itself at that dimension)."""
    dims = [float(d.dim) for d in m.dims]
    if dim in dims:
        value = values[dims.index(dim)]
        return value, f"measured at d={dim}"
    if len(set(dims)) < 2:
        raise MeasurementError(
            f"{what} was measured at d={int(dims[0])} only; measure at --dim {dim} or at two "
            "dimensions (python -m benchmarks.ingest_bench --dims 128,384)"
        )
    a, b = _fit(dims, values)
    shown = ", ".join(f"{v:,.4g} at d={int(d)}" for d, v in zip(dims, values, strict=True))
    return a + b * dim, f"{a:,.4g} + {b:,.4g}·d fitted to {shown}"


def _shard_search_ms(m: Measurements, d: int, rows: float) -> tuple[float, str]:
    """A shard's CPU per query at dimension `d` holding `rows` rows, and how.

    The measured shard CPU is a serving overhead plus the search itself; the
    search is the in-process one measured at the same setting (`ref_ms` on
    `ref_rows` rows at d=`s.dim`), scaled to the shard's rows by log₂ and to
    `d` by the ingest benchmark's in-process search at `d` over the same at
    `s.dim` (one setting, two dimensions: the ratio carries over to another
    setting, its absolute cost does not). Both terms come from one baseline,
    so planning the measured point gives back its measured shard CPU.
    """
    s = m.search
    by_dim = [x.inprocess_search_ms for x in m.dims]
    if s.inprocess_search_ms is not None and s.inprocess_rows is not None:
        ref_ms, ref_rows = s.inprocess_search_ms, s.inprocess_rows
        ref_how = f"in process at {s.setting or 'the same setting'}"
    else:
        ref_ms, _ = _per_dim(m, by_dim, s.dim, "search CPU")
        ref_rows = float(m.dims[0].build_rows)
        ref_how = (
            "the ingest benchmark's in process, at its own setting (none measured at this one)"
        )
    if ref_ms <= 0:
        raise MeasurementError(f"the in-process search CPU at d={s.dim} is {ref_ms:.4g} ms")

    def log_rows(n: float) -> float:
        return math.log2(max(n, 2)) / math.log2(max(ref_rows, 2))

    at_point = ref_ms * log_rows(s.rows_per_shard)
    overhead = max(s.shard_ms - at_point, 0.0)
    scale, how_d = 1.0, "the measured dimension"
    if d != s.dim:
        at_d, how_d = _per_dim(m, by_dim, d, "search CPU")
        scale = at_d / _per_dim(m, by_dim, s.dim, "search CPU")[0]
    search = ref_ms * scale * log_rows(rows)
    return overhead + search, (
        f"serving overhead {overhead:.3f} ms (measured {s.shard_ms:.3f} minus the search, "
        f"{ref_ms:.3f} ms {ref_how} on {ref_rows:,.0f} rows, × log2({s.rows_per_shard:,.0f})/"
        f"log2({ref_rows:,.0f})) + search {ref_ms:.3f} ms × {scale:.3f} for d={d} over d={s.dim} "
        f"(ingest benchmark's in-process search, {how_d}) × log2({rows:,.0f})/log2({ref_rows:,.0f}) "
        f"= {overhead + search:.3f} ms"
    )


def plan(m: Measurements, t: Target) -> Plan:
    out: list[str] = []
    say = out.append
    d = t.dim
    bpv, how = _per_dim(m, [x.bytes_per_vector for x in m.dims], d, "memory per vector")
    anon, _ = _per_dim(m, [x.bytes_per_vector_after_flush for x in m.dims], d, "memory per vector")
    say(
        f"memory per vector: {bpv:,.0f} B at d={d} ({how}), with every vector's page of the "
        f"mapped vector files cached (after Flush, before searches touch them: {anon:,.0f} B); "
        f"raw float32 is {4 * d} B"
    )
    empty = _mean([x.empty_shard_bytes for x in m.dims])
    growing = t.seal_rows * (4 * d + 330)
    fixed = empty + (t.memtable_mib + t.block_cache_mib + t.feature_cache_mib) * MIB + growing
    say(
        f"fixed memory per shard: {fixed / GIB:.2f} GiB = empty shard {empty / MIB:,.0f} MiB "
        f"(measured) + RocksDB memtables {t.memtable_mib:.0f} MiB and block cache "
        f"{t.block_cache_mib:.0f} MiB + feature cache {t.feature_cache_mib:.0f} MiB + a full "
        f"growing segment ({t.seal_rows:,} rows × {4 * d + 330} B)"
    )
    usable = t.shard_memory_gib * GIB * t.memory_headroom - fixed
    if usable <= 0:
        raise MeasurementError(
            f"--shard-memory-gib {t.shard_memory_gib} leaves no room for vectors"
        )
    if bpv <= 0:
        raise MeasurementError(f"memory per vector at d={d} comes out at {bpv:,.0f} B ({how})")
    per_shard_cap = math.floor(usable / bpv)
    if per_shard_cap < 1:
        raise MeasurementError(
            f"--shard-memory-gib {t.shard_memory_gib} leaves {usable / MIB:,.1f} MiB for vectors "
            f"of {bpv:,.0f} B each: not one fits; give shards more memory"
        )
    shards = max(1, math.ceil(t.vectors / per_shard_cap))
    rows = t.vectors / shards
    say(
        f"shards: ceil({t.vectors:,.0f} / {per_shard_cap:,}) = {shards} "
        f"(a shard fills {t.memory_headroom:.0%} of {t.shard_memory_gib:g} GiB); {rows:,.0f} vectors each"
    )

    s = m.search
    n_in = float(m.dims[0].build_rows)
    grow = math.log2(max(rows, 2)) / math.log2(max(n_in, 2))  # builds: measured on n_in rows
    shard_ms, shard_how = _shard_search_ms(m, d, rows)
    coord_base = max(s.coordinator_ms - s.coordinator_per_shard_ms * s.shards, 0.0)
    coord_ms = coord_base + s.coordinator_per_shard_ms * shards
    say(
        f"search measured: {s.source}, {s.kind} {s.setting}, recall@10 {s.recall:.3f} ≥ {t.recall}, "
        f"{s.shards} shard(s) of {s.rows_per_shard:,.0f} rows at d={s.dim}: shard {s.shard_ms:.3f} ms, "
        f"coordinator {s.coordinator_ms:.3f} ms CPU per query"
    )
    say(f"shard CPU per query: {shard_how}")
    say(
        f"coordinator CPU per query: {coord_base:.3f} + {s.coordinator_per_shard_ms:.3f} × {shards} "
        f"shards = {coord_ms:.3f} ms; every query reaches one replica of every shard"
    )
    per_shard_cpu = t.qps * shard_ms / 1e3 / t.utilization
    replicas = max(t.replicas, math.ceil(per_shard_cpu / t.cores_per_shard))
    shard_cores = shards * per_shard_cpu
    coord_cores = t.qps * coord_ms / 1e3 / t.utilization
    coordinators = max(2 if t.replicas > 1 else 1, math.ceil(coord_cores / t.cores_per_coordinator))
    say(
        f"query cores: {t.qps:,.0f} QPS × {shard_ms:.3f} ms / {t.utilization:.0%} utilization = "
        f"{per_shard_cpu:.1f} cores per shard → {replicas} replica(s) of {t.cores_per_shard} cores "
        f"(asked {t.replicas}); coordinators {coord_cores:.1f} cores → {coordinators} × {t.cores_per_coordinator}"
    )

    if coord_cores > shard_cores:
        say(
            f"note: the coordinators' per-shard work ({s.coordinator_per_shard_ms:.3f} ms a shard a "
            f"query) outweighs the shards' own: fewer, larger shards (--shard-memory-gib) cut it, "
            "and so would centroid placement (a query reaches few shards; not modelled here)"
        )
    cpu_row, how_c = _per_dim(m, [x.ingest_cpu_us_per_row for x in m.dims], d, "ingest CPU")
    build_cost, how_b = _per_dim(
        m, [1.0 / x.build_rows_per_s_per_core for x in m.dims], d, "build rate"
    )
    build_cost *= grow
    ingest_cores = t.upserts_per_second * replicas * (cpu_row / 1e6 + build_cost) / t.utilization
    if t.upserts_per_second:
        say(
            f"ingest cores: {t.upserts_per_second:,.0f} upserts/s × {replicas} replica(s) × "
            f"({cpu_row:.1f} µs written ({how_c}) + {build_cost * 1e6:.0f} µs built) / "
            f"{t.utilization:.0%} = {ingest_cores:.1f}"
        )
    shard_memory = fixed + rows * bpv
    total_memory = shard_memory * shards * replicas
    rebuild_h = rows * build_cost / t.cores_per_shard / 3600
    say(
        f"index build: {1 / build_cost:,.0f} rows/s per core at d={d} (cost per row {how_b}, "
        f"× the same log2 growth): one pass over a shard's rows takes {rebuild_h:.1f} h on its "
        f"{t.cores_per_shard} cores (VECSHARD__SHARD__BUILD_THREADS={t.cores_per_shard}), every "
        f"shard building at once; compactions that merge segments build their rows again"
    )
    return Plan(
        shards=shards,
        replicas=replicas,
        shard_processes=shards * replicas,
        vectors_per_shard=rows,
        shard_memory_bytes=shard_memory,
        total_memory_bytes=total_memory,
        shard_cores=shard_cores,
        coordinators=coordinators,
        coordinator_cores=coord_cores,
        ingest_cores=ingest_cores,
        total_cores=shard_cores + coord_cores + ingest_cores,
        rebuild_shard_hours=rebuild_h,
        derivation=out,
    )
