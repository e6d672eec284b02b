"""How the SDK proves who it is, and checks whom it talks to (DESIGN §10).

Coordinators serve TLS only and authenticate every call by a bearer token
(a JWT naming the calling principal). `Credentials` holds the token and,
when the coordinators' certificates come from a private CA, that CA's PEM
bytes — plain data: the SDK signs nothing and needs no crypto library.

Where credentials come from, first match wins:

1. `credentials=Credentials(...)` given to a client;
2. `token=` / `root_certificates=` given to a client;
3. the environment: `VECSHARD_TOKEN` (or `VECSHARD_TOKEN_FILE`, re-read by
   every new client, so a rotated token file needs no restart) and
   `VECSHARD_CA_FILE` — what `vecshard up` prints, and what the CLI uses.

No token at all is allowed (the call is then refused with UNAUTHENTICATED):
an SDK that refused to try would hide which side lacks the credentials.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from core.errors import InvalidArgument
from core.identity import AUTHORIZATION

ENV_TOKEN = "VECSHARD_TOKEN"
ENV_TOKEN_FILE = "VECSHARD_TOKEN_FILE"
ENV_CA_FILE = "VECSHARD_CA_FILE"


@dataclass(frozen=True)
class Credentials:
    token: str | None = None
    # PEM of the CA that signed the coordinators' certificates; None trusts
    # the system's roots.
    root_certificates: bytes | None = None
    # The TLS name to expect when it is not the host of the address (e.g.
    # through a port-forward); None: the address's host.
    server_name: str | None = None

    def __post_init__(self) -> None:
        # A token read from a file by the caller keeps its newline, which gRPC
        # refuses as metadata on every call (INTERNAL "Invalid metadata").
        if isinstance(self.token, str):
            object.__setattr__(self, "token", self.token.strip() or None)

    def __repr__(self) -> str:  # tokens are secrets: never print one
        token = "<set>" if self.token else None
        return (
            f"Credentials(token={token}, root_certificates="
            f"{'<pem>' if self.root_certificates else None}, server_name={self.server_name!r})"
        )

    @classmethod
    def from_files(
        cls,
        *,
        token_file: str | Path | None = None,
        ca_file: str | Path | None = None,
        server_name: str | None = None,
    ) -> Credentials:
        try:
            token = Path(token_file).read_text().strip() if token_file else None
            ca = Path(ca_file).read_bytes() if ca_file else None
        except OSError as exc:
            raise InvalidArgument(f"cannot read credentials: {exc}") from None
        return cls(token or None, ca, server_name)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        return cls(_env_token(env), _env_ca(env))

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """TLS only: the SDK sends the token as per-call metadata
        (`call_metadata`), which costs far less per call than gRPC's Python
        call-credentials plugin (a callback on another thread for every call).
        Only ever used on TLS channels, so the token never travels in clear."""
        return grpc.ssl_channel_credentials(self.root_certificates)

    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((AUTHORIZATION, f"Bearer {self.token}"),) if self.token else ()

    def composite_credentials(self) -> grpc.ChannelCredentials:
        """TLS with the token attached to every call of the channel, for raw
        stubs that do not pass metadata themselves."""
        tls = self.channel_credentials()
        if not self.token:
            return tls
        return grpc.composite_channel_credentials(
            tls, grpc.access_token_call_credentials(self.token)
        )

    def channel_options(self) -> list[tuple[str, str]]:
        if self.server_name:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []


def _env_token(env: Mapping[str, str]) -> str | None:
    """VECSHARD_TOKEN, else the token file's; the file is read only then, so a
    stale VECSHARD_TOKEN_FILE does not fail a client that does not use it."""
    # Stripped as the token file is: a token put in the environment from a
    # file or a Secret keeps its newline, which gRPC refuses in metadata
    # (INTERNAL "Invalid metadata") on every call.
    token = (env.get(ENV_TOKEN) or "").strip()
    if token:
        return token
    return Credentials.from_files(token_file=env.get(ENV_TOKEN_FILE) or None).token


def _env_ca(env: Mapping[str, str]) -> bytes | None:
    return Credentials.from_files(ca_file=env.get(ENV_CA_FILE) or None).root_certificates


def resolve(
    credentials: Credentials | None, token: str | None, root_certificates: bytes | None
) -> Credentials:
    """The credentials a client uses (see the module doc for the order)."""
    if credentials is not None:
        if token is not None or root_certificates is not None:
            raise InvalidArgument("give credentials= or token=/root_certificates=, not both")
        return credentials
    if token is not None or root_certificates is not None:
        # Only what was not given is looked up: token= wins over the
        # environment, so an unreadable VECSHARD_TOKEN_FILE must not matter.
        return Credentials(
            token if token is not None else _env_token(os.environ),
            root_certificates if root_certificates is not None else _env_ca(os.environ),
        )
    return Credentials.from_env()
