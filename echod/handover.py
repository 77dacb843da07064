"""A connection that opens with an exchange of its own, then belongs to the
protocol above: a proxy's tunnel (L{echod.proxytunnel}), a PROXY header
(L{echod.proxyheader})."""

from __future__ import annotations

from OpenSSL.SSL import Error as SSLError
from twisted.internet import defer, error
from twisted.internet.interfaces import IHalfCloseableProtocol, IProtocolFactory
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(IHalfCloseableProtocol)
class HandOverProtocol(Protocol):
    """The connection's first protocol: once its own opening is done
    (L{hand_over}), every byte and the end of the connection, half-close
    included, go to the protocol C{factory_above} builds."""

    def __init__(self, factory_above: IProtocolFactory) -> None:
        self.factory_above = factory_above
        self.above: Protocol | None = None
        """The protocol above, once the connection is handed over."""
        self.ready: defer.Deferred[Protocol] = defer.Deferred()
        """Fires with the protocol above once the connection is handed over."""

    def opening_dataReceived(self, data: bytes) -> None:
        """Bytes that arrive before the hand-over (none are expected)."""

    def dataReceived(self, data: bytes) -> None:
        """Before the hand-over, L{opening_dataReceived}; after, the protocol above."""
        if self.above is not None:
            self.above.dataReceived(data)
        else:
            self.opening_dataReceived(data)

    def hand_over(self, rest: bytes = b"") -> None:
        """The opening is done: the protocol above takes the connection over,
        with C{rest}, the bytes that came after the opening."""
        assert self.transport is not None
        above = self.factory_above.buildProtocol(self.transport.getPeer())
        if above is None:
            self.transport.loseConnection()
            return
        self.above = above  # type: ignore[assignment]
        above.makeConnection(self.transport)
        self.ready.callback(above)  # type: ignore[arg-type]
        if rest:
            above.dataReceived(rest)

    def lost_early(self) -> Exception:
        """Why the connection failed when it ends before the hand-over (and
        not for a TLS failure under it, which says why itself)."""
        return ConnectionError("closed before the connection was handed over")

    def readConnectionLost(self) -> None:
        """The peer half-closed."""
        if self.above is not None and IHalfCloseableProtocol.providedBy(self.above):
            self.above.readConnectionLost()  # type: ignore[attr-defined]
        elif self.above is not None:
            assert self.transport is not None
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Our write side is shut."""
        if self.above is not None and IHalfCloseableProtocol.providedBy(self.above):
            self.above.writeConnectionLost()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        """The end: the protocol above's, or a connection never handed over."""
        if self.above is not None:
            self.above.connectionLost(reason)
        elif not self.ready.called:
            # TLS under us (an https:// proxy) that failed says why; any other
            # end before the hand-over is this protocol's to explain.
            failed = reason if reason.check(SSLError) else Failure(self.lost_early())
            self.ready.errback(failed)
