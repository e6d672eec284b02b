"""Pinning OpenBLAS to a number of threads in this process, without a new dependency.

numpy's bundled OpenBLAS starts one thread per core for every matrix-vector product. On the
2-vCPU VM the benchmarks run on, a 100,000 x 128 float32 product takes about 56 ms that way
and 3 ms on one thread (measured), and N caller threads each fanning out to N BLAS threads
oversubscribe the cores. The in-process flat baseline must use the threads it is given, so
this calls OpenBLAS's own ``set_num_threads`` in whichever OpenBLAS this process has loaded
(what ``threadpoolctl`` does, reduced to the one library we use).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


def _loaded_openblas() -> list[str]:
    np.ones(2) @ np.ones(2)  # make sure BLAS is loaded
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()}
    return sorted(p for p in paths if p.startswith("/"))


def set_blas_threads(threads: int) -> bool:
    """Sets OpenBLAS's thread count; False when no OpenBLAS setter was found (other BLAS)."""
    found = False
    for path in _loaded_openblas():
        lib = ctypes.CDLL(path)
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(threads))
                found = True
                break
    return found
