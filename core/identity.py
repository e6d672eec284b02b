"""Who is calling: the names both planes and the tools agree on (DESIGN §10).

Cluster components prove their role with a certificate whose URI SAN is a
SPIFFE id, `spiffe://vecshard/<role>`; shards accept calls only from peers
whose mutual-TLS certificate names a component role. Callers of the public
API (services, people) are *principals*, named by the `sub` of a signed
bearer token (JWT) and granted access in the registry.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

TRUST_DOMAIN = "vecshard"
SPIFFE_PREFIX = f"spiffe://{TRUST_DOMAIN}/"
# A principal's certificate (for self-signed x5c tokens) names it like this.
PRINCIPAL_URI_PREFIX = f"{SPIFFE_PREFIX}principal/"

# JWT claims: `aud` must name vecshard, `sub` is the principal.
TOKEN_AUDIENCE = "vecshard"
DEFAULT_ISSUER = "vecshard"
# The bearer token travels as gRPC's standard `authorization` metadata.
AUTHORIZATION = "authorization"


class ComponentRole(StrEnum):
    COORDINATOR = "coordinator"
    SHARD = "shard"


def component_uri(role: ComponentRole) -> str:
    return f"{SPIFFE_PREFIX}{role.value}"


def principal_uri(name: str) -> str:
    return f"{PRINCIPAL_URI_PREFIX}{name}"


def peer_component(identities: Iterable[bytes] | None) -> ComponentRole | None:
    """The component role a mutual-TLS peer's certificate proves, if any.

    `identities`: what gRPC reports as the verified peer's identities
    (`context.peer_identities()`: its certificate's subject alternative names,
    as bytes; cheaper per call than the whole auth context). A certificate
    naming anything else (a principal, another trust domain) proves no role.
    """
    for name in identities or ():
        text = name.decode(errors="replace")
        if text.startswith(SPIFFE_PREFIX):
            try:
                return ComponentRole(text[len(SPIFFE_PREFIX) :])
            except ValueError:
                continue
    return None
