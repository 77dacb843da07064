"""Unit tests of echod.proxyheader: the PROXY v1 header a client sends first."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport

from echod.clienterrors import USAGE, ClientError
from echod.proxyheader import HeaderFirstProtocol, check_client_ip, v1_header

LOCAL4, PEER4 = IPv4Address("TCP", "10.0.0.1", 40000), IPv4Address("TCP", "10.0.0.2", 7)
LOCAL6, PEER6 = IPv6Address("TCP", "fe80::1%eth0", 40000), IPv6Address("TCP", "::2", 7)


@pytest.mark.parametrize(
    ("local", "peer", "client_ip", "header"),
    [
        (LOCAL4, PEER4, None, b"PROXY TCP4 10.0.0.1 10.0.0.2 40000 7\r\n"),
        (LOCAL4, PEER4, "203.0.113.5", b"PROXY TCP4 203.0.113.5 10.0.0.2 40000 7\r\n"),
        (LOCAL6, PEER6, None, b"PROXY TCP6 fe80::1 ::2 40000 7\r\n"),  # no zone
        (LOCAL6, PEER6, "2001:db8::5", b"PROXY TCP6 2001:db8::5 ::2 40000 7\r\n"),
        (UNIXAddress(None), UNIXAddress(b"/s"), None, b"PROXY UNKNOWN\r\n"),
    ],
)
def test_headers(
    local: object, peer: object, client_ip: str | None, header: bytes
) -> None:
    assert v1_header(local, peer, client_ip) == header  # type: ignore[arg-type]


def test_a_client_ip_of_the_other_version_is_refused() -> None:
    with pytest.raises(ClientError, match="the connection is IPv4") as e:
        v1_header(LOCAL4, PEER4, "2001:db8::5")
    assert e.value.code == USAGE


def test_client_ips_are_ip_addresses() -> None:
    assert check_client_ip(None) is None
    assert check_client_ip("203.0.113.5") == "203.0.113.5"
    with pytest.raises(ClientError, match="not an IP address"):
        check_client_ip("host.test")


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.made = False

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data


def test_the_header_goes_first_then_the_protocol_above_has_the_connection() -> None:
    protocol = HeaderFirstProtocol(Factory.forProtocol(Recorder), "203.0.113.5")
    transport = StringTransport(hostAddress=LOCAL4, peerAddress=PEER4)
    outcome: list[object] = []
    protocol.ready.addBoth(outcome.append)
    protocol.makeConnection(transport)
    assert transport.value() == b"PROXY TCP4 203.0.113.5 10.0.0.2 40000 7\r\n"
    (above,) = outcome
    assert isinstance(above, Recorder) and above.made
    protocol.dataReceived(b"echo")
    assert above.received == b"echo"
