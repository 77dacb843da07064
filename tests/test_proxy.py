"""Unit tests of echod.proxy: PROXY headers read before admission."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.echo import EchoFactory, EchoProtocol, ListenerFactory
from echod.proxy import (
    HEADER_TIMEOUT,
    ProxyHeaderEndpoint,
    ProxyHeaderFactory,
    ProxyHeaderProtocol,
)
from echod.settings import EchoSettings
from echod.stats import EchoStats
from tests.proxyheaders import proxy_v2

PROXY_ADDR = IPv4Address("TCP", "10.9.9.9", 5555)


def make(**settings: object) -> tuple[ProxyHeaderFactory, MemoryReactorClock]:
    clock = MemoryReactorClock()
    echo = EchoFactory(EchoSettings(**settings), EchoStats(), clock)  # type: ignore[arg-type]
    return ProxyHeaderFactory(echo), clock


def connect(factory: ProxyHeaderFactory) -> tuple[ProxyHeaderProtocol, StringTransport]:
    protocol = factory.buildProtocol(PROXY_ADDR)
    assert isinstance(protocol, ProxyHeaderProtocol)
    transport = StringTransport(peerAddress=PROXY_ADDR)
    protocol.makeConnection(transport)
    return protocol, transport


def v2_header(
    src: str, sport: int, dst: str = "192.0.2.1", dport: int = 10000
) -> bytes:
    return proxy_v2(source=(src, sport), destination=(dst, dport))


def test_v1_header_split_across_segments() -> None:
    factory, _ = make()
    protocol, transport = connect(factory)
    for piece in (
        b"PRO",
        b"XY TCP4 203.0.113.7 19",
        b"2.0.2.1 40000 10000\r",
        b"\nhel",
    ):
        protocol.dataReceived(piece)
    protocol.dataReceived(b"lo")
    assert transport.value() == b"hello"
    assert protocol.getPeer() == IPv4Address("TCP", "203.0.113.7", 40000)
    assert isinstance(protocol.wrappedProtocol, EchoProtocol)
    assert protocol.wrappedProtocol.key == "203.0.113.7"


def test_v2_header() -> None:
    factory, _ = make()
    protocol, transport = connect(factory)
    header = v2_header("198.51.100.4", 5000)
    protocol.dataReceived(header[:5])
    protocol.dataReceived(header[5:] + b"binary\x00")
    assert transport.value() == b"binary\x00"
    assert protocol.getPeer() == IPv4Address("TCP", "198.51.100.4", 5000)


def test_per_ip_limit_uses_the_real_client() -> None:
    factory, _ = make(max_per_ip=1)
    first, _ = connect(factory)
    first.dataReceived(b"PROXY TCP4 203.0.113.7 192.0.2.1 1 10000\r\n")
    other, other_transport = connect(factory)
    other.dataReceived(b"PROXY TCP4 203.0.113.8 192.0.2.1 2 10000\r\nok")
    assert other_transport.value() == b"ok"  # same proxy, another client: admitted
    again, again_transport = connect(factory)
    again.dataReceived(b"PROXY TCP4 203.0.113.7 192.0.2.1 3 10000\r\nno")
    assert again_transport.disconnecting and again_transport.value() == b""
    assert factory.wrappedFactory.stats.refused["max-per-ip"] == 1


def test_malformed_header_is_refused_and_counted_once() -> None:
    factory, clock = make()
    protocol, transport = connect(factory)
    with capturedLogs() as events:
        protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        assert transport.disconnected
        clock.advance(HEADER_TIMEOUT)  # was: refused again, as a timeout
    assert factory.wrappedFactory.stats.refused["bad-proxy-header"] == 1
    assert protocol.wrappedProtocol is None
    assert [e["why"] for e in events] == ["malformed PROXY header"]
    assert not clock.getDelayedCalls()


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 203.0.113.7 192.0.2.1 abc 10000\r\n",  # Twisted: ValueError
        b"PROXY TCP4 203.0.113.7 192.0.2.1 1 \xff\r\n",
        b"PROXY TCP4 999.0.113.7 192.0.2.1 1 10000\r\n",
        b"PROXY TCP4 2001:db8::1 192.0.2.1 1 10000\r\n",
        b"PROXY TCP6 203.0.113.7 2001:db8::2 1 10000\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 10000\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 1 -1\r\n",
    ],
)
def test_bad_addresses_and_ports_are_refused_and_counted(header: bytes) -> None:
    """As HAProxy's own parser: a header must carry real addresses and ports."""
    factory, _ = make()
    protocol, transport = connect(factory)
    with capturedLogs() as events:
        protocol.dataReceived(header + b"data")
    assert transport.disconnected and transport.value() == b""
    assert factory.wrappedFactory.stats.refused["bad-proxy-header"] == 1
    assert protocol.wrappedProtocol is None
    assert [e["why"] for e in events] == ["malformed PROXY header"]


def test_missing_header_times_out() -> None:
    factory, clock = make()
    _, transport = connect(factory)
    clock.advance(HEADER_TIMEOUT)
    assert transport.disconnected
    assert factory.wrappedFactory.stats.refused["bad-proxy-header"] == 1


