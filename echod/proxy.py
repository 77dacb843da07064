"""The PROXY protocol (v1 and v2) in front of echo, admitting by the real client.

Twisted's C{haproxy:} endpoint builds the wrapped protocol when the
connection is accepted, before the PROXY header has arrived, so the factory
sees HAProxy's address (per-IP limits would count HAProxy, not the clients),
and its wrapper does not pass half-close through (an EOF from the client
would cut the echo short). echod parses C{haproxy:} endpoint strings itself
and wraps the inner endpoint with L{ProxyHeaderFactory}, whose protocol:

- reads the PROXY header (with Twisted's v1 and v2 parsers), however it is
  split across segments, within L{HEADER_TIMEOUT} seconds;
- only then asks the echo factory for a protocol, with the client's real
  address, so limits, logs and metrics all see the client;
- passes half-close (C{readConnectionLost}, C{writeConnectionLost}) through;
- keeps what a v2 header's TLVs say of the client's connection to the proxy
  (L{echod.proxytlv}: its TLS version and cipher, the host name it asked
  for), for the connection's log line and metrics, and checks their CRC32C;
- closes a connection whose header is missing, malformed (addresses and ports
  included: L{well_formed}) or late, logging it and counting it as refused
  (C{bad-proxy-header}).

Over TLS (C{haproxy:ssl:}, C{haproxy:tls:DIR}), the header comes first, in
clear, and TLS after it: that is how HAProxy sends it (C{send-proxy} on a
TLS pass-through, or C{ssl send-proxy}) and how nginx and HAProxy read it
(C{listen ... ssl proxy_protocol}, C{bind ... ssl accept-proxy}). Twisted's
C{haproxy:ssl:} expects it inside TLS, where no proxy puts it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IProtocol,
    IProtocolFactory,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.logger import Logger
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.haproxy._wrapper import HAProxyWrappingFactory
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.echo import EchoFactory, ListenerFactory, format_address
from echod.proxytlv import ProxiedSession, session_of

log = Logger(namespace="echod")

HEADER_TIMEOUT = 10.0
"""Seconds a connection may take to send its PROXY header."""

V1_PREFIX = b"PROXY "
MAX_V2_HEADER = 16 + 65535


def well_formed(address: IAddress | None) -> bool:
    """Whether a header's address is a real one, as HAProxy requires: an IP of
    the family the header names and a port 0-65535.

    Twisted's v1 parser takes any token for a host (C{999.0.0.1}, an IPv6
    address after C{TCP4}) and any integer for a port. Absent (C{UNKNOWN},
    C{LOCAL}) and UNIX addresses pass.
    """
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return True
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        return False
    family = 4 if isinstance(address, IPv4Address) else 6
    return ip.version == family and 0 <= address.port <= 65535


class ShortUnknownV1Parser(V1Parser):
    """Twisted's v1 parser, taking also the short C{PROXY UNKNOWN\\r\\n}.

    The specification lets a sender end an C{UNKNOWN} line right after the
    word, and HAProxy does for a client without an IP address (one on a UNIX
    socket frontend); Twisted's parser wants the addresses that follow.
    """

    @classmethod
    def parse(cls, line: bytes) -> ProxyInfo:
        """The header's addresses; none for C{PROXY UNKNOWN}, with or without
        the rest of the line."""
        if line == b"PROXY UNKNOWN":
            return ProxyInfo(line, None, None)
        info: ProxyInfo = super().parse(line)
        return info


@implementer(IHalfCloseableProtocol)
class ProxyHeaderProtocol(ProtocolWrapper):
    """Reads the PROXY header, then hands the connection to the echo protocol."""

    factory: ProxyHeaderFactory

    def __init__(self, factory: ProxyHeaderFactory) -> None:
        super().__init__(factory, None)  # type: ignore[arg-type]
        self._buffer = b""
        self._parser: ShortUnknownV1Parser | V2Parser | None = None
        self._source: IAddress | None = None
        self._destination: IAddress | None = None
        self._timeout: IDelayedCall | None = None
        self._pending = False
        self.proxied_session: ProxiedSession | None = None
        """What the header's TLVs say of the client's connection to the proxy."""

    @property
    def link(self) -> ITransport:
        """The connection's own transport (set once connected)."""
        assert self.transport is not None
        return self.transport

    def makeConnection(self, transport: Any) -> None:
        """Start waiting for the header; the echo protocol comes after it."""
        self.transport = transport
        self.connected = True
        self.factory.registerProtocol(self)
        self._pending = True
        self.factory.wrappedFactory.limits.pending += 1
        self._timeout = self.factory.clock.callLater(
            HEADER_TIMEOUT, self._refuse, "PROXY header timeout"
        )

    def dataReceived(self, data: bytes) -> None:
        """Parse the header; pass everything after it to the echo protocol."""
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        try:
            info, rest = self._feed(data)
        except (InvalidProxyHeader, ValueError):  # v1: int() of a port that is not
            self._refuse("malformed PROXY header")
            return
        if info is None:
            return
        if not (well_formed(info.source) and well_formed(info.destination)):
            self._refuse("malformed PROXY header")
            return
        try:
            self.proxied_session = session_of(info.header)
        except InvalidProxyHeader as e:
            self._refuse(f"malformed PROXY header TLVs: {e}")
            return
        self._cancel_timeout()
        self._not_pending()
        self._source = info.source or self.link.getPeer()
        self._destination = info.destination or self.link.getHost()
        protocol = self.factory.after.buildProtocol(self._source)
        if protocol is None:
            self.link.loseConnection()
            return
        self.wrappedProtocol = protocol
        protocol.makeConnection(self)
        if rest:
            protocol.dataReceived(rest)

    def _feed(self, data: bytes) -> tuple[Any, bytes]:
        """Feed the header parser, choosing v1 or v2 once the prefix shows which."""
        if self._parser is None:
            buf = self._buffer = self._buffer + data
            if buf.startswith(V2Parser.PREFIX):
                self._parser = V2Parser()
            elif buf.startswith(V1_PREFIX):
                self._parser = ShortUnknownV1Parser()
            elif V2Parser.PREFIX.startswith(buf) or V1_PREFIX.startswith(buf):
                return None, b""  # too short to tell yet
            else:
                raise InvalidProxyHeader()
            data, self._buffer = buf, b""
        info, rest = self._parser.feed(data)
        if info is None and len(self._parser.buffer) > MAX_V2_HEADER:
            raise InvalidProxyHeader()
        return info, rest or b""

    def _not_pending(self) -> None:
        """No longer waiting for the header (read, refused, or gone)."""
        if self._pending:
            self._pending = False
            self.factory.wrappedFactory.limits.pending -= 1

    def _refuse(self, why: str) -> None:
        self._cancel_timeout()  # a refusal is final: the timer must not refuse again
        self._not_pending()
        echo = self.factory.wrappedFactory
        echo.stats.refused["bad-proxy-header"] += 1
        log.warn(
            "refused {peer}: {why}",
            peer=format_address(self.link.getPeer()),
            why=why,
            reason="bad-proxy-header",
            event="refused",
        )
        transport: Any = self.transport
        transport.abortConnection()

    def _cancel_timeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def getPeer(self) -> IAddress:
        """The client's address from the header (the proxy's until it arrives)."""
        return self._source or self.link.getPeer()

    def getHost(self) -> IAddress:
        """The address the client connected to, from the header."""
        return self._destination or self.link.getHost()

    def _half_closeable(self) -> bool:
        """Whether what follows the header takes half-close: the echo protocol
        does; TLS does not.

        Asked of the class: a TLS protocol (a ProtocolWrapper) declares on its
        instance whatever its transport, this protocol, provides, and would
        hand the call straight back here.
        """
        wrapped = self.wrappedProtocol
        return wrapped is not None and IHalfCloseableProtocol.implementedBy(
            type(wrapped)
        )

    def readConnectionLost(self) -> None:
        """Pass the client's EOF to the echo protocol (half-close)."""
        if self._half_closeable():
            self.wrappedProtocol.readConnectionLost()  # type: ignore[attr-defined]
        else:
            self.link.loseConnection()

    def writeConnectionLost(self) -> None:
        """Pass the end of our write side to the echo protocol."""
        if self._half_closeable():
            self.wrappedProtocol.writeConnectionLost()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """Forget the connection; tell the echo protocol if there is one."""
        self._cancel_timeout()
        self._not_pending()
        self.factory.unregisterProtocol(self)
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.connectionLost(reason)


