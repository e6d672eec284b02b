"""`vecshard --help` lists every command with what it does; every command's and
sub-command's --help works; with only the SDK installed the CLI still starts, and a
command that needs an extra exits naming it instead of failing with a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.import_blocker import EXTRA_ONLY_MODULES, run_blocked

VECSHARD = str(Path(sys.executable).parent / "vecshard")

# Every command, and words its description must contain to be true.
COMMANDS = {
    "up": ("local cluster", "loopback"),
    "shard": ("shard server",),
    "coordinator": ("run a coordinator",),
    "search": ("top-k search", "route"),
    "get": ("fetch stored embeddings",),
    "describe-route": ("what a route resolves to",),
    "registry": ("registry administration",),
    "delete-subject": ("erase a user or item everywhere", "verify"),
    "auth": ("cluster PKI", "bearer tokens"),
    "audit": ("verify, archive or export", "audit trail"),
    "features": ("feature", "materialize"),
    "embeddings": ("model changes", "backfill", "dual-write", "evaluate"),
    "rollout": ("new image", "one shard at a time"),
    "bench": ("recall/QPS benchmark", "in process", "local clusters"),
    "loadtest": ("open-loop load test",),
    "soak": ("chaos soak", "invariants"),
    "capacity": ("shards, cores and memory", "measured benchmark figures"),
}
SUBCOMMANDS = {
    "registry": [
        "apply",
        "get",
        "list",
        "promote",
        "switch",
        "rollback",
        "history",
        "check-compat",
        "drain",
        "undrain",
        "status",
        "train-placement",
    ],
    "features": ["materialize"],
    "embeddings": ["backfill", "evaluate", "dual-write", "add-attribute"],
    "auth": ["pki", "principal-cert", "token", "bootstrap-admin"],
    "audit": ["verify", "archive", "export"],
    "rollout": ["shards"],
    "bench": ["search"],
}
CLI_MAIN = "from cli.main import main\nraise SystemExit(main(sys.argv[1:]))\n"


def vecshard(*args: str) -> subprocess.CompletedProcess[str]:
    # Wide enough that argparse does not wrap a description across lines.
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(
        [VECSHARD, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def listed_commands(help_text: str) -> dict[str, str]:
    """The `name  description` rows under "commands:" in argparse's help."""
    section = help_text.split("\ncommands:\n", 1)[1]
    return dict(re.findall(r"^ {4}(\S+)(?: {2,}|\n {6,})(\S.*)$", section, flags=re.M))


def test_top_level_help_lists_every_command_with_a_true_description() -> None:
    out = vecshard("--help")
    assert out.returncode == 0, out.stderr
    listed = listed_commands(out.stdout)
    assert sorted(listed) == sorted(COMMANDS)
    for name, words in COMMANDS.items():
        for word in words:
            assert word in listed[name], f"{name}: {listed[name]!r} does not say {word!r}"
    # They are tools that measure a cluster, not servers.
    for name in ("bench", "loadtest", "soak"):
        assert "server" not in listed[name], listed[name]


def test_no_command_prints_the_help_and_exits_2() -> None:
    out = vecshard()
    assert out.returncode == 2
    assert sorted(listed_commands(out.stdout)) == sorted(COMMANDS)


def test_a_bad_path_or_vector_is_a_one_line_error_not_a_traceback(tmp_path: Path) -> None:
    nowhere = "127.0.0.1:1"  # never reached: each is refused first
    for args, message, code in [
        (["registry", "apply", "-f", str(tmp_path / "nope.yaml")], "nope.yaml: No such file", 2),
        (["registry", "apply", "-f", str(tmp_path)], ": Is a directory", 2),
        (["registry", "train-placement", "ix@v1", "--sample", "/nope.npy"], "/nope.npy: No such", 2),
        (["search", "--route", "r", "--tenant", "t", "--purpose", "p", "--vector", "1,x"],
         "--vector '1,x': expected numbers separated by commas", 1),
    ]:  # fmt: skip
        out = vecshard(*args, "--coordinator", nowhere)
        assert (out.returncode, out.stderr.count("\n")) == (code, 1), out.stderr[-2000:]
        assert message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_working_help(command: str) -> None:
    out = vecshard(command, "--help")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(f"usage: vecshard {command}"), out.stdout[:300]
    for sub in SUBCOMMANDS.get(command, []):
        assert re.search(rf"^ {{4}}{re.escape(sub)}\b", out.stdout, flags=re.M), (sub, out.stdout)


@pytest.mark.parametrize(
    ("command", "sub"), [(c, s) for c, subs in SUBCOMMANDS.items() for s in subs]
)
def test_every_subcommand_has_working_help(command: str, sub: str) -> None:
    out = vecshard(command, sub, "--help")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(f"usage: vecshard {command} {sub}"), out.stdout[:300]


# ------------------------------------------------------------ with the SDK only


def test_the_cli_starts_with_the_sdk_alone() -> None:
    out = run_blocked(EXTRA_ONLY_MODULES, CLI_MAIN, ["--help"])
    assert out.returncode == 0, out.stderr
    assert sorted(listed_commands(out.stdout)) == sorted(COMMANDS)
    for args in (
        ["search", "--help"],
        ["registry", "apply", "--help"],
        ["rollout", "shards", "-h"],
    ):
        out = run_blocked(EXTRA_ONLY_MODULES, CLI_MAIN, args)
        assert out.returncode == 0, (args, out.stderr)


@pytest.mark.parametrize(
    ("args", "command", "extra"),
    [
        (["up", "--once"], "up", "server"),
        (["shard", "--help"], "shard", "server"),
        (["coordinator"], "coordinator", "server"),
        (["bench", "search", "--help"], "bench", "bench"),
        (["loadtest", "--local"], "loadtest", "bench"),
        (["soak", "--duration", "1"], "soak", "bench"),
        (
            [
                "features",
                "materialize",
                "--group",
                "g@v1",
                "--offline",
                ".",
                "--coordinator",
                "x:1",
            ],
            "features materialize",
            "offline",
        ),
        (
            ["embeddings", "backfill", "--from", ".", "--to", "e@v2", "--coordinator", "x:1"],
            "embeddings backfill",
            "offline",
        ),
        (
            ["embeddings", "evaluate", "ix@v2", "--coordinator", "x:1"],
            "embeddings evaluate",
            "offline",
        ),
    ],
)
def test_a_command_that_needs_a_missing_extra_names_it(
    args: list[str], command: str, extra: str, tmp_path: Path
) -> None:
    if args[0] == "up":
        args = [*args, "--data-dir", str(tmp_path / "data")]
    out = run_blocked(EXTRA_ONLY_MODULES, CLI_MAIN, args)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert f"`vecshard {command}` needs the {extra} extra" in out.stderr, out.stderr
    assert f"pip install 'vecshard[{extra}]'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists()  # nothing was started


@pytest.mark.parametrize(
    ("role", "args", "missing"),
    [
        ("coordinator", ["--etcd", "127.0.0.1:1"], "auth.jwks_file or auth.client_ca_file"),
        ("shard", ["--shard-id", "s0", "--etcd", "127.0.0.1:1"], "tls.ca_file"),
    ],
)
def test_a_server_missing_a_setting_says_which_in_one_line(
    role: str, args: list[str], missing: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECSHARD")}
    out = subprocess.run(
        [VECSHARD, role, *args, "--data-dir", str(tmp_path)] if role == "shard" else
        [VECSHARD, role, *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith(f"vecshard {role}: configuration error:") and missing in out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
