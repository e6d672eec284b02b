"""Who is calling: bearer tokens (JWT) verified by the coordinator (DESIGN §10).

Why tokens, not client certificates, for callers of the public API: gRPC's
Python server can either demand a client certificate of every peer or ask for
none — it cannot ask and leave the decision to the application. Demanding one
would refuse missing or foreign certificates inside the TLS handshake, where
nothing can answer `UNAUTHENTICATED`, name the reason, or write the refusal
to the audit trail. A token is checked per call, after the handshake: the
refusal is a status with a reason and an audit record. Tokens also pass
through L7 proxies and meshes that terminate TLS, expire on their own, and
rotate with their keys (several `kid`s in the JWKS at once).

Two ways to sign a token, one verifier:

- by an issuer key: `kid` names a key in the JWKS file (`[auth] jwks_file`);
- by the principal itself, with the key of a certificate from the client CA
  (`[auth] client_ca_file`) carried in the `x5c` header; the certificate must
  name the principal (`spiffe://vecshard/principal/<sub>`). A certificate
  from another CA is refused like a bad signature. The client CA must not be
  the cluster CA (`refuse_cluster_ca`): etcd trusts every client certificate
  of the cluster CA, so principals' certificates from it could write the
  registry.

Verified tokens are cached until they expire, so a busy caller pays for the
signature check once, not per request; expiry is still checked per request.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import verification

from core.errors import Unauthenticated
from core.identity import AUTHORIZATION, DEFAULT_ISSUER, TOKEN_AUDIENCE, principal_uri

ALGORITHMS = ["EdDSA", "ES256"]
# The longest token (header + claims + an x5c chain) a coordinator parses.
MAX_TOKEN_BYTES = 16 * 1024
_REQUIRED = ["exp", "iat", "sub", "aud", "iss"]


@dataclass(frozen=True)
class Identity:
    principal: str
    expires_at: float
    # "jwks" (issuer key) or "x5c" (the principal's own certificate)
    via: str


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The token of `authorization: Bearer <jwt>`; UNAUTHENTICATED when absent."""
    for key, value in metadata or ():
        if key == AUTHORIZATION:
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
            return token.strip()
    raise Unauthenticated(
        "no credentials: send a bearer token (authorization: Bearer <jwt>); "
        "`vecshard up` prints how to get one"
    )


class _Jwks:
    """The issuer keys, re-read when the file changes (key rotation): on an
    unknown kid, and at most `recheck` seconds after the last look otherwise
    — re-read only for unknown kids, a key removed after a leak kept
    verifying new tokens until a restart (found in review)."""

    def __init__(self, path: Path | None, recheck: float = 5.0) -> None:
        self.path = path
        self.recheck = recheck
        self.keys: dict[str, Any] = {}
        self.generation = 0  # how many times the key set changed
        self._mtime = -1.0
        self._checked = 0.0
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        if self.path is None:
            return
        with self._lock:
            self._checked = time.monotonic()
            mtime = self.path.stat().st_mtime
            if mtime == self._mtime:
                return
            doc = json.loads(self.path.read_text())
            keys = {}
            for jwk in doc.get("keys", []):
                keys[str(jwk["kid"])] = jwt.PyJWK(jwk).key
            if keys != self.keys:
                self.generation += 1
            self.keys, self._mtime = keys, mtime

    def reload_if_due(self) -> None:
        if time.monotonic() - self._checked >= self.recheck:
            self.reload()

    def get(self, kid: str) -> Any:
        if kid not in self.keys:
            self.reload()
        return self.keys.get(kid)


def refuse_cluster_ca(client_ca_pem: bytes, cluster_ca_pem: bytes) -> None:
    """Raises ValueError when the client CA bundle shares a CA key with the
    cluster CA bundle. Principals' certificates must come from a CA of their
    own: etcd accepts any client certificate of the cluster CA and has no
    RBAC, so a caller's own certificate from it could write itself an admin
    grant. Compared by public key, so a re-issued CA certificate counts too."""

    def keys(pem: bytes) -> set[bytes]:
        return {
            c.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            for c in x509.load_pem_x509_certificates(pem)
        }

    if keys(client_ca_pem) & keys(cluster_ca_pem):
        raise ValueError(
            "auth.client_ca_file holds the cluster CA (tls.ca_file or tls.etcd_ca_file): "
            "principals' certificates must come from a CA of their own, which etcd and "
            "shards do not trust (`vecshard auth pki` makes principals-ca.pem; SECURITY.md §1)"
        )


