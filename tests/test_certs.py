"""Unit tests of echod.certs: ``echod cert``'s certificates."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509

from echod.certs import main, make_certificates


def test_server_names_and_chain(tmp_path: Path) -> None:
    make_certificates(tmp_path, ["echo.test", "127.0.0.1"])
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["echo.test"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1")
    ]
    assert server.issuer == ca.subject
    server.verify_directly_issued_by(ca)
    assert (tmp_path / "server.key").stat().st_mode & 0o777 == 0o600


def test_main_bad_usage() -> None:
    assert main([]) == 2
