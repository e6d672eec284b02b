"""Typed, frozen, validated configuration: defaults → TOML file → environment
(`VECSHARD__SECTION__KEY`) → command-line flags. Invalid values fail at start-up
with the source named; nothing falls back silently."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


class ConfigError(ValueError):
    pass


def _coerce(tp: Any, raw: Any, where: str) -> Any:
    if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if raw is None or raw == "":
            return None
        tp = args[0]
    try:
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if tp in (int, float, str):
            if tp is int and isinstance(raw, float):
                raise ValueError(raw)
            return tp(raw)
        if typing.get_origin(tp) is tuple:
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(
                _coerce(typing.get_args(tp)[0], i.strip() if isinstance(i, str) else i, where)
                for i in items
                if i != ""
            )
        if isinstance(tp, type) and issubclass(tp, Path):
            return Path(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: {raw!r} is not a valid {getattr(tp, '__name__', tp)}"
        ) from None
    return raw


def load_settings(
    cls: type[T],
    section: str,
    *,
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Builds `cls` (a frozen dataclass) from every source, later ones winning."""
    env = os.environ if env is None else env
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if file is not None:
        try:
            doc = tomllib.loads(Path(file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {file}: {exc}") from None
        table = doc.get(section, {})
        unknown = set(table) - names
        if unknown:
            raise ConfigError(f"config file {file} [{section}]: unknown keys {sorted(unknown)}")
        values.update(
            {k: _coerce(hints[k], v, f"{file} [{section}].{k}") for k, v in table.items()}
        )
    env_prefix = f"VECSHARD__{section.upper()}__"
    for var, raw in env.items():
        if var.startswith(env_prefix):
            key = var[len(env_prefix) :].lower()
            if key not in names:
                raise ConfigError(
                    f"environment {var}: unknown setting; expected one of {sorted(names)}"
                )
            values[key] = _coerce(hints[key], raw, f"environment {var}")
    for key, raw in (overrides or {}).items():
        if raw is not None:
            values[key] = _coerce(hints[key], raw, f"--{key.replace('_', '-')}")
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}] {exc}") from None
    return obj


def run_server(main: typing.Callable[[], int], role: str) -> int:
    """A server's entry point: a setting that is missing or wrong (a
    `ConfigError`, or TLS files not set or unreadable) is one line naming it
    and exit status 2, and etcd unreachable past the start-up wait one line
    and 1 — not a traceback ahead of the message in the logs."""
    import sys

    from core.errors import Unavailable
    from core.tls import TlsConfigError

    try:
        return main()
    except (ConfigError, TlsConfigError) as exc:
        print(f"vecshard {role}: configuration error: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:  # etcd still unreachable after the start-up wait
        print(f"vecshard {role}: cannot start: {exc.message}", file=sys.stderr)
        return 1
