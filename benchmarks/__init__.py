"""Benchmarks for vecshard: data sets with exact ground truth, recall/QPS curves against
in-process baselines (``vecshard bench search``), an open-loop load-test harness with fault
injection (``vecshard loadtest``) and ``make bench`` (``python -m benchmarks``); see
``benchmarks/README.md``."""
