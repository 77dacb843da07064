"""Unit tests of echod.tlsclient: verification on by default, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet import ssl

from echod.tlsclient import (
    ClientTLS,
    TLSClientError,
    connection_creator,
    load_certificates,
)
from tests.certs import issue, private_ca


def test_default_verifies_against_the_system_store() -> None:
    creator = connection_creator("example.test", ClientTLS())
    assert not isinstance(creator, ssl.CertificateOptions)  # optionsForClientTLS


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
