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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from cli.capacity_measurements import MeasurementError, Measurements, fit_line, mean

MIB = 1 << 20
GIB = 1 << 30


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
    a, b = fit_line(dims, values)
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
        ref_how = f"in process at {s.setting or 'the same setting'} ({s.inprocess_how})"
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
    empty = mean([x.empty_shard_bytes for x in m.dims])
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
