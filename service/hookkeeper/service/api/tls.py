"""Transport security of the gRPC server: TLS (and mTLS) credentials that are
re-read when their PEM files change, and the refusal to serve plaintext on an
address other hosts can reach."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

_log = logging.getLogger(__name__)


class TlsConfigError(ValueError):
    """The TLS settings are incomplete or the files cannot be used."""


class InsecureListenError(ValueError):
    """Plaintext was asked for on an address that is not loopback."""


@dataclass(frozen=True)
class ServerTlsFiles:
    """Where the server's certificate chain, key and (mTLS) client CA live."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def paths(self) -> tuple[Path, ...]:
        """Every file the credentials are made of."""
        return (self.cert, self.key, *([self.client_ca] if self.client_ca else []))


def server_tls_files(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> ServerTlsFiles | None:
    """The TLS files from the settings; None for plaintext; TlsConfigError
    when only some of them are given."""
    if cert is None and key is None:
        if client_ca is not None:
            raise TlsConfigError(
                "HOOKKEEPER_GRPC_TLS_CLIENT_CA_FILE needs HOOKKEEPER_GRPC_TLS_CERT_FILE "
                "and HOOKKEEPER_GRPC_TLS_KEY_FILE"
            )
        return None
    if cert is None or key is None:
        raise TlsConfigError(
            "set both HOOKKEEPER_GRPC_TLS_CERT_FILE and HOOKKEEPER_GRPC_TLS_KEY_FILE"
        )
    return ServerTlsFiles(cert, key, client_ca)


def _stamp(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int], ...]:
    # Inode too: rotation by rename (the atomic way) may keep size and mtime.
    found = []
    for path in paths:
        info = os.stat(path)
        found.append((info.st_mtime_ns, info.st_size, info.st_ino))
    return tuple(found)


def _check_pair(cert_pem: bytes, key_pem: bytes) -> None:
    """TlsConfigError unless the key belongs to the chain's first certificate
    (a half-finished rotation must not replace a working pair)."""
    try:
        certificate = x509.load_pem_x509_certificates(cert_pem)[0]
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, IndexError) as error:
        raise TlsConfigError(f"cannot parse the certificate or key: {error}") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if certificate.public_key().public_bytes(encoding, public) != key.public_key().public_bytes(
        encoding, public
    ):
        raise TlsConfigError("the key does not belong to the certificate")


class ReloadingCertificates:
    """Server credentials whose certificate, key and client CA are re-read
    when the files change, without a restart.

    gRPC calls this object (the certificate configuration fetcher) before
    each new TLS handshake; it answers None (keep the current configuration)
    unless a file's stamp changed. A pair that does not fit together or does
    not parse (say, the certificate was replaced and the key not yet) keeps
    the last good configuration and is logged; the next change is tried again.
    """

    def __init__(self, files: ServerTlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        try:
            self._seen = _stamp(files.paths())
            self.initial = self._load()
        except OSError as error:
            raise TlsConfigError(f"cannot read {error.filename}: {error.strerror}") from None
        self.reloads = 0

    def _load(self) -> grpc.ServerCertificateConfiguration:
        cert_pem = self.files.cert.read_bytes()
        key_pem = self.files.key.read_bytes()
        _check_pair(cert_pem, key_pem)
        roots = self.files.client_ca.read_bytes() if self.files.client_ca else None
        if roots is not None:
            try:
                x509.load_pem_x509_certificates(roots)
            except ValueError:
                raise TlsConfigError("the client CA file holds no PEM certificate") from None
        return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)], roots)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """The new configuration when the files changed since last seen, else None."""
        with self._lock:
            try:
                stamp = _stamp(self.files.paths())
            except OSError:
                return None  # mid-rotation (a file briefly missing): keep serving
            if stamp == self._seen:
                return None
            self._seen = stamp
            try:
                config = self._load()
            except (OSError, TlsConfigError) as error:
                _log.warning(
                    "TLS files changed but cannot be used yet (%s); keeping the old", error
                )
                return None
            self.reloads += 1
            _log.info("TLS certificate reloaded from %s", self.files.cert)
            return config

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for ``add_secure_port``; a client certificate signed by
        the client CA is mandatory when one is configured."""
        return grpc.dynamic_ssl_server_credentials(
            self.initial,
            # gRPC accepts None from the fetcher (keep the current configuration).
            cast(Callable[[], grpc.ServerCertificateConfiguration], self),
            require_client_authentication=self.files.client_ca is not None,
        )


def is_loopback(listen: str) -> bool:
    """Whether ``host:port`` (or ``[v6]:port``, ``unix:path``) is reachable
    only from this machine."""
    if listen.startswith(("unix:", "unix-abstract:")):
        return True
    host = listen.rpartition(":")[0] if ":" in listen else listen
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or wildcard: others may reach it


def check_plaintext(listen: str, *, allow_plaintext: bool) -> None:
    """InsecureListenError for plaintext on a non-loopback address unless allowed."""
    if allow_plaintext or is_loopback(listen):
        return
    raise InsecureListenError(
        f"refusing to serve plaintext gRPC on {listen}: it is not a loopback address, so "
        "tokens, API keys and secrets would cross the network unencrypted. Set "
        "HOOKKEEPER_GRPC_TLS_CERT_FILE and HOOKKEEPER_GRPC_TLS_KEY_FILE (docs/security.md), "
        "or HOOKKEEPER_GRPC_ALLOW_PLAINTEXT=true when something else encrypts the traffic"
    )


def peer_identities(auth_context: Mapping[str, Iterable[bytes]]) -> list[str]:
    """The SANs and common name of a verified client certificate (none without mTLS)."""
    names: list[str] = []
    for key in ("x509_subject_alternative_name", "x509_common_name"):
        names += [v.decode(errors="replace") for v in auth_context.get(key, []) if v]
    return names
