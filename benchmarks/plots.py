"""PNG plots of benchmark results (matplotlib, headless).

matplotlib is imported only here and only when a plot is drawn, so the harness still runs
(and writes its JSON) where it is not installed; the caller gets ``None`` and says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _pyplot() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


@dataclass(frozen=True)
class Curve:
    """One line of a recall/QPS plot: colour by index kind, marker and style by setup."""

    label: str
    kind: str
    shards: int | None  # None for in-process
    batched: bool  # SearchBatch calls rather than one query per call
    points: Sequence[tuple[float, float, str]]  # (recall, qps, annotation)


_KIND_COLOURS = {"flat": "tab:blue", "hnsw": "tab:orange", "ivfpq": "tab:green"}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def recall_qps(curves: Sequence[Curve], path: Path, title: str) -> Path | None:
    """Recall on x, QPS on a log y axis, one line per (kind, setup): colour = kind, marker =
    shard count (× in-process), dashed = in-process, dotted = SearchBatch; points annotated
    with their search parameter (``ef_search=64``)."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(10, 6.5))
    shard_counts = sorted({c.shards for c in curves if c.shards is not None})
    for curve in curves:
        pts = sorted(p for p in curve.points if p[1] > 0)
        if not pts:
            continue
        inproc = curve.shards is None
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            "--" if inproc else (":" if curve.batched else "-"),
            marker="x"
            if curve.shards is None
            else _MARKERS[shard_counts.index(curve.shards) % len(_MARKERS)],
            color=_KIND_COLOURS.get(curve.kind, "tab:grey"),
            label=curve.label,
        )
        for recall, qps, note in pts:
            if note:
                ax.annotate(
                    note, (recall, qps), fontsize=6, xytext=(3, 3), textcoords="offset points"
                )
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (log)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(plt, fig, path)


def latency_timeline(summary: Mapping[str, Any], path: Path, title: str) -> Path | None:
    """p50/p99/max latency per second (log scale), error counts, and fault events."""
    plt = _pyplot()
    if plt is None:
        return None
    rows = summary["timeline"]
    fig, (ax, ax_err) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    t = [r["t_s"] for r in rows]
    for key, style in (("p50_ms", "-"), ("p99_ms", "-"), ("max_ms", ":")):
        values = [r[key] if r[key] is not None else math.nan for r in rows]
        ax.plot(t, values, style, marker=".", label=key.replace("_ms", ""))
    ax.set_yscale("log")
    ax.set_ylabel("latency from scheduled send (ms)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    errors = [sum(r["errors_by_code"].values()) for r in rows]
    partial = [r["partial"] for r in rows]
    ax_err.bar(t, errors, width=0.8, align="edge", color="tab:red", label="errors")
    ax_err.bar(
        t, partial, width=0.8, align="edge", bottom=errors, color="tab:orange", label="partial"
    )
    ax_err.set_ylabel("per second")
    ax_err.set_xlabel("seconds since start (scheduled time)")
    for event in summary.get("events", []):
        for axis in (ax, ax_err):
            axis.axvline(event["at_s"], color="grey", linestyle="--", linewidth=1)
        ax.annotate(
            event["name"],
            (event["at_s"], 1),
            xycoords=("data", "axes fraction"),
            fontsize=8,
            rotation=90,
            va="top",
            ha="right",
        )
    ax.legend(fontsize=8)
    ax_err.legend(fontsize=8)
    return _save(plt, fig, path)


def rate_steps(
    steps: Sequence[Mapping[str, Any]], bound_ms: float, path: Path, title: str
) -> Path | None:
    """p99 against offered rate for each step of a max-rate search, with the bound."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    pts = sorted(
        (s["rate"], s["p99_ms"], s["sustainable"]) for s in steps if s["p99_ms"] is not None
    )
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color="grey", alpha=0.5)
    for rate, p99, ok in pts:
        ax.plot(rate, p99, "o", color="tab:green" if ok else "tab:red")
    ax.axhline(bound_ms, color="tab:red", linestyle="--", label=f"p99 bound {bound_ms:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
