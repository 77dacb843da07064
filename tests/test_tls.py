"""Unit tests of echod.tls: the context profile and its errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from OpenSSL import SSL
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol

from echod.certs import make_certificates
from echod.tls import (
    ServedCertificate,
    ServerTLS,
    TLSConfigError,
    TLSProfile,
    TLSSession,
    make_context,
    negotiated,
    served_certificate,
)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_certificates(tmp_path, ["localhost"])
    return tmp_path


def test_profile(pki: Path) -> None:
    context = make_context(pki / "server.pem", pki / "server.key", TLSProfile())
    assert context.get_verify_mode() == SSL.VERIFY_NONE
    mutual = make_context(
        pki / "server.pem", pki / "server.key", TLSProfile("1.3", pki / "ca.pem")
    )
    assert mutual.get_verify_mode() == SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT


def test_errors(pki: Path) -> None:
    with pytest.raises(TLSConfigError, match="does not match"):
        make_context(pki / "server.pem", pki / "client.key", TLSProfile())
    with pytest.raises(TLSConfigError, match="no certificate in CA file"):
        make_context(
            pki / "server.pem",
            pki / "server.key",
            TLSProfile(client_ca=pki / "server.key"),
        )


def test_reload_keeps_the_old_context_when_the_new_pair_is_broken(pki: Path) -> None:
    server = ServerTLS(pki / "server.pem", pki / "server.key", TLSProfile())
    old = server.context
    assert server.reload() and server.context is not old
    current = server.context
    (pki / "server.key").write_bytes((pki / "client.key").read_bytes())
    assert not server.reload()
    assert server.context is current


def test_the_served_certificate_and_its_expiry(pki: Path) -> None:
    """What /metrics reports: the certificate in force, kept after a refused
    reload, replaced after one that took."""
    cert = pki / "server.pem"
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    expected = leaf.not_valid_after_utc.timestamp()
    server = ServerTLS(cert, pki / "server.key", TLSProfile())
    assert server.certificates() == [ServedCertificate(cert, expected)]
    # From the context as loaded, not the file: a file changed since does not count.
    context = server.context
    cert.write_bytes(b"not a certificate any more")
    assert served_certificate(cert, context) == ServedCertificate(cert, expected)
    later = pki / "later"
    make_certificates(later, ["localhost"], days=400)
    (pki / "server.key").write_bytes((later / "client.key").read_bytes())
    cert.write_bytes((later / "server.pem").read_bytes())
    assert not server.reload()  # the key is not the certificate's
    assert server.certificates() == [ServedCertificate(cert, expected)]
    (pki / "server.key").write_bytes((later / "server.key").read_bytes())
    assert server.reload()
    (served,) = server.certificates()
    assert served.not_after > expected


class Handle:
    """What L{negotiated} asks of an OpenSSL connection."""

    def __init__(self, cipher: str | None, sni: bytes | None = None) -> None:
        self.cipher = cipher
        self.sni = sni

    def get_protocol_version_name(self) -> str:
        return "TLSv1.3"

    def get_cipher_name(self) -> str | None:
        return self.cipher

    def get_servername(self) -> bytes | None:
        return self.sni

    def get_peer_certificate(self) -> None:
        return None  # the client's certificate: e2e-tested (test_tls_e2e)


class Wrapper:
    """A transport wrapper (PROXY, access) above another transport."""

    def __init__(self, transport: object) -> None:
        self.transport = transport


def tls_transport(
    done: bool, cipher: str | None = "TLS_AES_128_GCM_SHA256", sni: bytes | None = None
) -> Any:
    transport = TLSMemoryBIOProtocol.__new__(TLSMemoryBIOProtocol)
    transport._handshakeDone = done
    transport.getHandle = lambda: Handle(cipher, sni)  # type: ignore[method-assign]
    return transport


def test_negotiated_finds_the_tls_transport_under_wrappers() -> None:
    session = TLSSession("TLSv1.3", "TLS_AES_128_GCM_SHA256")
    assert negotiated(tls_transport(True)) == session
    named = negotiated(tls_transport(True, sni=b"echo test"))
    assert named == TLSSession("TLSv1.3", "TLS_AES_128_GCM_SHA256", "echo\\x20test")
    assert named.log_fields() == {
        "tls": "TLSv1.3",
        "cipher": "TLS_AES_128_GCM_SHA256",
        "sni": "echo\\x20test",
    }
    assert negotiated(Wrapper(Wrapper(tls_transport(True)))) == session
    assert negotiated(tls_transport(False)) is None  # the handshake never ended
    assert negotiated(tls_transport(True, cipher=None)) is None
    assert negotiated(StringTransport()) is None  # plain TCP
    assert negotiated(None) is None
    assert negotiated(Wrapper(Wrapper(Wrapper(Wrapper(tls_transport(True)))))) is None