def test_half_close_passes_through() -> None:
    factory, _ = make()
    protocol, transport = connect(factory)
    protocol.dataReceived(b"PROXY TCP4 203.0.113.7 192.0.2.1 1 10000\r\ntail")
    protocol.readConnectionLost()
    assert transport.value() == b"tail"
    assert transport.disconnecting  # flushed, then closed by the echo protocol
    assert protocol._timeout is None  # the header timeout was cancelled


def test_after_the_header_the_connection_goes_to_what_comes_next() -> None:
    """haproxy:ssl: — the header in clear, then a factory (TLS) in front of echo,
    asked with the client's address from the header."""
    clock = MemoryReactorClock()
    echo = EchoFactory(EchoSettings(), EchoStats(), clock)
    asked: list[object] = []

    class Next(WrappingFactory):
        def buildProtocol(self, addr: object) -> Protocol:  # type: ignore[override]
            asked.append(addr)
            return Protocol()

    protocol, _ = connect(ProxyHeaderFactory(echo, Next(echo)))
    protocol.dataReceived(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 10000\r\n")
    assert asked == [IPv4Address("TCP", "203.0.113.7", 40000)]
    assert type(protocol.wrappedProtocol) is Protocol


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY UNKNOWN\r\n",  # the short form: Twisted's parser refused it
        b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00",  # v2 LOCAL
    ],
)
def test_a_header_without_addresses_keeps_the_connections_own(header: bytes) -> None:
    factory, _ = make()
    protocol, transport = connect(factory)
    protocol.dataReceived(header + b"hi")
    assert transport.value() == b"hi"
    assert protocol.getPeer() == PROXY_ADDR
    assert factory.wrappedFactory.stats.refused["bad-proxy-header"] == 0


@pytest.mark.parametrize(
    "line", [b"PROXY UNKNOWNX\r\n", b"PROXY\r\n", b"PROXY \r\n", b"PROXY TCP4\r\n"]
)
def test_almost_unknown_is_still_malformed(line: bytes) -> None:
    factory, _ = make()
    protocol, transport = connect(factory)
    protocol.dataReceived(line + b"hi")
    assert transport.value() == b""
    assert factory.wrappedFactory.stats.refused["bad-proxy-header"] == 1


def test_connections_waiting_for_a_header_count_towards_the_limits() -> None:
    """They held a socket each without counting: clients that never send a
    header could take every file descriptor."""
    factory, clock = make(max_connections=2)
    limits = factory.wrappedFactory.limits
    first, _ = connect(factory)
    second, second_transport = connect(factory)
    assert limits.pending == 2
    with capturedLogs() as events:
        third = factory.buildProtocol(PROXY_ADDR)
        assert not isinstance(third, ProxyHeaderProtocol)
        third_transport = StringTransport(peerAddress=PROXY_ADDR)
        third.makeConnection(third_transport)
    assert third_transport.disconnecting
    assert factory.wrappedFactory.stats.refused["max-connections"] == 1
    assert [e["reason"] for e in events] == ["max-connections"]
    first.dataReceived(b"PROXY TCP4 203.0.113.7 192.0.2.1 1 10000\r\n")
    assert (limits.open, limits.pending) == (1, 1)  # admitted: still two sockets
    assert limits.refusal_at_accept() == "max-connections"
    clock.advance(HEADER_TIMEOUT)  # the second never sent one
    second.connectionLost(Failure(ConnectionDone()))
    assert (limits.open, limits.pending) == (1, 0)
    assert second_transport.disconnected
    assert limits.refusal_at_accept() is None


def test_pending_is_released_once_however_the_wait_ends() -> None:
    factory, _ = make()
    limits = factory.wrappedFactory.limits
    for ending in ("malformed", "gone"):
        protocol, _ = connect(factory)
        if ending == "malformed":
            protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        protocol.connectionLost(Failure(ConnectionDone()))
        assert limits.pending == 0


def test_a_haproxy_listener_counts_the_clients_it_admitted() -> None:
    """The listener's way in (L{ListenerFactory}) is what the header reader
    hands the connection to, so the listener counts it; the echo factory
    still keeps the limits and the pending count."""
    listened: list[IProtocolFactory] = []

    @implementer(IStreamServerEndpoint)
    class Inner:
        def listen(self, factory: IProtocolFactory) -> Deferred[Any]:
            listened.append(factory)
            return succeed(None)

    clock = MemoryReactorClock()
    echo = EchoFactory(EchoSettings(), EchoStats(), clock)
    ProxyHeaderEndpoint(Inner()).listen(ListenerFactory(echo, "haproxy:tcp:7"))
    (header_reader,) = listened
    assert isinstance(header_reader, ProxyHeaderFactory)
    protocol, transport = connect(header_reader)
    assert echo.limits.pending == 1
    protocol.dataReceived(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 7\r\nhi")
    assert transport.value() == b"hi"
    assert echo.stats.accepted_by == {"haproxy:tcp:7": 1}
    assert echo.limits.pending == 0
