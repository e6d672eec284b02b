"""Finding the highest request rate a deployment sustains under a p99 bound.

Step the offered rate up geometrically until a step breaks the bound (or shows errors),
then bisect between the last good and the first bad rate a few times. A step counts as
sustainable only if its p99 (from the scheduled send time, so queueing counts) is within
the bound, no request failed, and the generator really sent the offered rate — a saturated
load generator must read as "the generator is the limit", never as a server figure.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

# The generator must send at least this share of the offered rate for a step to count.
MIN_SEND_SHARE = 0.95


@dataclass(frozen=True)
class RateSearch:
    bound_ms: float
    start_rate: float = 100.0
    factor: float = 1.5
    max_rate: float = 100_000.0
    refine: int = 2
    # How many times to step down when the start rate already fails.
    max_step_downs: int = 5

    def __post_init__(self) -> None:
        if not (self.bound_ms > 0 and self.start_rate > 0 and self.factor > 1):
            raise ValueError("need bound_ms > 0, start_rate > 0 and factor > 1")


def judge(summary: dict[str, Any], bound_ms: float) -> dict[str, Any]:
    """One step's verdict from its ``load_report.summarize`` output."""
    rate = summary["target_rate"]
    p99 = summary["latency"].get("p99_ms")
    send_rate = summary["send_rate"] or 0.0
    reasons = []
    if summary["errors"]:
        reasons.append(f"{summary['errors']} errors {summary['errors_by_code']}")
    if summary["partial"]:
        reasons.append(f"{summary['partial']} partial results")
    if p99 is None:
        reasons.append("no successful requests")
    elif p99 > bound_ms:
        reasons.append(f"p99 {p99:.2f} ms > {bound_ms:g} ms")
    generator_limited = send_rate < MIN_SEND_SHARE * summary["scheduled_rate"]
    if generator_limited:
        reasons.append(
            f"the load generator sent only {send_rate:.0f}/s of {summary['scheduled_rate']:.0f}/s "
            "(client CPU is the limit at this rate, not the server)"
        )
    return {
        "rate": rate,
        "p50_ms": summary["latency"].get("p50_ms"),
        "p99_ms": p99,
        "errors": summary["errors"],
        "errors_by_code": summary["errors_by_code"],
        "partial": summary["partial"],
        "send_rate": summary["send_rate"],
        "ok_rate": summary["ok_rate"],
        "send_lag_p99_ms": summary["send_lag"].get("p99_ms"),
        "generator_limited": generator_limited,
        "sustainable": not reasons,
        "reason": "; ".join(reasons) or "within bound",
    }


class Stopped(Exception):
    """The user asked to stop (Ctrl-C) between steps."""


async def find_max_rate(
    run_step: Callable[[float], Awaitable[dict[str, Any]]],
    search: RateSearch,
    say: Callable[[str], None] = lambda _: None,
    stopped: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Runs steps through ``run_step(rate) -> summary`` and returns every verdict and the
    highest sustainable rate (``None`` if even the lowest tried rate failed). When
    ``stopped()`` turns true it ends after the current step with what it has found."""
    steps: list[dict[str, Any]] = []

    async def step(rate: float) -> bool:
        if stopped():
            raise Stopped
        verdict = judge(await run_step(rate), search.bound_ms)
        steps.append(verdict)
        say(
            f"rate {rate:9.1f}/s: p99 {verdict['p99_ms'] or math.nan:8.2f} ms — {verdict['reason']}"
        )
        return bool(verdict["sustainable"])

    good: float | None = None
    bad: float | None = None
    rate = search.start_rate
    try:
        if await step(rate):
            good = rate
            while rate * search.factor <= search.max_rate:
                rate *= search.factor
                if not await step(rate):
                    bad = rate
                    break
                good = rate
        else:
            bad = rate
            for _ in range(search.max_step_downs):
                rate /= search.factor
                if await step(rate):
                    good = rate
                    break
                bad = rate
        for _ in range(search.refine):
            if good is None or bad is None:
                break
            mid = (good + bad) / 2
            if await step(mid):
                good = mid
            else:
                bad = mid
    except Stopped:
        say("stopped: reporting the steps run so far")
    failing = next((s for s in steps if s["rate"] == bad), None)
    return {
        "p99_bound_ms": search.bound_ms,
        "max_sustainable_rate": good,
        "first_failing_rate": bad,
        "limited_by": None if failing is None else failing["reason"],
        "generator_limited": bool(failing and failing["generator_limited"]),
        "steps": steps,
    }
