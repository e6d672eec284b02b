"""A stand-in `perf` for the profiling harness's own tests: `perf record -o F
...` writes F when interrupted (as perf does) and F.ready once it listens for
the interrupt and `perf report` prints a
fixed report. The harness wraps an external tool that CI machines may lack or
forbid; this checks the wrapping (start, stop by SIGINT, read back), while the
real tool is exercised where it may run (`test_bench_profile_search`)."""

from __future__ import annotations

import sys
from pathlib import Path

REPORT = """\
    40.00%  libpython3.11.so.1.0                      [.] _PyEval_EvalFrameDefault
    25.00%  [kernel.kallsyms]                         [k] finish_task_switch.isra.0
    20.00%  cygrpc.cpython-311-x86_64-linux-gnu.so    [.] 0x00000000001f2a10
    15.00%  libc.so.6                                 [.] malloc
"""

# Python, not sh: a shell cannot trap a signal that was ignored when it
# started (POSIX), and SIGINT is ignored in every job a non-interactive shell
# puts in the background — a suite run as `bash .ci/run &` would find the
# stand-in deaf to the interrupt that ends a recording. Python's handler is
# installed whatever the inherited disposition, as real perf's is.
SCRIPT = """#!{python}
import signal, sys
from pathlib import Path

args = sys.argv[1:]
if args[:1] == ["report"]:
    sys.stdout.write({report!r})
    sys.exit(0)
out = Path(args[args.index("-o") + 1])


def stop(signum, frame):
    out.write_text("recorded\\n")
    sys.exit(0)


signal.signal(signal.SIGINT, stop)
Path(str(out) + ".ready").touch()
while True:
    signal.pause()
"""


def install(directory: Path) -> Path:
    """Writes the fake `perf` into `directory` (put it first on PATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "perf"
    path.write_text(SCRIPT.format(python=sys.executable, report=REPORT))
    path.chmod(0o755)
    return directory
