"""Client-side TLS for echod's clients: verified by default, mutual TLS on request.

One place decides how a client connection is secured, so that every client
command behaves the same:

- the server's certificate is verified against the system's trust store, or
  against C{--cacert FILE} for a private CA, and its name is checked against
  the host name asked for (service_identity, through Twisted's
  C{optionsForClientTLS});
- a rejected certificate fails with OpenSSL's reason (C{certificate has
  expired}, C{self-signed certificate}, ...), not only "certificate verify
  failed": L{ExplainedVerification} keeps it;
- C{--cert FILE --key FILE} presents a client certificate (mutual TLS);
- C{--tlsv1.2}/C{--tlsv1.3} and C{--tls-max VERSION} bound the TLS versions
  offered, as curl's options of those names (Twisted's own floor is 1.2);
- C{--insecure} turns verification off, only when asked, and says so on
  stderr every time.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from OpenSSL.crypto import FILETYPE_PEM, X509
from OpenSSL.SSL import Connection
from OpenSSL.SSL import Error as SSLError
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet import ssl
from twisted.internet.error import VerifyError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import TLSVersion
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from echod import pem


class TLSClientError(Exception):
    """A client TLS setting cannot be used; the message says which and why."""


TLS_VERSIONS = {"1.2": TLSVersion.TLSv1_2, "1.3": TLSVersion.TLSv1_3}
"""The TLS versions a client may be bounded to, by the names curl gives them."""


@dataclass(frozen=True)
class ClientTLS:
    """How a client verifies and presents itself, and which TLS versions it
    offers (C{min_version} to C{max_version}, keys of L{TLS_VERSIONS}; None
    leaves a bound to Twisted and OpenSSL: 1.2 to 1.3 here)."""

    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False
    min_version: str | None = None
    max_version: str | None = None
    whose: str = "the server's"
    """Whose certificate this verifies, for the C{--insecure} warning."""
    insecure_option: str = "--insecure"
    """The option that turned verification off, for the same warning."""


def version_bounds(settings: ClientTLS) -> dict[str, Any]:
    """C{CertificateOptions}' arguments for the versions C{settings} allow, or
    L{TLSClientError} if they allow none."""
    low, high = settings.min_version, settings.max_version
    if low is not None and high is not None and low > high:
        raise TLSClientError(
            f"--tlsv{low} and --tls-max {high} leave no TLS version to speak"
        )
    bounds: dict[str, Any] = {}
    if low is not None:
        bounds["raiseMinimumTo"] = TLS_VERSIONS[low]
    if high is not None:
        bounds["lowerMaximumSecurityTo"] = TLS_VERSIONS[high]
    return bounds


# OpenSSL's X509_V_ERR_* codes a client meets, in OpenSSL's own words (what
# curl and openssl s_client print, so that they can be looked up).
VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    4: "unable to decrypt certificate's signature",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    22: "certificate chain too long",
    23: "certificate revoked",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
    27: "certificate not trusted",
    28: "certificate rejected",
}


class CertificateRejectedError(SSLError):
    """The server's certificate chain failed verification; the message says why."""


def rejection(code: int, depth: int, certificate: X509) -> CertificateRejectedError:
    """The error for OpenSSL's verify error C{code} on the certificate at C{depth}."""
    reason = VERIFY_ERRORS.get(code, f"verify error {code}")
    names = certificate.to_cryptography().subject.get_attributes_for_oid(
        NameOID.COMMON_NAME
    )
    subject = str(names[0].value) if names else ""
    where = "the server's certificate" if depth == 0 else f"chain depth {depth}"
    named = f", {subject}" if subject else ""
    return CertificateRejectedError(
        f"certificate verify failed: {reason} ({where}{named})"
    )


def _name(pattern: object) -> str:
    """A service_identity pattern as text: C{localhost}, C{*.example.com}, C{::1}."""
    value = getattr(pattern, "pattern", None)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return type(pattern).__name__ if value is None else str(value)


