"""A throw-away local PKI for `vecshard up` and the tests (DESIGN §10).

`vecshard up` must stay one command, and every connection is TLS, so it makes
what a real deployment gets from its PKI (cert-manager, Vault): a CA, one
certificate per component role (coordinator, shard, etcd) whose URI SAN names
the role, an Ed25519 key that signs bearer tokens and its public JWKS, and the
audit key. Everything lives under one directory, private keys 0600; an
existing, still-valid set is reused, so restarts keep their identities.

Principals' certificates (callers' x5c tokens) come from a second CA, the
principals CA, that only coordinators trust (`auth.client_ca_file`): etcd
trusts every client certificate of the cluster CA and has no RBAC, so a
principal certificate from the cluster CA could write the registry and grant
itself admin. A directory made before the principals CA existed gets one on
first use.

Elliptic-curve keys (P-256; Ed25519 for tokens): generating the whole set takes
milliseconds, so every test session and local cluster can afford its own.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.identity import ComponentRole, component_uri, principal_uri
from core.tls import TlsFiles

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
_DAY = datetime.timedelta(days=1)
CA_DAYS = 365
LEAF_DAYS = 90
# Renew what expires sooner than this when a cluster starts.
RENEW_BEFORE = datetime.timedelta(days=7)
# Local admin tokens: a week (a throw-away cluster; production mints short ones).
TOKEN_SECONDS = 7 * 86_400


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def write_private(path: Path, data: bytes) -> None:
    """Written 0600 from the start, then renamed into place (never world-readable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(hosts: Sequence[str], uris: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    return x509.SubjectAlternativeName(names)


@dataclass(frozen=True)
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(
        cls,
        name: str = "vecshard local CA",
        days: int = CA_DAYS,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> CertificateAuthority:
        """`key`: an existing CA key under a new certificate (a re-issued CA)."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + days * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key must be an EC key")
        return cls(key, x509.load_pem_x509_certificate(cert_pem))

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        hosts: Sequence[str] = (),
        uris: Sequence[str] = (),
        server: bool = True,
        client: bool = True,
        days: int = LEAF_DAYS,
    ) -> tuple[bytes, bytes]:
        """(certificate PEM, private key PEM) for a leaf signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [
            ExtendedKeyUsageOID.CLIENT_AUTH
        ] * client
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(min(_now() + days * _DAY, self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san(hosts, uris), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def jwk_of(public: ed25519.Ed25519PublicKey, kid: str) -> dict[str, str]:
    import base64

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}


def new_signing_key() -> tuple[bytes, dict[str, str]]:
    """(private key PEM, its public JWK with a random kid)."""
    key = ed25519.Ed25519PrivateKey.generate()
    return _pem_key(key), jwk_of(key.public_key(), f"local-{secrets.token_hex(4)}")


def _expiring(cert_path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return True
    return cert.not_valid_after_utc - _now() < RENEW_BEFORE


def _ensure_ca(cert_file: Path, key_file: Path, name: str) -> tuple[CertificateAuthority, bool]:
    """(the CA, whether it is new): made when missing or about to expire."""
    if _expiring(cert_file) or not key_file.exists():
        ca = CertificateAuthority.create(name)
        write_private(key_file, _pem_key(ca.key))
        cert_file.write_bytes(ca.cert_pem)
        return ca, True
    return CertificateAuthority.load(cert_file.read_bytes(), key_file.read_bytes()), False


@dataclass(frozen=True)
class LocalPki:
    """The files of a local cluster's PKI under `root`."""

    root: Path

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    def cert_file(self, name: str) -> Path:
        return self.root / f"{name}.pem"

    def key_file(self, name: str) -> Path:
        return self.root / f"{name}.key"

    def component(self, role: ComponentRole) -> TlsFiles:
        return TlsFiles(self.ca_file, self.cert_file(role.value), self.key_file(role.value))

    @property
    def etcd(self) -> TlsFiles:
        return TlsFiles(self.ca_file, self.cert_file("etcd"), self.key_file("etcd"))

    @property
    def principals_ca_file(self) -> Path:
        """The client CA of callers' x5c tokens, and nothing else: what
        coordinators' `auth.client_ca_file` names. Never a component's trust
        anchor (etcd would let its certificates write the registry)."""
        return self.root / "principals-ca.pem"

    @property
    def jwks_file(self) -> Path:
        return self.root / "jwks.json"

    @property
    def signing_key_file(self) -> Path:
        return self.root / "token-signing.key"

    @property
    def audit_key_file(self) -> Path:
        return self.root / "audit.key"

    def ca(self) -> CertificateAuthority:
        return CertificateAuthority.load(
            self.ca_file.read_bytes(), self.key_file("ca").read_bytes()
        )

    @classmethod
    def ensure(cls, root: Path, hosts: Sequence[str] = LOCAL_HOSTS) -> LocalPki:
        """Creates what is missing or about to expire; keeps the rest."""
        pki = cls(root)
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        ca, fresh_ca = _ensure_ca(pki.ca_file, pki.key_file("ca"), "vecshard local CA")
        pki.principals_ca()
        leaves = {
            ComponentRole.COORDINATOR.value: [component_uri(ComponentRole.COORDINATOR)],
            ComponentRole.SHARD.value: [component_uri(ComponentRole.SHARD)],
            "etcd": [],
        }
        for name, uris in leaves.items():
            if fresh_ca or _expiring(pki.cert_file(name)) or not pki.key_file(name).exists():
                cert, key = ca.issue(name, hosts=hosts, uris=uris)
                write_private(pki.key_file(name), key)
                pki.cert_file(name).write_bytes(cert)
        if not pki.signing_key_file.exists() or not pki.jwks_file.exists():
            key_pem, jwk = new_signing_key()
            write_private(pki.signing_key_file, key_pem)
            pki.jwks_file.write_text(json.dumps({"keys": [jwk]}, indent=2))
        if not pki.audit_key_file.exists():
            write_private(pki.audit_key_file, secrets.token_hex(32).encode())
        return pki

    def principals_ca(self) -> CertificateAuthority:
        """The principals CA, made on first use: a directory from a release
        that issued principal certificates from the cluster CA has none."""
        ca, _ = _ensure_ca(
            self.principals_ca_file, self.key_file("principals-ca"), "vecshard principals CA"
        )
        return ca

    def issue_principal_cert(self, name: str, days: int = LEAF_DAYS) -> tuple[bytes, bytes]:
        """A client certificate naming a principal (for self-signed x5c tokens),
        from the principals CA: no component trusts it, so it opens no TLS
        connection to etcd or a shard."""
        return self.principals_ca().issue(
            name, uris=[principal_uri(name)], server=False, client=True, days=days
        )

    def signing_kid(self) -> str:
        keys = json.loads(self.jwks_file.read_text())["keys"]
        return str(keys[-1]["kid"])

    def token_file(self, principal: str) -> Path:
        return self.root / "tokens" / f"{principal}.jwt"

    def mint(self, principal: str, ttl_seconds: float) -> str:
        from cli.tokens import mint_token

        return mint_token(
            self.signing_key_file.read_bytes(), self.signing_kid(), principal, ttl_seconds
        )

    def ensure_token(self, principal: str, ttl_seconds: float = TOKEN_SECONDS) -> Path:
        """A token file for `principal`, minted again when it has less than a
        day left; the path is what VECSHARD_TOKEN_FILE points at."""
        import jwt

        path = self.token_file(principal)
        try:
            claims = jwt.decode(path.read_text(), options={"verify_signature": False})
            if float(claims["exp"]) - _now().timestamp() > 86_400:
                return path
        except (OSError, jwt.PyJWTError, KeyError, ValueError):
            pass
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, self.mint(principal, ttl_seconds).encode())
        return path
