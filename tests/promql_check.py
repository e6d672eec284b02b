"""An offline syntax check of PromQL expressions, for the dashboard and the
alert rules in deploy/k8s/monitoring (promtool is not part of the machine
image). It tokenizes the expression and checks what a typo breaks: balanced
brackets, label matchers, range durations, function and aggregation names,
grouping clauses, and that every metric it names is one the code exports
(or an allowed external one)."""

from __future__ import annotations

import re
from collections.abc import Iterable

FUNCTIONS = {
    "abs",
    "absent",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count_over_time",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "ln",
    "log2",
    "max_over_time",
    "min_over_time",
    "predict_linear",
    "rate",
    "resets",
    "round",
    "scalar",
    "sort",
    "sort_desc",
    "sqrt",
    "sum_over_time",
    "time",
    "vector",
    "quantile_over_time",
    "label_values",
}
AGGREGATIONS = {
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "group",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<duration>\[[0-9]+[smhdwy](?::[0-9]*[smhdwy]?)?\])
  | (?P<number>[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<matcher>=~|!~|!=|==|>=|<=|=)
  | (?P<op>[-+*/%^<>,])
  | (?P<open>[({\[])
  | (?P<close>[)}\]])
  )""",
    re.VERBOSE,
)
PAIRS = {")": "(", "}": "{", "]": "["}


def tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"unexpected text at {pos}: {expr[pos : pos + 20]!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def metric_names(expr: str) -> set[str]:
    """Checks `expr`; returns the metric names it selects."""
    toks = tokens(expr)
    stack: list[str] = []
    names: set[str] = set()
    for i, (kind, text) in enumerate(toks):
        prev = toks[i - 1] if i else ("", "")
        nxt = toks[i + 1] if i + 1 < len(toks) else ("", "")
        if kind == "open":
            if text == "[":
                raise ValueError(f"malformed range (expected e.g. [5m]) in {expr!r}")
            stack.append(text)
        elif kind == "close":
            if not stack or stack.pop() != PAIRS[text]:
                raise ValueError(f"unbalanced {text!r} in {expr!r}")
        elif kind == "ident":
            in_braces = bool(stack) and stack[-1] == "{"
            in_grouping = bool(stack) and stack[-1] == "(" and _grouping_open(toks, stack, i)
            if in_braces:
                if nxt[0] != "matcher" or nxt[1] == "==":
                    raise ValueError(f"label {text!r} without a matcher in {expr!r}")
            elif in_grouping:
                pass
            elif nxt == ("open", "("):
                if text not in FUNCTIONS | AGGREGATIONS | GROUPING:
                    raise ValueError(f"unknown function {text!r} in {expr!r}")
            elif text in GROUPING:
                raise ValueError(f"{text!r} needs a label list in {expr!r}")
            elif text in AGGREGATIONS and nxt[1] in ("by", "without"):
                pass
            elif text not in KEYWORDS:
                names.add(text)
        elif (
            kind == "matcher"
            and stack
            and stack[-1] == "{"
            and (toks[i + 1][0] != "string" or prev[0] != "ident")
        ):
            raise ValueError(f"malformed label matcher in {expr!r}")
    if stack:
        raise ValueError(f"unclosed {stack[-1]!r} in {expr!r}")
    return names


def _grouping_open(toks: list[tuple[str, str]], stack: list[str], i: int) -> bool:
    """Whether the innermost open '(' follows by/without/on/ignoring/group_*."""
    depth = 0
    for j in range(i - 1, -1, -1):
        kind, text = toks[j]
        if kind == "close":
            depth += 1
        elif kind == "open":
            if depth == 0:
                return j > 0 and toks[j - 1][1] in GROUPING
            depth -= 1
    return False


def series_of(defined: Iterable[str]) -> set[str]:
    """Every series name a set of metric definitions exports."""
    out = set()
    for name in defined:
        base = name.removesuffix("_total")
        out |= {name, base + "_total", name + "_bucket", name + "_sum", name + "_count"}
    return out