@implementer(IOpenSSLClientConnectionCreator)
class ExplainedVerification:
    """Twisted's verifying client TLS, failing with OpenSSL's reason.

    Twisted's C{optionsForClientTLS} makes the connection (trust root, client
    certificate, SNI); this replaces its verify callback with one that checks
    the same things (OpenSSL's chain verdict, then the host name on the leaf
    certificate through service_identity) and, on a rejection, fails the
    connection with L{CertificateRejectedError} carrying OpenSSL's error code as
    words. pyOpenSSL has no public C{SSL_get_verify_result}: the callback is
    the only public place that code is seen.
    """

    def __init__(self, hostname: str, inner: IOpenSSLClientConnectionCreator) -> None:
        self._inner = inner
        self._hostname = hostname
        self._identity: DNS_ID | IPAddress_ID
        try:
            ipaddress.ip_address(hostname)
        except ValueError:
            self._identity = DNS_ID(hostname)
        else:
            self._identity = IPAddress_ID(hostname)

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> Connection:
        """The inner creator's connection, with the explaining verify callback."""
        connection: Connection = self._inner.clientConnectionForTLS(tlsProtocol)
        connection.set_verify(connection.get_verify_mode(), self._callback(tlsProtocol))
        return connection

    def _check_name(self, certificate: X509) -> None:
        patterns: Sequence[object] = []
        try:
            patterns = extract_patterns(certificate)
            verify_service_identity(patterns, [self._identity], [])
        except (CertificateError, VerificationError):  # CertificateError: no names
            names = ", ".join(_name(p) for p in patterns)
            raise CertificateRejectedError(
                f"the certificate does not match {self._hostname!r}"
                f" (it names {names or 'nothing'})"
            ) from None

    def _callback(
        self, tls: TLSMemoryBIOProtocol
    ) -> Callable[[Connection, X509, int, int, int], bool]:
        def verify(
            connection: Connection, certificate: X509, code: int, depth: int, ok: int
        ) -> bool:
            try:
                if not ok:
                    raise rejection(code, depth, certificate)
                if depth == 0:
                    self._check_name(certificate)
            except CertificateRejectedError:
                tls.failVerification(Failure())
                return False
            except Exception as e:  # fail closed, whatever went wrong
                reason = CertificateRejectedError(f"cannot verify the certificate: {e}")
                tls.failVerification(Failure(reason))
                return False
            return True

        return verify


def _read(path: Path, what: str) -> bytes:
    return pem.read_file(path, what, TLSClientError)


def load_certificates(path: Path) -> list[ssl.Certificate]:
    """Every certificate in a PEM file (a CA bundle may hold several)."""
    return pem.load_certificates(path, ssl.Certificate.loadPEM, TLSClientError)


def client_key_pair(cert: Path, key: Path) -> ssl.PrivateCertificate:
    """The client certificate and its key, or L{TLSClientError} naming the file
    at fault (the words of the daemon's own checks, echod.tls)."""
    cert_pem, key_pem = _read(cert, "certificate"), _read(key, "key")
    try:
        certificate = ssl.Certificate.loadPEM(cert_pem)
    except Exception:
        raise TLSClientError(f"no usable certificate in {str(cert)!r}") from None
    encrypted = pem.encrypted_key_error(key, key_pem)
    if encrypted:
        raise TLSClientError(encrypted)
    try:
        key_pair = ssl.KeyPair(
            crypto.load_privatekey(FILETYPE_PEM, key_pem, pem.no_pass_phrase)
        )
    except Exception:
        raise TLSClientError(f"no usable private key in {str(key)!r}") from None
    try:
        pair: ssl.PrivateCertificate = ssl.PrivateCertificate.fromCertificateAndKeyPair(
            certificate, key_pair
        )
    except VerifyError:
        raise TLSClientError(
            f"the key {str(key)!r} does not match the certificate {str(cert)!r}"
        ) from None
    return pair


def connection_creator(
    hostname: str, settings: ClientTLS, warn: Any = None
) -> IOpenSSLClientConnectionCreator:
    """The TLS connection creator for connecting to C{hostname}.

    A link-local address's zone (C{fe80::1%eth0}) names an interface of this
    machine: the server's certificate names the address without it.
    """
    if ":" in hostname:
        hostname = hostname.partition("%")[0]
    warn = warn or (lambda text: sys.stderr.write(text + "\n"))
    bounds = version_bounds(settings)
    client_certificate = None
    if settings.cert is not None or settings.key is not None:
        if settings.cert is None or settings.key is None:
            raise TLSClientError("--cert and --key go together")
        client_certificate = client_key_pair(settings.cert, settings.key)
    if settings.insecure:
        warn(
            f"echod: warning: {settings.insecure_option}: {settings.whose} "
            "certificate and name are NOT verified"
        )
        kwargs: dict[str, Any] = {"verify": False, **bounds}
        if client_certificate is not None:
            kwargs.update(
                privateKey=client_certificate.privateKey.original,
                certificate=client_certificate.original,
            )
        return ssl.CertificateOptions(**kwargs)  # type: ignore[no-any-return]
    trust: Any = None
    if settings.cacert is not None:
        trust = ssl.trustRootFromCertificates(load_certificates(settings.cacert))
    return ExplainedVerification(
        hostname,
        ssl.optionsForClientTLS(
            hostname,
            trustRoot=trust,
            clientCertificate=client_certificate,
            extraCertificateOptions=bounds,
        ),
    )
