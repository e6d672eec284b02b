"""TLS for every gRPC server and channel of a cluster (DESIGN §10).

Every server serves TLS; servers that only cluster components may call (shards)
also demand a client certificate from the cluster CA (mutual TLS). The material
comes from PEM files named in the `[tls]` settings (`VECSHARD__TLS__CA_FILE`,
`..._CERT_FILE`, `..._KEY_FILE`; the etcd client may use other files). A server
refuses to start without them: there is no plaintext mode to fall back to.

Servers re-read their certificate files when they change (cert-manager renews
them in place), so a renewal needs no restart; the files are checked at most
once per `RELOAD_CHECK_SECONDS`, on new handshakes only.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 5.0


class TlsConfigError(ValueError):
    """TLS settings missing or unreadable: the server must not start."""


@dataclass(frozen=True, repr=False)
class TlsIdentity:
    """A CA bundle to trust, and this process's certificate chain and key."""

    ca: bytes
    cert: bytes
    key: bytes

    def __repr__(self) -> str:  # never print a private key
        return f"TlsIdentity(ca={len(self.ca)}B, cert={len(self.cert)}B, key=<hidden>)"

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Client side of mutual TLS: verify the server against the CA and
        present our certificate."""
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def read(self) -> TlsIdentity:
        try:
            return TlsIdentity(
                self.ca_file.read_bytes(), self.cert_file.read_bytes(), self.key_file.read_bytes()
            )
        except OSError as exc:
            raise TlsConfigError(f"cannot read TLS material: {exc}") from None

    def mtimes(self) -> tuple[float, ...]:
        try:
            return tuple(p.stat().st_mtime for p in (self.ca_file, self.cert_file, self.key_file))
        except OSError:
            return ()


@dataclass(frozen=True)
class TlsSettings:
    """Section `[tls]` of a shard's or coordinator's settings."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # etcd may have its own CA and client certificate; each defaults to the above.
    etcd_ca_file: Path | None = None
    etcd_cert_file: Path | None = None
    etcd_key_file: Path | None = None

    def files(self) -> TlsFiles:
        missing = [
            f"tls.{n}"
            for n, v in (
                ("ca_file", self.ca_file),
                ("cert_file", self.cert_file),
                ("key_file", self.key_file),
            )
            if v is None
        ]
        if missing:
            raise TlsConfigError(
                f"{', '.join(missing)} not set; every vecshard server serves TLS "
                "(set VECSHARD__TLS__CA_FILE, VECSHARD__TLS__CERT_FILE, VECSHARD__TLS__KEY_FILE "
                "or a [tls] table; `vecshard up` makes a local CA)"
            )
        assert self.ca_file and self.cert_file and self.key_file
        return TlsFiles(self.ca_file, self.cert_file, self.key_file)

    def etcd_files(self) -> TlsFiles:
        own = self.files()
        return TlsFiles(
            self.etcd_ca_file or own.ca_file,
            self.etcd_cert_file or own.cert_file,
            self.etcd_key_file or own.key_file,
        )


@dataclass
class _Reloader:
    files: TlsFiles
    require_client_cert: bool
    seen: tuple[float, ...] = ()
    checked: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def config(self) -> grpc.ServerCertificateConfiguration:
        material = self.files.read()
        return grpc.ssl_server_certificate_configuration(
            [(material.key, material.cert)],
            root_certificates=material.ca if self.require_client_cert else None,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC on new handshakes: a new configuration when the files
        changed, else None (keep the current one)."""
        now = time.monotonic()
        with self.lock:
            if now - self.checked < RELOAD_CHECK_SECONDS:
                return None
            self.checked = now
            mtimes = self.files.mtimes()
            if not mtimes or mtimes == self.seen:
                return None
            try:
                cfg = self.config()
            except (TlsConfigError, ValueError) as exc:
                log.warning("TLS files changed but cannot be read yet (%s); keeping the old", exc)
                return None
            self.seen = mtimes
            log.info("TLS certificate files changed; serving the new certificate")
            return cfg


def server_credentials(files: TlsFiles, *, require_client_cert: bool) -> grpc.ServerCredentials:
    """TLS for a server; with `require_client_cert`, only peers presenting a
    certificate from the CA complete the handshake (mutual TLS)."""
    reloader = _Reloader(files, require_client_cert)
    reloader.seen = files.mtimes()
    reloader.checked = time.monotonic()
    return grpc.dynamic_ssl_server_credentials(
        reloader.config(),
        reloader.fetch,  # type: ignore[arg-type]  # grpc's stub omits None, which its docs allow ("keep the current configuration")
        require_client_authentication=require_client_cert,
    )
