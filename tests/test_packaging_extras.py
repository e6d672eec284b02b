"""The distribution's extras (pyproject.toml) match what the code imports: the bare
install is the SDK (grpcio, protobuf, numpy), and each extra is enough for the
packages it is for, proved by importing every one of their modules in an
interpreter where everything outside that extra is missing."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from functools import cache

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cli.extras import EXTRA_MODULES
from tests.import_blocker import REPO, run_blocked

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NAME = canonicalize_name(PROJECT["name"])

# What each extra is for: packages (every module in them) and single modules that
# must import with the SDK plus that extra alone; and vecshard's own packages they
# must not need.
EXTRA_IMPORTS = {
    # The servers, `vecshard up` and the whole CLI.
    "server": (
        ["core", "registry", "shard_server", "coordinator", "client", "cli"],
        {"offline", "benchmarks", "tests"},
    ),
    # The offline platform and `vecshard features materialize`.
    "offline": (
        ["offline", "client", "cli.main", "cli.feature_commands", "registry.codec"],
        {"shard_server", "coordinator", "benchmarks", "tests"},
    ),
    # The benchmark and load-test harness.
    "bench": (["benchmarks"], {"tests"}),
    # OpenTelemetry for the SDK's and the servers' spans (core.tracing).
    "tracing": (
        ["core.tracing", "client"],
        {"registry", "shard_server", "coordinator", "offline", "tests"},
    ),
}
IMPORT_ALL = """\
import importlib, pkgutil
count = 0
for target in sys.argv[1:]:
    module = importlib.import_module(target)
    count += 1
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), target + "."):
        importlib.import_module(info.name)
        count += 1
print(f"imported {count} modules")
"""


def requirements(extra: str | None) -> list[Requirement]:
    texts = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    return [Requirement(t) for t in texts]


@cache
def distributions(extra: str | None) -> frozenset[str]:
    """Third-party distributions `pip install vecshard[extra]` asks for, self-references
    (vecshard[server]) expanded; extra None is the bare install."""
    out: set[str] = set()
    for req in requirements(extra) + (requirements(None) if extra else []):
        if canonicalize_name(req.name) == NAME:
            for inner in req.extras:
                out |= distributions(inner)
        else:
            out.add(canonicalize_name(req.name))
    return frozenset(out)


def installed_closure(names: frozenset[str]) -> set[str]:
    """`names` and everything they require, as installed here."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in reqs:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def modules_of(dists: set[str]) -> set[str]:
    """Top-level modules that only `dists` provide."""
    return {
        module
        for module, providers in importlib.metadata.packages_distributions().items()
        if providers and {canonicalize_name(p) for p in providers} <= dists
    }


def test_the_bare_install_is_the_sdk() -> None:
    assert distributions(None) == {"grpcio", "protobuf", "numpy"}


def test_the_extras_build_on_each_other() -> None:
    assert set(PROJECT["optional-dependencies"]) == {
        "server",
        "offline",
        "bench",
        "dev",
        "gpu",
        "tracing",
    }
    assert {"opentelemetry-api", "opentelemetry-sdk"} <= distributions("tracing")
    assert distributions("dev") >= distributions("tracing")
    assert distributions("bench") >= distributions("server") | distributions("offline")
    assert distributions("dev") >= distributions("bench")
    assert {"h5py", "matplotlib"} <= distributions("bench")
    assert {"pytest", "grpcio-tools", "import-linter", "kubernetes-validate"} <= distributions(
        "dev"
    )
    assert "pyarrow" not in distributions("server")
    assert distributions("gpu") == {"faiss-gpu", "grpcio", "protobuf", "numpy"}


@pytest.mark.parametrize("extra", sorted(EXTRA_MODULES))
def test_the_cli_asks_for_the_extra_that_brings_a_module(extra: str) -> None:
    """`vecshard up` says "install the server extra" because of these modules: each must
    come from a distribution of that extra."""
    providers = importlib.metadata.packages_distributions()
    for module in EXTRA_MODULES[extra]:
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists & distributions(extra), f"{module} ({dists}) is not in vecshard[{extra}]"


@pytest.mark.parametrize("extra", sorted(EXTRA_IMPORTS))
def test_an_extra_is_enough_for_its_packages(extra: str) -> None:
    targets, own_blocked = EXTRA_IMPORTS[extra]
    allowed = installed_closure(distributions(extra))
    others = set().union(*(distributions(e) for e in PROJECT["optional-dependencies"]))
    blocked = modules_of(others - allowed)
    assert blocked, "nothing to block: the check would prove nothing"
    out = run_blocked(blocked | own_blocked, IMPORT_ALL, targets)
    assert out.returncode == 0, f"vecshard[{extra}] without {sorted(blocked)}:\n{out.stderr}"
    assert "imported" in out.stdout


def test_the_check_fails_when_an_extra_lacks_a_module() -> None:
    """The blocker really removes a module the servers need."""
    out = run_blocked({"hnswlib"}, IMPORT_ALL, ["shard_server"])
    assert out.returncode != 0
    assert "No module named 'hnswlib'" in out.stderr


def test_make_installs_the_dev_extra_again_only_when_pyproject_changes() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("run", "test", "lint", "bench"):
        assert re.search(rf"^{target}: install\b", makefile, re.M), target
    assert re.search(r"^install: \$\(STAMP\)$", makefile, re.M)
    rule = re.search(r"^\$\(STAMP\): pyproject\.toml\b.*?\n((?:\t.*\n)+)", makefile, re.M)
    assert rule, "the stamp file must depend on pyproject.toml"
    assert "pip install" in rule.group(1) and "-e '.[dev]'" in rule.group(1)
    assert "touch $(STAMP)" in rule.group(1)
