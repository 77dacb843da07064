"""Client-side TLS for echod's clients: verified by default, mutual TLS on request.

One place decides how a client connection is secured, so that every client
command behaves the same:

- the server's certificate is verified against the system's trust store, or
  against C{--cacert FILE} for a private CA, and its name is checked against
  the host name asked for (service_identity, through Twisted's
  C{optionsForClientTLS});
- C{--cert FILE --key FILE} presents a client certificate (mutual TLS);
- C{--insecure} turns verification off, only when asked, and says so on
  stderr every time.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

from echod import pem


class TLSClientError(Exception):
    """A client TLS setting cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ClientTLS:
    """How a client verifies and presents itself."""

    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False


def _read(path: Path, what: str) -> bytes:
    return pem.read_file(path, what, TLSClientError)


def load_certificates(path: Path) -> list[ssl.Certificate]:
    """Every certificate in a PEM file (a CA bundle may hold several)."""
    return pem.load_certificates(path, ssl.Certificate.loadPEM, TLSClientError)


def connection_creator(
    hostname: str, settings: ClientTLS, warn: Any = None
) -> IOpenSSLClientConnectionCreator:
    """The TLS connection creator for connecting to C{hostname}."""
    warn = warn or (lambda text: sys.stderr.write(text + "\n"))
    client_certificate = None
    if settings.cert is not None or settings.key is not None:
        if settings.cert is None or settings.key is None:
            raise TLSClientError("--cert and --key go together")
        pem = _read(settings.cert, "certificate") + b"\n" + _read(settings.key, "key")
        try:
            client_certificate = ssl.PrivateCertificate.loadPEM(pem)
        except Exception as e:
            raise TLSClientError(
                f"cannot use {str(settings.cert)!r} with {str(settings.key)!r}: {e}"
            ) from None
    if settings.insecure:
        warn(
            "echod: warning: --insecure: the server's certificate and name are "
            "NOT verified"
        )
        kwargs: dict[str, Any] = {"verify": False}
        if client_certificate is not None:
            kwargs.update(
                privateKey=client_certificate.privateKey.original,
                certificate=client_certificate.original,
            )
        return ssl.CertificateOptions(**kwargs)  # type: ignore[no-any-return]
    trust: Any = None
    if settings.cacert is not None:
        trust = ssl.trustRootFromCertificates(load_certificates(settings.cacert))
    return ssl.optionsForClientTLS(
        hostname, trustRoot=trust, clientCertificate=client_certificate
    )
