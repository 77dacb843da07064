"""Unit tests of echod.certs: ``echod cert``'s certificates."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from echod.certs import CertificateError, main, make_certificates, server_name


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


def test_a_second_run_keeps_the_ca_and_issues_from_it(tmp_path: Path) -> None:
    """As mkcert: whatever trusts the CA goes on trusting what it signs."""
    make_certificates(tmp_path, ["first.test"])
    ca_before = (tmp_path / "ca.pem").read_bytes(), (tmp_path / "ca.key").read_bytes()
    written = make_certificates(tmp_path, ["second.test"])
    assert tmp_path / "ca.pem" not in written
    assert ((tmp_path / "ca.pem").read_bytes(), (tmp_path / "ca.key").read_bytes()) == (
        ca_before
    )
    ca = x509.load_pem_x509_certificate(ca_before[0])
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["second.test"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"ca.pem": b"garbage"}, "ca.pem: not a PEM certificate"),
        ({"ca.key": b"garbage"}, "ca.key: not an unencrypted PEM private key"),
        ({"ca.key": None}, "ca.pem is there without ca.key"),
        ({"ca.pem": None}, "ca.key is there without ca.pem"),
        ({"ca.key": "other"}, "ca.key is not the key of"),
    ],
)
def test_a_ca_that_cannot_be_used_is_one_line(
    tmp_path: Path, damage: dict[str, bytes | str | None], message: str
) -> None:
    make_certificates(tmp_path / "other", ["x.test"])
    make_certificates(tmp_path, ["x.test"])
    for name, content in damage.items():
        if content is None:
            (tmp_path / name).unlink()
        elif content == "other":
            (tmp_path / name).write_bytes((tmp_path / "other" / name).read_bytes())
        else:
            assert isinstance(content, bytes)
            (tmp_path / name).write_bytes(content)
    with pytest.raises(CertificateError, match=message):
        make_certificates(tmp_path, ["x.test"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("echo.test", "echo.test"),
        ("*.echo.test", "*.echo.test"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("::1", "::1"),
        ("192.0.2.1", "192.0.2.1"),
    ],
)
def test_server_names(name: str, expected: str) -> None:
    assert server_name(name) == expected


@pytest.mark.parametrize("name", ["", "a b", "-x.test", "x..test", "a" * 64 + ".test"])
def test_bad_server_names(name: str) -> None:
    with pytest.raises(CertificateError, match="bad name"):
        server_name(name)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--days", "0"], "--days 0: expected 1 to 3650"),
        (["--days", "-3"], "--days -3: expected 1 to 3650"),
        (["--days", "99999999"], "--days 99999999: expected 1 to 3650"),
        (["a b"], "bad name 'a b': expected a host name"),
    ],
)
def test_main_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    """Each of these was a traceback (ValueError, OverflowError)."""
    assert main([str(tmp_path / "pki"), *options]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"echod cert: error: {message}") and err.count("\n") == 1


def test_a_long_first_name_is_not_the_common_name(tmp_path: Path) -> None:
    long_name = ("a" * 60 + ".") * 2 + "test"
    make_certificates(tmp_path, [long_name])
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [long_name]
