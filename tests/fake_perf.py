"""A stand-in `perf` for the profiling harness's own tests: `perf record -o F
...` writes F when interrupted (as perf does) and F.ready once it listens for
the interrupt and `perf report` prints a
fixed report. The harness wraps an external tool that CI machines may lack or
forbid; this checks the wrapping (start, stop by SIGINT, read back), while the
real tool is exercised where it may run (`test_bench_profile_search`)."""

from __future__ import annotations

from pathlib import Path

REPORT = """\
    40.00%  libpython3.11.so.1.0                      [.] _PyEval_EvalFrameDefault
    25.00%  [kernel.kallsyms]                         [k] finish_task_switch.isra.0
    20.00%  cygrpc.cpython-311-x86_64-linux-gnu.so    [.] 0x00000000001f2a10
    15.00%  libc.so.6                                 [.] malloc
"""

SCRIPT = """#!/bin/sh
if [ "$1" = "report" ]; then
  cat <<'END'
{report}END
  exit 0
fi
out=""
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then out="$2"; fi
  shift
done
trap 'echo recorded > "$out"; exit 0' INT
: > "$out.ready"
while :; do sleep 0.05; done
"""


def install(directory: Path) -> Path:
    """Writes the fake `perf` into `directory` (put it first on PATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "perf"
    path.write_text(SCRIPT.format(report=REPORT))
    path.chmod(0o755)
    return directory
