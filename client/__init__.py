"""Typed Python SDK, the `vecshard` CLI, and the local cluster runner."""
