"""``--haproxy-protocol``: a PROXY protocol v1 header first, as curl's.

To test a server behind the PROXY protocol directly (an echod ``haproxy:``
listener, nginx's ``listen ... proxy_protocol``, HAProxy's ``accept-proxy``),
the client itself sends the header a load balancer would: ``PROXY TCP4
<source> <destination> <source port> <destination port>\\r\\n`` with the
connection's own addresses, or with C{--haproxy-clientip IP} as the source,
before anything else (before TLS, where the server reads it), then the
connection is the client's protocol's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from zope.interface import implementer

from echod.clienterrors import USAGE, ClientError
from echod.handover import HandOverProtocol
from echod.resolve import ip_version


def v1_header(local: IAddress, peer: IAddress, client_ip: str | None = None) -> bytes:
    """The PROXY v1 line for a connection from C{local} to C{peer} (its source
    C{client_ip} when given); C{PROXY UNKNOWN} when they are not IP addresses.
    L{ClientError} (usage) for a C{client_ip} of the other IP version."""
    if not isinstance(local, (IPv4Address, IPv6Address)) or not isinstance(
        peer, (IPv4Address, IPv6Address)
    ):
        return b"PROXY UNKNOWN\r\n"
    family = "TCP4" if isinstance(peer, IPv4Address) else "TCP6"
    source = local.host.partition("%")[0]
    if client_ip is not None:
        if ip_version(client_ip) != int(family[-1]):
            raise ClientError(
                USAGE,
                f"--haproxy-clientip {client_ip}: the connection is IPv"
                f"{family[-1]}, and a PROXY header's addresses are of one version",
            )
        source = client_ip
    destination = peer.host.partition("%")[0]
    line = f"PROXY {family} {source} {destination} {local.port} {peer.port}\r\n"
    return line.encode("ascii")


class HeaderFirstProtocol(HandOverProtocol):
    """Sends the PROXY header, then hands the connection to the client's protocol."""

    def __init__(self, factory: IProtocolFactory, client_ip: str | None) -> None:
        super().__init__(factory)
        self.client_ip = client_ip

    def connectionMade(self) -> None:
        """The header first, from the connection's own addresses."""
        assert self.transport is not None
        try:
            header = v1_header(
                self.transport.getHost(), self.transport.getPeer(), self.client_ip
            )
        except ClientError as e:
            self.ready.errback(e)
            self.transport.loseConnection()
            return
        self.transport.write(header)
        self.hand_over()


@implementer(IStreamClientEndpoint)
class HeaderFirstEndpoint:
    """C{inner}'s connections, each opening with a PROXY v1 header."""

    def __init__(self, inner: IStreamClientEndpoint, client_ip: str | None) -> None:
        self.inner = inner
        self.client_ip = client_ip

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[Any]:
        """Connect, send the header, and fire with the client's protocol."""

        def header_first() -> HeaderFirstProtocol:
            return HeaderFirstProtocol(protocolFactory, self.client_ip)

        d: defer.Deferred[Any] = self.inner.connect(Factory.forProtocol(header_first))
        return d.addCallback(lambda protocol: protocol.ready)


def check_client_ip(text: str | None) -> str | None:
    """C{--haproxy-clientip}'s address, or L{ClientError} (usage): an IP
    address, as curl takes it."""
    if text is not None and ip_version(text) is None:
        raise ClientError(USAGE, f"--haproxy-clientip {text!r}: not an IP address")
    return text