class TokenVerifier:
    def __init__(
        self,
        jwks_file: Path | None,
        client_ca_pem: bytes | None = None,
        *,
        issuer: str = DEFAULT_ISSUER,
        leeway: float = 30.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
        jwks_recheck: float = 5.0,
    ) -> None:
        if jwks_file is None and client_ca_pem is None:
            raise ValueError("no way to verify tokens: set [auth] jwks_file and/or client_ca_file")
        self.jwks = _Jwks(jwks_file, jwks_recheck)
        self.client_cas = x509.load_pem_x509_certificates(client_ca_pem) if client_ca_pem else []
        self.issuer = issuer
        self.leeway = leeway
        self.clock = clock
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Identity] = OrderedDict()
        self._cached_generation = self.jwks.generation
        self._lock = threading.Lock()

    def verify(self, token: str) -> Identity:
        now = self.clock()
        self.jwks.reload_if_due()
        with self._lock:
            self._forget_if_rotated()
            hit = self._cache.get(token)
            if hit is not None:
                self._cache.move_to_end(token)
        if hit is not None:
            if hit.expires_at + self.leeway < now:
                raise Unauthenticated(f"token of {hit.principal!r} expired")
            return hit
        identity = self._verify(token, now)  # may re-read the keys (an unknown kid)
        with self._lock:
            self._forget_if_rotated()
            self._cache[token] = identity
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return identity

    def _forget_if_rotated(self) -> None:
        """Keys changed since the cache was filled: a token of a removed key
        must not pass from it. Compared with the generation the cache holds,
        not one read per call — a re-read inside another call's verification
        (a new kid) moved it between two reads, and the cache was never
        emptied (found in review). Holds `_lock`."""
        if self._cached_generation != self.jwks.generation:
            self._cache.clear()
            self._cached_generation = self.jwks.generation

    def _verify(self, token: str, now: float) -> Identity:
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated(f"token of {len(token)} bytes exceeds {MAX_TOKEN_BYTES}")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"malformed token: {exc}") from None
        if header.get("alg") not in ALGORITHMS:
            raise Unauthenticated(f"token algorithm {header.get('alg')!r}; expected {ALGORITHMS}")
        if "x5c" in header:
            key, via, cert_names = self._x5c_key(header["x5c"], now), "x5c", True
        else:
            key = self.jwks.get(str(header.get("kid", "")))
            if key is None:
                raise Unauthenticated(
                    f"token signed by unknown key {str(header.get('kid'))[:64]!r}"
                )
            via, cert_names = "jwks", False
        claims = self._decode(token, key, now)
        principal = str(claims["sub"])
        expires = float(claims["exp"])
        if cert_names:
            self._check_names(key, principal)
            # Cached, a token must not outlive the certificate that signed it.
            assert isinstance(key, _CertKey)
            expires = min(expires, key.cert.not_valid_after_utc.timestamp())
        return Identity(principal, expires, via)

    def _decode(self, token: str, key: Any, now: float) -> Mapping[str, Any]:
        try:
            claims: Mapping[str, Any] = jwt.decode(
                token,
                key if not isinstance(key, _CertKey) else key.public_key,
                algorithms=ALGORITHMS,
                audience=TOKEN_AUDIENCE,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED, "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        if not str(claims.get("sub", "")):
            raise Unauthenticated("token names no principal (empty sub)")
        return claims

    def _x5c_key(self, chain: object, now: float) -> _CertKey:
        if not self.client_cas:
            raise Unauthenticated("certificate-signed (x5c) tokens are not accepted here")
        if not isinstance(chain, list) or not chain or len(chain) > 4:
            raise Unauthenticated("x5c must list 1 to 4 certificates")
        try:
            certs = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in chain]
        except (ValueError, TypeError) as exc:
            raise Unauthenticated(f"x5c certificate does not parse: {exc}") from None
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(self.client_cas))
            .time(datetime.datetime.fromtimestamp(now, datetime.UTC))
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(certs[0], certs[1:])
        except verification.VerificationError as exc:
            raise Unauthenticated(
                f"token certificate is not from a trusted CA or not valid now ({exc})"
            ) from None
        return _CertKey(certs[0], verified.subjects or [])

    @staticmethod
    def _check_names(key: Any, principal: str) -> None:
        assert isinstance(key, _CertKey)
        uris = {n.value for n in key.subjects if isinstance(n, x509.UniformResourceIdentifier)}
        if principal_uri(principal) not in uris:
            raise Unauthenticated(
                f"token certificate does not name principal {principal!r} "
                f"(expected URI SAN {principal_uri(principal)})"
            )


@dataclass(frozen=True)
class _CertKey:
    cert: x509.Certificate
    subjects: Sequence[x509.GeneralName]

    @property
    def public_key(self) -> Any:
        return self.cert.public_key()