class ProxyHeaderFactory(WrappingFactory):
    """Wraps the echo factory so that every connection starts with a PROXY header."""

    protocol = ProxyHeaderProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(
        self, wrapped: EchoFactory, after: IProtocolFactory | None = None
    ) -> None:
        super().__init__(wrapped)
        self.wrappedFactory: EchoFactory = wrapped
        self.after: IProtocolFactory = wrapped if after is None else after
        """What builds the protocol once the header is read: the echo factory,
        or a TLS factory in front of it."""
        self.clock = wrapped.clock

    def buildProtocol(self, addr: IAddress) -> IProtocol:  # type: ignore[override]
        """A header reader; the echo protocol is built once the header is read.

        Connections that wait for a header count towards --max-connections
        and the file limit: without that, clients that never send one could
        hold any number of sockets (each for the header timeout).
        """
        reason = self.wrappedFactory.limits.refusal_at_accept()
        if reason is not None:
            return self.wrappedFactory.refuse(addr, reason)
        return ProxyHeaderProtocol(self)


class QuietProxyWrappingFactory(HAProxyWrappingFactory):
    """Twisted's PROXY header reader for any factory, without its start and
    stop log lines."""

    noisy = False


@implementer(IStreamServerEndpoint)
class ProxyHeaderEndpoint:
    """An endpoint whose connections start with a PROXY header (C{haproxy:}).

    C{then}, if given, wraps the echo factory in what comes after the header
    (TLS: L{echod.tls.TLSServerEndpoint.wrap}).
    """

    def __init__(
        self,
        inner: IStreamServerEndpoint,
        then: Callable[[IProtocolFactory], IProtocolFactory] | None = None,
    ) -> None:
        self.inner = inner
        self.then = then

    def listen(self, factory: IProtocolFactory) -> Any:
        """Listen on the inner endpoint with the PROXY header reader in front.

        Any other factory (the metrics site behind C{--metrics haproxy:...})
        gets Twisted's own header reader: without one, a proxy's header would
        reach it as the first line of the request.
        """
        if isinstance(factory, ListenerFactory):  # one listener's way in
            echo = factory.echo_factory
        elif isinstance(factory, EchoFactory):
            echo = factory
        else:
            return self.inner.listen(QuietProxyWrappingFactory(factory))
        after = factory if self.then is None else self.then(factory)
        return self.inner.listen(ProxyHeaderFactory(echo, after))
