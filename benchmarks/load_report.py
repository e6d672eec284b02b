"""What a load test reports, computed from a ``LoadRun``'s per-request columns.

Latency percentiles come from ``LatencyHistogram`` (numpy's ``method="higher"`` order
statistic within 1%), for successful requests, measured from the scheduled send time. The
report also separates what the generator itself contributed (send lag, and latency from
the actual send), so a saturated load generator is never mistaken for a slow server.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.latency import LatencyHistogram
from benchmarks.latency import summarize_ms as latency_summary
from benchmarks.open_loop import OK, Event, LoadRun


def histogram_of(values: NDArray[np.float64]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    # Clock reads can tie; a latency is never negative.
    histogram.record_many(np.maximum(values[~np.isnan(values)], 0.0))
    return histogram


def code_counts(run: LoadRun, mask: NDArray[np.bool_]) -> dict[str, int]:
    """Completed requests by status code name (``OK`` included), for rows in ``mask``."""
    codes = run.code[mask & run.completed]
    return {
        run.code_names[c]: int(n)
        for c, n in zip(*np.unique(codes, return_counts=True), strict=True)
    }


def rates(run: LoadRun) -> dict[str, float | None]:
    """Offered, sent and answered rates.

    ``send_rate`` is the rate the generator sustained: the inverse slope of a least-squares
    line through the actual send times in send order. A momentary stall followed by a
    catch-up burst barely moves it; a generator that keeps falling behind the schedule
    shows a lower rate. ``ok_rate`` divides successful answers by the time from the first
    send to the last answer.
    """
    sent = np.sort(run.sent[~np.isnan(run.sent)])
    n_sent = len(sent)
    done = run.done[run.completed]
    send_rate = None
    if n_sent > 2 and sent[-1] > sent[0]:
        slope = float(np.polyfit(np.arange(n_sent, dtype=np.float64), sent, 1)[0])
        send_rate = 1.0 / slope if slope > 0 else None
    span = float(done.max() - sent[0]) if n_sent and len(done) else 0.0
    ok = int(run.ok.sum())
    return {
        "target_rate": run.config.rate,
        "scheduled_rate": len(run.scheduled) / run.config.duration,
        "send_rate": send_rate,
        "ok_rate": ok / span if span > 0 else None,
    }


def summarize(run: LoadRun) -> dict[str, Any]:
    """The end report as a JSON-ready dict."""
    everything = np.ones(len(run.scheduled), dtype=np.bool_)
    ok = run.ok
    errors = run.completed & ~ok
    by_kind = {}
    for index, name in enumerate(run.kind_names):
        mask = run.kind == index
        by_kind[name] = {
            "scheduled": int(mask.sum()),
            "codes": code_counts(run, mask),
            "partial": int((run.partial & mask).sum()),
            "latency": latency_summary(np.where(ok & mask, run.latency, np.nan)),
        }
    codes = code_counts(run, everything)
    return {
        "config": {
            "rate": run.config.rate,
            "duration_s": run.config.duration,
            "arrivals": run.config.arrivals,
            "seed": run.config.seed,
            "timeout_s": run.config.timeout,
        },
        "interrupted": run.interrupted,
        "scheduled": len(run.scheduled),
        "sent": int((~np.isnan(run.sent)).sum()),
        "completed": int(run.completed.sum()),
        "ok": int(ok.sum()),
        "errors": int(errors.sum()),
        "errors_by_code": {c: n for c, n in codes.items() if c != OK},
        "partial": int(run.partial.sum()),
        **rates(run),
        "latency": latency_summary(np.where(ok, run.latency, np.nan)),
        "latency_of_errors": latency_summary(np.where(errors, run.latency, np.nan)),
        "service_latency": latency_summary(np.where(ok, run.done - run.sent, np.nan)),
        "send_lag": latency_summary(run.sent - run.scheduled),
        "by_kind": by_kind,
        "timeline": timeline(run),
        "events": [{"at_s": e.at, "name": e.name, "detail": e.detail} for e in run.events],
        "windows": event_windows(run) if run.events else [],
    }


def _window_stats(run: LoadRun, mask: NDArray[np.bool_]) -> dict[str, Any]:
    ok = run.ok & mask
    lat = run.latency[ok]
    histogram = histogram_of(lat)
    codes = code_counts(run, mask)
    return {
        "scheduled": int(mask.sum()),
        "ok": int(ok.sum()),
        "errors_by_code": {c: n for c, n in codes.items() if c != OK},
        "partial": int((run.partial & mask).sum()),
        "p50_ms": histogram.percentile(50) * 1e3 if histogram.count else None,
        "p99_ms": histogram.percentile(99) * 1e3 if histogram.count else None,
        "max_ms": histogram.max * 1e3 if histogram.count else None,
    }


def timeline(run: LoadRun, step: float = 1.0) -> list[dict[str, Any]]:
    """Per ``step`` seconds of scheduled time: requests, outcomes and latency percentiles."""
    n_steps = max(1, math.ceil(run.config.duration / step))
    slot = np.minimum((run.scheduled // step).astype(np.int64), n_steps - 1)
    return [
        {"t_s": s * step, **_window_stats(run, slot == s)}
        for s in range(n_steps)
        if (slot == s).any()
    ]


def event_windows(run: LoadRun) -> list[dict[str, Any]]:
    """Requests grouped by the event they were scheduled after: before the first event,
    between consecutive events, after the last. This is what clients saw around a fault."""
    bounds: Sequence[Event] = sorted(run.events, key=lambda e: e.at)
    edges = [0.0, *(e.at for e in bounds), math.inf]
    names = ["start", *(e.name for e in bounds)]
    out = []
    for i, name in enumerate(names):
        lo, hi = edges[i], edges[i + 1]
        mask = (run.scheduled >= lo) & (run.scheduled < hi)
        label = f"{name} → {names[i + 1]}" if i + 1 < len(names) else f"{name} → end"
        out.append({"window": label, "from_s": lo, "to_s": min(hi, run.config.duration)})
        out[-1].update(_window_stats(run, mask))
    return out


def format_report(summary: dict[str, Any], title: str = "load test") -> str:
    """A short human-readable rendering of ``summarize``'s output."""
    lat = summary["latency"]
    lines = [
        f"== {title}: target {summary['target_rate']:.1f}/s for {summary['config']['duration_s']:g}s"
        f" ({summary['config']['arrivals']} arrivals)",
        f"   sent {summary['sent']} of {summary['scheduled']} scheduled; send rate "
        f"{_num(summary['send_rate'])}/s; ok {summary['ok']} ({_num(summary['ok_rate'])}/s); "
        f"errors {summary['errors']} {summary['errors_by_code'] or ''}; partial {summary['partial']}",
    ]
    if lat["count"]:
        lines.append(
            "   latency from scheduled time (ok): "
            + "  ".join(
                f"{k[:-3]} {lat[k]:.2f}" for k in lat if k.endswith("_ms") and k != "mean_ms"
            )
            + " ms"
        )
    lag = summary["send_lag"]
    if lag["count"]:
        lines.append(
            f"   generator send lag: p50 {lag['p50_ms']:.2f} ms  p99 {lag['p99_ms']:.2f} ms  "
            f"max {lag['max_ms']:.2f} ms"
        )
    for name, kind in summary["by_kind"].items():
        kl = kind["latency"]
        p = f"p50 {kl['p50_ms']:.2f} / p99 {kl['p99_ms']:.2f} ms" if kl["count"] else "no answers"
        lines.append(f"   {name:<16} {kind['scheduled']:>8} scheduled  {kind['codes']}  {p}")
    for w in summary["windows"]:
        p99 = "-" if w["p99_ms"] is None else f"{w['p99_ms']:.2f} ms"
        lines.append(
            f"   [{w['from_s']:6.2f}s – {w['to_s']:6.2f}s] {w['window']:<24} scheduled {w['scheduled']:>6}"
            f"  ok {w['ok']:>6}  errors {w['errors_by_code'] or 0}  partial {w['partial']}  p99 {p99}"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
