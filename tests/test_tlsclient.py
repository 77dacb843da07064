"""Unit tests of echod.tlsclient: verification on by default, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from OpenSSL.crypto import X509
from twisted.internet import ssl
from twisted.python.failure import Failure

from echod.tlsclient import (
    CertificateRejectedError,
    ClientTLS,
    ExplainedVerification,
    TLSClientError,
    connection_creator,
    load_certificates,
    rejection,
    version_bounds,
)
from tests.certs import issue, private_ca


def test_default_verifies_against_the_system_store() -> None:
    creator = connection_creator("example.test", ClientTLS())
    assert isinstance(creator, ExplainedVerification)


def test_a_link_local_zone_is_not_part_of_the_servers_name() -> None:
    creator = connection_creator("fe80::1%eth0", ClientTLS())
    assert isinstance(creator, ExplainedVerification)
    assert creator._hostname == "fe80::1"


class FailedTLS:
    """Stands for the TLS protocol: records what verification failed with."""

    def __init__(self) -> None:
        self.reasons: list[Failure] = []

    def failVerification(self, reason: Failure) -> None:
        self.reasons.append(reason)


def leaf(tmp_path: Path, san: str) -> X509:
    _, cert = issue(tmp_path, private_ca(tmp_path), "server", san)
    return ssl.Certificate.loadPEM(cert.read_bytes()).original  # type: ignore[no-any-return]


def verify_as(
    hostname: str, certificate: X509, code: int, depth: int, ok: int
) -> tuple[bool, list[str]]:
    """What the verify callback answers, and the failures it reports."""
    tls = FailedTLS()
    creator = ExplainedVerification(hostname, connection_creator(hostname, ClientTLS()))
    answer = creator._callback(tls)(None, certificate, code, depth, ok)  # type: ignore[arg-type]
    return answer, [str(f.value) for f in tls.reasons]


def test_verified_chain_and_matching_name_pass(tmp_path: Path) -> None:
    cert = leaf(tmp_path, "DNS:localhost,IP:127.0.0.1,IP:::1")
    for host in ("localhost", "127.0.0.1", "::1"):
        assert verify_as(host, cert, 0, 0, 1) == (True, []), host
    assert verify_as("elsewhere.test", cert, 0, 1, 1) == (True, [])  # not the leaf


def test_openssl_verdict_is_kept_in_words(tmp_path: Path) -> None:
    cert = leaf(tmp_path, "DNS:localhost")
    answer, reasons = verify_as("localhost", cert, 10, 0, 0)
    assert answer is False
    assert reasons == [
        "certificate verify failed: certificate has expired "
        "(the server's certificate, server)"
    ]
    _, reasons = verify_as("localhost", cert, 19, 1, 0)
    assert reasons == [
        "certificate verify failed: self-signed certificate in certificate chain "
        "(chain depth 1, server)"
    ]
    assert "verify error 99 " in str(rejection(99, 0, cert))
    assert isinstance(rejection(10, 0, cert), CertificateRejectedError)


def test_a_wrong_name_fails_and_says_which_names(tmp_path: Path) -> None:
    cert = leaf(tmp_path, "DNS:localhost,IP:::1")
    for host in ("elsewhere.test", "127.0.0.1"):
        answer, reasons = verify_as(host, cert, 0, 0, 1)
        assert answer is False
        assert reasons == [
            f"the certificate does not match {host!r} (it names localhost, ::1)"
        ]


def test_a_certificate_without_names_matches_nothing(tmp_path: Path) -> None:
    _, ca = private_ca(tmp_path)  # CN=ca, no subjectAltName
    cert = ssl.Certificate.loadPEM(ca.read_bytes()).original
    assert verify_as("ca", cert, 0, 0, 1) == (
        False,
        ["the certificate does not match 'ca' (it names nothing)"],
    )


def test_a_broken_certificate_fails_closed() -> None:
    for broken in (X509(), object()):  # an empty one; not a certificate
        answer, reasons = verify_as("localhost", broken, 0, 0, 1)  # type: ignore[arg-type]
        assert answer is False and len(reasons) == 1
        assert reasons[0].startswith("cannot verify the certificate: "), reasons


def test_insecure_warns(tmp_path: Path) -> None:
    said: list[str] = []
    creator = connection_creator("example.test", ClientTLS(insecure=True), said.append)
    assert isinstance(creator, ssl.CertificateOptions) and creator.verify is False
    assert said and "NOT verified" in said[0]


def test_cacert_bundle_with_several_certificates(tmp_path: Path) -> None:
    _, one = private_ca(tmp_path, "one")
    _, two = private_ca(tmp_path, "two")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(one.read_bytes() + two.read_bytes())
    assert len(load_certificates(bundle)) == 2
    connection_creator("localhost", ClientTLS(cacert=bundle))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ClientTLS(cacert=Path("/nonexistent/ca.pem")), "cannot read CA file"),
        (ClientTLS(cert=Path("/nonexistent/c.pem")), "--cert and --key go together"),
        (
            ClientTLS(min_version="1.3", max_version="1.2"),
            "--tlsv1.3 and --tls-max 1.2 leave no TLS version to speak",
        ),
        (
            ClientTLS(insecure=True, min_version="1.3", max_version="1.2"),
            "leave no TLS version",
        ),
    ],
)
def test_errors(settings: ClientTLS, message: str) -> None:
    with pytest.raises(TLSClientError, match=message):
        connection_creator("localhost", settings)


def test_empty_ca_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    with pytest.raises(TLSClientError, match="no certificate in CA file"):
        connection_creator("localhost", ClientTLS(cacert=empty))


def test_client_certificate(tmp_path: Path) -> None:
    ca = private_ca(tmp_path)
    key, cert = issue(tmp_path, ca, "client")
    connection_creator("localhost", ClientTLS(cacert=ca[1], cert=cert, key=key))


def test_client_certificate_and_key_problems_say_which_file(tmp_path: Path) -> None:
    ca = private_ca(tmp_path)
    key, cert = issue(tmp_path, ca, "client")
    other_key, _ = issue(tmp_path, ca, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not PEM at all\n")
    cases = [
        (garbage, key, f"no usable certificate in {str(garbage)!r}"),
        (cert, garbage, f"no usable private key in {str(garbage)!r}"),
        (cert, other_key, f"the key {str(other_key)!r} does not match the certificate"),
    ]
    for cert_path, key_path, message in cases:
        settings = ClientTLS(cacert=ca[1], cert=cert_path, key=key_path)
        with pytest.raises(TLSClientError) as e:
            connection_creator("localhost", settings)
        assert str(e.value).startswith(message), str(e.value)


@pytest.mark.parametrize(
    ("low", "high", "bounds"),
    [
        (None, None, {}),
        ("1.2", None, {"raiseMinimumTo": ssl.TLSVersion.TLSv1_2}),
        ("1.3", "1.3", {"raiseMinimumTo": ssl.TLSVersion.TLSv1_3,
                        "lowerMaximumSecurityTo": ssl.TLSVersion.TLSv1_3}),
        (None, "1.2", {"lowerMaximumSecurityTo": ssl.TLSVersion.TLSv1_2}),
    ],
)  # fmt: skip
def test_version_bounds(
    low: str | None, high: str | None, bounds: dict[str, object]
) -> None:
    """curl's --tlsv1.x and --tls-max, as Twisted's CertificateOptions takes them."""
    settings = ClientTLS(min_version=low, max_version=high)
    assert version_bounds(settings) == bounds
    connection_creator("localhost", settings)  # Twisted takes them
    insecure = ClientTLS(insecure=True, min_version=low, max_version=high)
    connection_creator("localhost", insecure, warn=print)
