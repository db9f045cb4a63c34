"""``hookkeeper tls dev-certs DIR``: a private CA, a server certificate and
client certificates for a local stack (the compose file runs it first), so
even a laptop deployment speaks mTLS. Not for production: use your PKI."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=90)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    names: list[str],
    usage: x509.ObjectIdentifier,
    now: datetime.datetime,
) -> tuple[bytes, bytes]:
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def make_dev_certs(
    folder: Path, server_names: list[str], clients: list[str], *, force: bool = False
) -> bool:
    """Writes ca.pem, server.pem/.key and CLIENT.pem/.key for each client
    into ``folder``; False (nothing written) when ca.pem exists already."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "ca.pem").exists() and not force:
        return False
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca_name = _key(), _name("Hookkeeper development CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert, key = _leaf(ca_key, ca_name, server_names, ExtendedKeyUsageOID.SERVER_AUTH, now)
    _write(folder / "server.pem", cert)
    _write(folder / "server.key", key, private=True)
    for client in clients:
        cert, key = _leaf(ca_key, ca_name, [client], ExtendedKeyUsageOID.CLIENT_AUTH, now)
        stem = client.split(".")[0]
        _write(folder / f"{stem}.pem", cert)
        _write(folder / f"{stem}.key", key, private=True)
    # Last: its presence means the set is complete (a crash before leaves none).
    _write(folder / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    return True


@click.group()
def tls() -> None:
    """TLS helpers (docs/security.md)."""


@tls.command("dev-certs")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--server-name",
    "server_names",
    multiple=True,
    default=("service", "localhost", "127.0.0.1"),
    show_default=True,
    help="SANs of the server certificate (repeatable).",
)
@click.option(
    "--client",
    "clients",
    multiple=True,
    default=("gateway.internal", "ops.internal"),
    show_default=True,
    help="Client certificates to make, by SAN (file name: its first label).",
)
@click.option("--force", is_flag=True, help="Replace an existing set.")
def dev_certs(
    folder: Path, server_names: tuple[str, ...], clients: tuple[str, ...], force: bool
) -> None:
    """Make a development CA, server and client certificates in FOLDER
    (kept when FOLDER/ca.pem exists). Not for production."""
    if make_dev_certs(folder, list(server_names), list(clients), force=force):
        click.echo(f"wrote a development CA and certificates to {folder}")
    else:
        click.echo(f"{folder / 'ca.pem'} exists: keeping the certificates there")
