"""Server TLS for ``ssl:`` listeners: a reviewed default profile, mutual TLS, reload.

echod builds the OpenSSL context of its ``ssl:`` listeners itself, from the
key pair named in the endpoint string (``privateKey=``, ``certKey=``) or by
``--tls-cert``/``--tls-key``, and applies to every one of them:

- TLS 1.2 and 1.3 only (``--tls-min-version 1.3`` for 1.3 only);
- Mozilla's "intermediate" cipher profile for TLS 1.2, limited to ECDHE key
  exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305); TLS 1.3's own
  suites are all AEAD and forward-secret; the client's preference is kept,
  as that profile says;
- no compression, no renegotiation;
- ``--tls-client-ca FILE``: clients must present a certificate that chains to
  it, verified by OpenSSL during the handshake (no Python callback);
- reload on SIGHUP: new connections get the new pair, open ones keep theirs;
  a broken new pair is refused with a log line and the old one stays.

The context has no ALPN or SNI callback, so none of cffi's writable-executable
trampolines are needed on this path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from OpenSSL import SSL, crypto
from twisted.internet.interfaces import (
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer

from echod.layers import layers
from echod.logs import given, log_token
from echod.pem import encrypted_key_error, load_certificates, read_file

log = Logger(namespace="echod")

INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
"""Mozilla's intermediate TLS 1.2 ciphers, without the DHE ones (no DH parameters)."""

VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}


@dataclass(frozen=True)
class TLSSession:
    """What a client's TLS handshake with echod made."""

    version: str
    """C{TLSv1.3}, C{TLSv1.2}."""
    cipher: str
    sni: str | None = None
    """The host name the client asked for (C{tls:DIRECTORY} picks by it)."""
    client_cn: str | None = None
    """The common name of the client's certificate (C{--tls-client-ca})."""

    def log_fields(self) -> dict[str, str]:
        """The fields a connection's closed line adds for this session."""
        return given(
            tls=self.version, cipher=self.cipher, sni=self.sni, client_cn=self.client_cn
        )


def negotiated(transport: Any) -> TLSSession | None:
    """What the TLS handshake under C{transport} made, or None: no TLS under
    it, or a handshake that did not finish. C{transport} may be Twisted's TLS
    transport or a wrapper above it (the PROXY protocol's, an access check's)."""
    for layer in layers(transport):
        if isinstance(layer, TLSMemoryBIOProtocol):
            if not getattr(layer, "_handshakeDone", False):
                return None
            connection = layer.getHandle()
            cipher = connection.get_cipher_name()
            if not cipher:
                return None
            sni = connection.get_servername()
            peer = connection.get_peer_certificate()
            name = peer.get_subject().commonName if peer is not None else None
            return TLSSession(
                connection.get_protocol_version_name(),
                cipher,
                log_token(sni) if sni else None,
                log_token(name.encode()) if name else None,
            )
    return None


class TLSConfigError(Exception):
    """A TLS file or setting cannot be used; the message says which and why."""


@dataclass(frozen=True)
class TLSProfile:
    """What every TLS listener applies, from the ``--tls-*`` options."""

    min_version: str = "1.2"
    client_ca: Path | None = None


def _read(path: Path, what: str) -> bytes:
    return read_file(path, what, TLSConfigError)


def ca_certificates(path: Path) -> list[crypto.X509]:
    """Every certificate in a CA file; an error if there is none."""
    return load_certificates(
        path, lambda b: crypto.load_certificate(crypto.FILETYPE_PEM, b), TLSConfigError
    )


def make_context(cert: Path, key: Path, profile: TLSProfile) -> SSL.Context:
    """A server context for C{cert}/C{key} under C{profile}, or L{TLSConfigError}."""
    _read(cert, "certificate")
    encrypted = encrypted_key_error(key, _read(key, "key"))
    if encrypted:
        raise TLSConfigError(encrypted)
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(VERSIONS[profile.min_version])
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    context.set_cipher_list(INTERMEDIATE_CIPHERS.encode())
    try:
        context.use_certificate_chain_file(str(cert))
    except SSL.Error:
        raise TLSConfigError(f"no usable certificate in {str(cert)!r}") from None
    try:
        context.use_privatekey_file(str(key))
    except SSL.Error as e:
        if "mismatch" in str(e):
            raise TLSConfigError(
                f"the key {str(key)!r} does not match the certificate {str(cert)!r}"
            ) from None
        raise TLSConfigError(f"no usable private key in {str(key)!r}") from None
    try:
        context.check_privatekey()
    except SSL.Error:
        raise TLSConfigError(
            f"the key {str(key)!r} does not match the certificate {str(cert)!r}"
        ) from None
    if profile.client_ca is not None:
        ca_certificates(profile.client_ca)  # at least one, all readable
        context.load_verify_locations(str(profile.client_ca))
        context.load_client_ca(str(profile.client_ca).encode())
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
    context.set_session_id(b"echod")
    return context


@dataclass(frozen=True)
class ServedCertificate:
    """A certificate a TLS listener serves now (the first of its file)."""

    file: Path
    not_after: float
    """When it expires: seconds since the epoch (UTC)."""


