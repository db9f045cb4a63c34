"""``hookkeeper tls dev-certs`` (what the compose stack runs): the CA,
server and client certificates it makes carry a real mTLS handshake with the
service's own TLS code."""

from __future__ import annotations

from pathlib import Path

import grpc
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from hookkeeper.service.api.tls import ReloadingCertificates, server_tls_files
from hookkeeper.service.dev_certs import make_dev_certs


async def test_dev_certificates_carry_an_mtls_handshake(tmp_path: Path) -> None:
    assert make_dev_certs(tmp_path, ["service", "127.0.0.1"], ["gateway.internal"])
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "service" in sans.get_values_for_type(x509.DNSName)
    assert (tmp_path / "server.key").stat().st_mode & 0o077 == 0
    # A second run keeps the set (the compose one-shot runs on every `up`).
    before = (tmp_path / "ca.pem").read_bytes()
    assert not make_dev_certs(tmp_path, ["service"], ["gateway.internal"])
    assert (tmp_path / "ca.pem").read_bytes() == before

    files = server_tls_files(tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem")
    assert files is not None
    grpc_server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), grpc_server)  # type: ignore[attr-defined]
    port = grpc_server.add_secure_port("127.0.0.1:0", ReloadingCertificates(files).credentials())
    await grpc_server.start()
    try:
        ca_pem, key, cert = (
            (tmp_path / name).read_bytes() for name in ("ca.pem", "gateway.key", "gateway.pem")
        )
        credentials = grpc.ssl_channel_credentials(ca_pem, key, cert)
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await grpc_server.stop(0)
