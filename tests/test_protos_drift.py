"""The committed generated stubs must be exactly what `make protos` produces."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _gen_module():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_stubs_match_proto_files(tmp_path: Path) -> None:
    gen = _gen_module()
    gen.generate(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert fresh, "protoc generated nothing"
    stale = []
    for rel in fresh:
        committed = ROOT / rel
        if not committed.exists() or committed.read_bytes() != (tmp_path / rel).read_bytes():
            stale.append(str(rel))
    assert not stale, f"generated stubs are out of date, run `make protos`: {stale}"
    # Nothing generated is left behind once its .proto is gone.
    generated_here = {
        p.relative_to(ROOT)
        for p in (ROOT / "protos" / "vecshard").rglob("*")
        if p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))
    }
    assert generated_here == set(fresh)


def test_proto_names_are_unique_paths() -> None:
    from protos.vecshard.v1 import common_pb2, retrieval_pb2
    from protos.vecshard.v1.internal import shard_pb2

    names = {m.DESCRIPTOR.name for m in (common_pb2, retrieval_pb2, shard_pb2)}
    assert all(n.startswith("protos/vecshard/v1/") for n in names), names
    import pyetcd  # noqa: F401 - both must load in one process without a descriptor clash
