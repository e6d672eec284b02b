"""Reading a server's Prometheus `/metrics` from a benchmark: the figures a
run cannot see from outside (how a coordinator batched, what a shard keeps
in memory) go into its JSON beside the timings."""

from __future__ import annotations

from urllib.request import urlopen

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]  # sample name, labels, value


def samples(metrics_port: int, family: str) -> list[Sample]:
    """Every sample of one metric family (histograms: `_count`, `_sum`, ...)."""
    with urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return [
        (s.name, dict(s.labels), float(s.value))
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
    ]
