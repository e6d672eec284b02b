"""Minting bearer tokens (JWT) for principals — the issuer's side.

Coordinators only verify (`coordinator.authn`); signing keys never reach them.
Two shapes, both verified by the same code:

- issued: signed by an issuer key (`vecshard auth token --signing-key`), the
  verifier finds the public key in its JWKS by `kid`;
- self-signed by a principal holding a certificate from the client CA: the
  certificate chain travels in the `x5c` header and must name the principal
  (`spiffe://vecshard/principal/<name>`).
"""

from __future__ import annotations

import base64
import math
import time
import uuid
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from core.identity import DEFAULT_ISSUER, TOKEN_AUDIENCE


def _claims(principal: str, ttl_seconds: float, issuer: str, now: float | None) -> dict[str, Any]:
    t = int(time.time() if now is None else now)
    return {
        "iss": issuer,
        "sub": principal,
        "aud": TOKEN_AUDIENCE,
        "iat": t,
        "nbf": t - 5,
        # Rounded up: exp is in whole seconds, and int() made a 0.5 s token
        # expire at its own iat (a negative TTL still mints an expired token).
        "exp": t + math.ceil(ttl_seconds),
        "jti": uuid.uuid4().hex,
    }


def mint_token(
    signing_key_pem: bytes,
    kid: str,
    principal: str,
    ttl_seconds: float,
    *,
    issuer: str = DEFAULT_ISSUER,
    now: float | None = None,
) -> str:
    key = serialization.load_pem_private_key(signing_key_pem, password=None)
    return jwt.encode(
        _claims(principal, ttl_seconds, issuer, now),
        key,  # type: ignore[arg-type]  # PyJWT's stub narrows keys to its own union; an Ed25519 key is valid
        algorithm="EdDSA" if key.__class__.__name__.startswith("Ed25519") else "ES256",
        headers={"kid": kid},
    )


def mint_x5c_token(
    cert_pem: bytes,
    key_pem: bytes,
    principal: str,
    ttl_seconds: float,
    *,
    issuer: str = DEFAULT_ISSUER,
    now: float | None = None,
) -> str:
    """A token the principal signs itself with the key of its certificate."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    key = serialization.load_pem_private_key(key_pem, password=None)
    return jwt.encode(
        _claims(principal, ttl_seconds, issuer, now),
        key,  # type: ignore[arg-type]  # as above: an EC private key is a valid ES256 key
        algorithm="ES256",
        headers={"x5c": [der]},
    )
