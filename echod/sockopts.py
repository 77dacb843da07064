"""Socket options set on a TCP client's socket before it connects.

Twisted's TCP endpoints have no hook between making the socket and
connecting it: they call their reactor's C{connectTCP}. L{PreparingReactor}
is the reactor with a C{connectTCP} that makes the connector Twisted's own
makes, whose transport runs C{prepare} on its socket first: so the SYN
already leaves by the interface C{echod fetch --interface NAME} names
(C{SO_BINDTODEVICE}) and carries the TOS C{-T} asks for (C{IP_TOS}).
(Leans on C{tcp.Connector} and C{tcp.Client}, as Twisted's own
C{connectTCP} does; tested with the Twisted releases of L{echod.compat}.)
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IReactorTCP
from zope.interface import implementer

from echod.compat import running_twisted_tested


def supported() -> bool:
    """Whether the running Twisted is a release L{PreparingReactor} was tested
    with (it builds Twisted's C{tcp.Connector} and C{tcp.Client} itself); on
    another, its callers take the public path or refuse, saying so."""
    return running_twisted_tested()


Prepare = Callable[[socket.socket], None]
"""What is done to a socket before it connects; an OSError fails the connect."""


class PreparedClient(tcp.Client):
    """Twisted's TCP client connection, its socket prepared first."""

    def __init__(self, prepare: Prepare, *args: Any) -> None:
        self.prepare = prepare  # before Twisted's __init__ makes the socket
        super().__init__(*args)  # type: ignore[no-untyped-call]

    def createInternetSocket(self) -> socket.socket:
        """The socket, prepared (an OSError fails the connect)."""
        skt: socket.socket = super().createInternetSocket()  # type: ignore[no-untyped-call]
        try:
            self.prepare(skt)
        except OSError:
            skt.close()
            raise
        return skt


class PreparedConnector(tcp.Connector):
    """Twisted's TCP connector, making L{PreparedClient}s."""

    def __init__(self, prepare: Prepare, *args: Any) -> None:
        super().__init__(*args)
        self.prepare = prepare

    def _makeTransport(self) -> tcp.Client:
        return PreparedClient(
            self.prepare, self.host, self.port, self.bindAddress, self, self.reactor
        )


@implementer(IReactorTCP)
class PreparingReactor:
    """The reactor, its C{connectTCP} preparing each socket with C{prepare};
    everything else goes to the real reactor."""

    def __init__(self, reactor: Any, prepare: Prepare) -> None:
        self._reactor = reactor
        self.prepare = prepare

    def connectTCP(
        self,
        host: str,
        port: int,
        factory: Any,
        timeout: float = 30,
        bindAddress: tuple[str, int] | None = None,
    ) -> tcp.Connector:
        """Connect as C{reactor.connectTCP}, from a prepared socket."""
        connector = PreparedConnector(
            self.prepare, host, port, factory, timeout, bindAddress, self._reactor
        )
        connector.connect()
        return connector

    def listenTCP(self, *args: Any, **kwargs: Any) -> Any:
        """Not prepared: the real reactor's."""
        return self._reactor.listenTCP(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)
