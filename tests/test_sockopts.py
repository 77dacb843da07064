"""Unit tests of echod.sockopts: a TCP client's socket prepared before it
connects (end to end: -T in test_client_e2e.py, --interface in
test_fetch_e2e.py)."""

from __future__ import annotations

import socket

from twisted.internet.protocol import ClientFactory
from twisted.internet.testing import MemoryReactorClock

from echod.sockopts import PreparedConnector, PreparingReactor


def test_the_socket_is_prepared_before_the_connect() -> None:
    prepared: list[socket.socket] = []
    clock = MemoryReactorClock()
    connector = PreparedConnector(
        prepared.append, "127.0.0.1", 9, ClientFactory(), 30, None, clock
    )
    client = connector._makeTransport()
    try:
        assert prepared == [client.socket]  # made, prepared, not yet connected
        assert client.socket.getblocking() is False
    finally:
        client.socket.close()


def test_a_failure_to_prepare_fails_the_connection() -> None:
    """The OSError reaches the factory as a failed connection (Twisted's
    ConnectBindError), as a bad bind address does; nothing is raised."""
    made: list[socket.socket] = []

    def refuse(skt: socket.socket) -> None:
        made.append(skt)
        raise PermissionError(1, "Operation not permitted")

    clock = MemoryReactorClock()
    factory = ClientFactory()
    failed: list[str] = []
    factory.clientConnectionFailed = (  # type: ignore[method-assign]
        lambda connector, reason: failed.append(reason.getErrorMessage())
    )
    PreparingReactor(clock, refuse).connectTCP("127.0.0.1", 9, factory, 30)
    clock.advance(0)
    assert len(failed) == 1 and "Operation not permitted" in failed[0], failed
    assert made[0].fileno() == -1  # closed


def test_everything_else_is_the_reactor_s() -> None:
    clock = MemoryReactorClock()
    reactor = PreparingReactor(clock, lambda skt: None)
    assert reactor.seconds() == clock.seconds()
    reactor.listenTCP(0, ClientFactory())
    assert len(clock.tcpServers) == 1
