"""Unit tests of echod.reactor: the lean epoll dispatch behaves as the stock one."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import capturedLogs

from echod.reactor import LeanEPollReactor, describe


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        if data == b"boom":
            raise RuntimeError("handler failed")
        self.transport.write(data)


def received(sock: socket.socket, expected: bytes) -> Any:
    """A condition for spin(): C{sock} has received exactly C{expected} so far."""
    got = bytearray()

    def check() -> bool:
        with contextlib.suppress(BlockingIOError):
            got.extend(sock.recv(65536))
        return bytes(got) == expected

    return check


def spin(reactor: Any, until: Any, turns: int = 200) -> None:
    for _ in range(turns):
        if until():
            return
        reactor.iterate(0.01)
    raise AssertionError("condition not reached")


def test_echoes_through_the_lean_dispatch() -> None:
    reactor: Any = LeanEPollReactor()
    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    client.setblocking(False)
    try:
        client.sendall(b"lean")
        spin(reactor, received(client, b"lean"))
    finally:
        client.close()
        port.stopListening()


def test_a_failing_handler_drops_only_its_connection() -> None:
    reactor: Any = LeanEPollReactor()
    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
    address = ("127.0.0.1", port.getHost().port)
    bad, good = socket.create_connection(address), socket.create_connection(address)
    bad.setblocking(False)
    good.setblocking(False)
    try:
        spin(reactor, lambda: len(reactor.getReaders()) >= 3)
        with capturedLogs() as events:
            bad.sendall(b"boom")
            good.sendall(b"fine")
            spin(reactor, received(good, b"fine"))

            def bad_closed() -> bool:
                try:
                    return bad.recv(1) == b""
                except BlockingIOError:
                    return False
                except ConnectionResetError:
                    return True

            spin(reactor, bad_closed)
        assert any("handler failed" in str(e.get("log_failure")) for e in events)
    finally:
        bad.close()
        good.close()
        port.stopListening()


def test_describe() -> None:
    assert describe(LeanEPollReactor()) == "echod.reactor.LeanEPollReactor"


class BrokenOnLoss(Echo):
    def connectionLost(self, reason: object = None) -> None:
        raise RuntimeError("connectionLost failed")


def test_a_failing_disconnect_does_not_stop_the_batch() -> None:
    """An exception while disconnecting one selectable spares the others' events."""
    reactor: Any = LeanEPollReactor()
    bad_factory = Factory.forProtocol(BrokenOnLoss)
    good_factory = Factory.forProtocol(Echo)
    bad_port = reactor.listenTCP(0, bad_factory, interface="127.0.0.1")
    good_port = reactor.listenTCP(0, good_factory, interface="127.0.0.1")
    bad = socket.create_connection(("127.0.0.1", bad_port.getHost().port))
    good = socket.create_connection(("127.0.0.1", good_port.getHost().port))
    good.setblocking(False)
    try:
        spin(reactor, lambda: len(reactor.getReaders()) >= 4)
        with capturedLogs() as events:
            bad.sendall(b"boom")  # the handler raises, then so does connectionLost
            good.sendall(b"fine")
            spin(reactor, received(good, b"fine"))
        assert any("connectionLost failed" in str(e.get("log_failure")) for e in events)
    finally:
        bad.close()
        good.close()
        bad_port.stopListening()
        good_port.stopListening()
