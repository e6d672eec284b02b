"""Benchmarks for vecshard: datasets with exact ground truth, recall and latency reporting."""
