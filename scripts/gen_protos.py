"""Generate the Python modules for protos/vecshard/**/*.proto.

Run from the repository root (`make protos`). Proto files are compiled with the
repository root as include path, so their registered names start with
`protos/vecshard/v1/` and cannot collide with other packages' protos (etcd's
client registers its own `rpc.proto`, `kv.proto`, ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos" / "vecshard"


def proto_files(root: Path = ROOT) -> list[Path]:
    return sorted((root / "protos" / "vecshard").rglob("*.proto"))


def generate(out_dir: Path, root: Path = ROOT) -> None:
    """Write the generated modules for every proto under `root` into `out_dir`."""
    files = proto_files(root)
    if not files:
        raise SystemExit(f"no .proto files under {root / 'protos' / 'vecshard'}")
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(f.relative_to(root)) for f in files],
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: repo root)")
    args = parser.parse_args()
    generate(args.out)
    print(f"generated stubs for {len(proto_files())} proto files under {args.out / 'protos'}")


if __name__ == "__main__":
    sys.exit(main())
