"""Unit tests of echod.handover: a connection's first protocol hands over."""

from __future__ import annotations

from OpenSSL.SSL import Error as SSLError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.handover import HandOverProtocol


@implementer(IHalfCloseableProtocol)
class Above(Protocol):
    """The protocol above: what reached it."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def dataReceived(self, data: bytes) -> None:
        self.events.append(data)

    def readConnectionLost(self) -> None:
        self.events.append("eof")

    def writeConnectionLost(self) -> None:
        self.events.append("write shut")

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.events.append("lost")


class Opening(HandOverProtocol):
    """Hands over after the peer's first line."""

    def opening_dataReceived(self, data: bytes) -> None:
        rest = data.partition(b"\n")[2]
        self.hand_over(rest)


def test_bytes_after_the_opening_and_the_end_go_above() -> None:
    protocol = Opening(Factory.forProtocol(Above))
    protocol.makeConnection(StringTransport())
    outcome: list[object] = []
    protocol.ready.addBoth(outcome.append)
    protocol.dataReceived(b"hello\nrest")
    protocol.dataReceived(b"more")
    protocol.readConnectionLost()
    protocol.writeConnectionLost()
    protocol.connectionLost(Failure(ConnectionError()))
    (above,) = outcome
    assert isinstance(above, Above)
    assert above.events == [b"rest", b"more", "eof", "write shut", "lost"]


def test_a_connection_that_ends_before_the_hand_over_fails() -> None:
    protocol = Opening(Factory.forProtocol(Above))
    protocol.makeConnection(StringTransport())
    outcome: list[Failure] = []
    protocol.ready.addErrback(outcome.append)
    protocol.connectionLost(Failure(ConnectionError()))
    assert "closed before the connection was handed over" in str(outcome[0].value)


def test_a_factory_that_declines_closes_the_connection() -> None:
    class Declining(Factory):
        def buildProtocol(self, addr: object) -> None:  # type: ignore[override]
            return None

    protocol = Opening(Declining())
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"hello\n")
    assert transport.disconnecting and protocol.above is None


def test_a_tls_failure_under_it_says_why_itself() -> None:
    """Under an https:// proxy's TLS, a failed handshake is the reason given."""
    protocol = Opening(Factory.forProtocol(Above))
    protocol.makeConnection(StringTransport())
    outcome: list[Failure] = []
    protocol.ready.addErrback(outcome.append)
    protocol.connectionLost(Failure(SSLError("certificate verify failed")))
    assert outcome[0].check(SSLError)