def served_certificate(cert: Path, context: SSL.Context) -> ServedCertificate:
    """The certificate C{context} serves (the first of the file C{cert}, as
    it was loaded: the file is not read again, and may have changed since)
    and its expiry."""
    x509 = SSL.Connection(context, None).get_certificate()
    stamp = x509.get_notAfter() if x509 is not None else None
    if stamp is None:  # make_context loaded a certificate: never seen
        raise TLSConfigError(f"no usable certificate in {str(cert)!r}")
    when = datetime.strptime(stamp.decode("ascii"), "%Y%m%d%H%M%SZ")
    return ServedCertificate(cert, when.replace(tzinfo=timezone.utc).timestamp())


def expiry_warnings(served: list[ServedCertificate]) -> list[str]:
    """A warning for each certificate of C{served} that has expired."""
    now = time.time()
    return [
        f"the certificate {str(c.file)!r} has expired: clients will refuse it"
        for c in served
        if c.not_after < now
    ]


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """The TLS side of one ``ssl:`` listener: its context, reloadable."""

    def __init__(self, cert: Path, key: Path, profile: TLSProfile) -> None:
        self.cert = cert
        self.key = key
        self.profile = profile
        self.context = make_context(cert, key, profile)
        self.served = served_certificate(cert, self.context)

    def certificates(self) -> list[ServedCertificate]:
        """The certificate served now (for /metrics)."""
        return [self.served]

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """A connection on the current context (a reload affects new ones only)."""
        return SSL.Connection(self.context, None)

    def reload(self) -> bool:
        """Load the pair again; keep the old one if the new one is broken."""
        try:
            context = make_context(self.cert, self.key, self.profile)
        except TLSConfigError as e:
            log.error("TLS reload refused, the old certificate stays: {e}", e=str(e))
            return False
        self.context = context
        self.served = served_certificate(self.cert, context)
        log.info("TLS certificate reloaded from {cert}", cert=str(self.cert))
        for warning in expiry_warnings(self.certificates()):
            log.warn("{warning}", warning=warning)
        return True


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """A stream endpoint wrapped in TLS, with Twisted's unbuffered TLS transport.

    C{wrapServerTLS} uses C{BufferingTLSTransport}, which holds small writes
    until the next reactor turn. When a client's close_notify arrives in the
    same turn as its last data, Twisted answers it at once, and the echo still
    held in that buffer is dropped: the client loses the tail. echod's echo
    writes are whole reads already, so it uses the plain
    C{TLSMemoryBIOProtocol}, which writes through and loses nothing.
    """

    def __init__(
        self, creator: ServerTLS | SNIDirectory, inner: IStreamServerEndpoint
    ) -> None:
        self.creator = creator
        self.inner = inner

    def wrap(self, factory: IProtocolFactory) -> TLSMemoryBIOFactory:
        """C{factory} with this endpoint's TLS in front of it."""
        tls_factory = TLSMemoryBIOFactory(self.creator, False, factory)
        tls_factory.protocol = TLSMemoryBIOProtocol
        return tls_factory

    def listen(self, factory: IProtocolFactory) -> Any:
        """Listen on the inner endpoint with TLS in front of C{factory}."""
        return self.inner.listen(self.wrap(factory))


@implementer(IOpenSSLServerConnectionCreator)
class SNIDirectory:
    """The TLS side of a ``tls:DIRECTORY`` listener: one key pair per host name.

    Like Twisted's ``tls:`` endpoint, the directory holds one PEM file per
    host name (``example.com.pem``: the private key and the certificate
    chain); the client's SNI name picks the file, and a client without SNI (or
    with an unknown name) gets the first file in name order. Unlike it, every
    file gets echod's profile (``--tls-*``), and the directory is read again
    on SIGHUP rather than on every change. Choosing by SNI is a pyOpenSSL
    callback, so these listeners need ``MemoryDenyWriteExecute=no``.
    """

    def __init__(self, directory: Path, profile: TLSProfile) -> None:
        self.directory = directory
        self.profile = profile
        self.contexts: dict[bytes, SSL.Context] = {}
        self.default: SSL.Context | None = None
        self.served: list[ServedCertificate] = []
        self._load()

    def _load(self) -> None:
        try:
            files = sorted(p for p in self.directory.iterdir() if p.suffix == ".pem")
        except OSError as e:
            raise TLSConfigError(
                f"cannot read directory {str(self.directory)!r}: {e.strerror}"
            ) from None
        if not files:
            raise TLSConfigError(f"no NAME.pem file in {str(self.directory)!r}")
        contexts = {}
        served = []
        for path in files:
            context = make_context(path, path, self.profile)
            context.set_tlsext_servername_callback(self._choose)
            contexts[path.stem.encode()] = context
            served.append(served_certificate(path, context))
        self.contexts = contexts
        self.default = contexts[files[0].stem.encode()]
        self.served = served

    def certificates(self) -> list[ServedCertificate]:
        """The certificates served now, one a host name (for /metrics)."""
        return list(self.served)

    def _choose(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        if name is not None and name.lower() in self.contexts:
            connection.set_context(self.contexts[name.lower()])

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """A connection on the default context; SNI may switch it."""
        assert self.default is not None
        return SSL.Connection(self.default, None)

    def reload(self) -> bool:
        """Read the directory again; keep the old pairs if anything is broken."""
        old = (self.contexts, self.default, self.served)
        try:
            self._load()
        except TLSConfigError as e:
            self.contexts, self.default, self.served = old
            log.error("TLS reload refused, the old certificates stay: {e}", e=str(e))
            return False
        log.info("TLS certificates reloaded from {d}", d=str(self.directory))
        for warning in expiry_warnings(self.certificates()):
            log.warn("{warning}", warning=warning)
        return True
