"""Fails when a Python module of ours is over 500 lines (DESIGN §1: keep
modules small and named after what they hold). A long module is where
unrelated code collects, as in the god objects STYLE.md tells us to avoid;
past the limit, split it by what it holds rather than raise the limit.

Checks every .py and .pyi file git tracks, or would track (new files count
before they are added; ignored ones, such as the virtual environment, do
not), except the modules generated from the protos (`*_pb2.py`,
`*_pb2_grpc.py` and their `.pyi` stubs), which are read, not written. Run
by `make lint`; prints every offender with its line count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 500
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi", "_pb2_grpc.pyi")


def modules(root: Path = ROOT) -> list[Path]:
    """The repository's Python files, generated code left out."""
    listed = subprocess.run(
        [
            "git",
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            "*.py",
            "*.pyi",
        ],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout.decode()
    paths = sorted({p for p in listed.split("\0") if p})
    return [
        root / p
        for p in paths
        if not p.endswith(GENERATED_SUFFIXES) and (root / p).is_file()  # deleted, not yet staged
    ]


def line_count(path: Path) -> int:
    """Lines as `wc -l` counts them, plus a last line without a newline."""
    data = path.read_bytes()
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def main() -> int:
    files = modules()
    offenders = [(path, n) for path in files if (n := line_count(path)) > MAX_LINES]
    for path, n in offenders:
        print(f"{path.relative_to(ROOT)}: {n} lines (limit {MAX_LINES}; split it by what it holds)")
    print(f"{len(files)} modules, {len(offenders)} over {MAX_LINES} lines")
    return 1 if offenders else 0


if __name__ == "__main__":
    sys.exit(main())
