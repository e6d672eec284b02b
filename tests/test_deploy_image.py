"""The container image (deploy/Dockerfile): wheels built in one stage and installed,
without compilers or dev tools, in a runtime stage that runs as non-root; and a build
context that keeps what the wheel build needs."""

from __future__ import annotations

import fnmatch
import re
import tomllib

from tests.k8s_render import DEPLOY, REPO


def _dockerfile_stages() -> list[list[str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    lines = [ln.strip() for ln in logical.splitlines() if ln.strip() and not ln.startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_builds_wheels_then_runs_them_as_non_root() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (script,) = pyproject["project"]["scripts"]
    build, runtime = _dockerfile_stages()
    assert build[0].split()[1:] == ["python:3.11-slim", "AS", "build"]
    assert runtime[0].split()[1] == "python:3.11-slim"
    build_text, runtime_text = "\n".join(build), "\n".join(runtime)
    assert "g++" in build_text and "gcc" in build_text
    # The servers' and the offline jobs' dependencies, not the dev or bench tools.
    assert "pip wheel --wheel-dir /wheels '.[server,offline]'" in build_text
    assert "--find-links /wheels 'vecshard[server,offline]'" in runtime_text
    assert "HNSWLIB_NO_NATIVE=1" in build_text, "a -march=native hnswlib would not be portable"
    assert "gcc" not in runtime_text
    assert not re.search(r"\[[^\]]*\b(dev|bench)\b", build_text + runtime_text)
    assert "--no-index" in runtime_text and "from=build" in runtime_text
    assert "USER 10001:10001" in runtime
    assert f'ENTRYPOINT ["{script}"]' in runtime
    assert 'CMD ["--help"]' in runtime


def test_docker_context_keeps_what_the_wheel_build_needs() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = ["pyproject.toml", pyproject["project"]["readme"]]
    needed += [p.rstrip("*") + "/__init__.py" for p in packages]
    for path in needed:
        for pattern in patterns:
            assert not fnmatch.fnmatch(path, pattern), f"{pattern!r} drops {path}"
            assert not path.startswith(pattern.rstrip("/") + "/"), f"{pattern!r} drops {path}"


def test_the_build_stage_copies_every_package_the_wheel_includes() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    build, _ = _dockerfile_stages()
    copied: set[str] = set()
    for line in build:
        if line.upper().startswith("COPY "):
            copied.update(part.rstrip("/") for part in line.split()[1:-1])
    missing = [
        p for p in ["pyproject.toml", pyproject["project"]["readme"], *packages] if p not in copied
    ]
    assert not missing, f"deploy/Dockerfile does not COPY {missing}"
    # Each is a real package directory in the repository.
    for package in packages:
        assert (REPO / package / "__init__.py").is_file(), package
