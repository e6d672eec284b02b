"""`NAME@VERSION` references on the command line (embedding, group and index versions)."""

from __future__ import annotations


def split_ref(text: str, option: str = "--embedding") -> tuple[str, str]:
    name, sep, version = text.partition("@")
    if not sep or not name or not version:
        raise SystemExit(f"{option} {text!r}: expected NAME@VERSION, e.g. demo_items@v1")
    return name, version
