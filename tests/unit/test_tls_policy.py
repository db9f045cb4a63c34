"""Which listen addresses may serve plaintext, and the TLS settings' checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from hookkeeper.service.api.tls import (
    InsecureListenError,
    ReloadingCertificates,
    TlsConfigError,
    check_plaintext,
    is_loopback,
    peer_identities,
    server_tls_files,
)


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.3.4.5:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("unix:/run/hk.sock", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.0.0.5:50051", False),
        ("service:50051", False),
        (":50051", False),
    ],
)
def test_loopback_addresses(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


def test_plaintext_beyond_loopback_is_refused_unless_allowed() -> None:
    check_plaintext("127.0.0.1:1", allow_plaintext=False)
    check_plaintext("0.0.0.0:1", allow_plaintext=True)
    with pytest.raises(InsecureListenError, match="HOOKKEEPER_GRPC_ALLOW_PLAINTEXT"):
        check_plaintext("0.0.0.0:1", allow_plaintext=False)


def test_tls_settings_must_be_complete(tmp_path: Path) -> None:
    cert, key, ca = tmp_path / "c", tmp_path / "k", tmp_path / "ca"
    assert server_tls_files(None, None, None) is None
    with pytest.raises(TlsConfigError, match="KEY_FILE"):
        server_tls_files(cert, None, None)
    with pytest.raises(TlsConfigError, match="CLIENT_CA_FILE"):
        server_tls_files(None, None, ca)
    files = server_tls_files(cert, key, ca)
    assert files is not None and files.paths() == (cert, key, ca)


def _write(tmp_path: Path, cert: trustme.LeafCert) -> tuple[Path, Path]:
    cert_path, key_path = tmp_path / "server.pem", tmp_path / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path


def test_reload_only_when_the_files_change_and_fit(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert_path, key_path = _write(tmp_path, ca.issue_cert("127.0.0.1"))
    files = server_tls_files(cert_path, key_path, None)
    assert files is not None
    certificates = ReloadingCertificates(files)
    assert certificates() is None  # unchanged
    # A new certificate whose key is not there yet: the old pair stays.
    other = ca.issue_cert("127.0.0.1")
    other.cert_chain_pems[0].write_to_path(str(cert_path))
    assert certificates() is None
    assert certificates.reloads == 0
    other.private_key_pem.write_to_path(str(key_path))
    assert certificates() is not None
    assert certificates.reloads == 1
    assert certificates() is None


def test_missing_or_mismatched_files_are_refused_at_start(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert_path, key_path = _write(tmp_path, ca.issue_cert("127.0.0.1"))
    with pytest.raises(TlsConfigError, match="cannot read"):
        ReloadingCertificates(server_tls_files(cert_path, tmp_path / "absent", None))  # type: ignore[arg-type]
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(key_path))
    with pytest.raises(TlsConfigError, match="does not belong"):
        ReloadingCertificates(server_tls_files(cert_path, key_path, None))  # type: ignore[arg-type]


def test_peer_identities_are_sans_then_cn() -> None:
    context = {
        "x509_subject_alternative_name": [b"gw.internal", b"gw2.internal"],
        "x509_common_name": [b"gateway"],
        "transport_security_type": [b"ssl"],
    }
    assert peer_identities(context) == ["gw.internal", "gw2.internal", "gateway"]
    assert peer_identities({"x509_common_name": [b""]}) == []
