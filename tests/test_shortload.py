"""Unit tests of echod.shortload: short connections, one after another, on a
clock and fake connections (the end-to-end tests are in test_benchcli.py)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, error
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.clienterrors import REFUSED, classify
from echod.loadgen import LoadResult, LoadSettings
from echod.shortload import ShortConnectionProtocol, ShortConnectionRun


@implementer(ITCPTransport)
class HalfClosingTransport(StringTransport):  # type: ignore[misc]
    """A TCP transport that records its half-close."""

    def __init__(self) -> None:
        super().__init__()
        self.half_closed = False

    def loseWriteConnection(self) -> None:
        self.half_closed = True


class Connects:
    """Connections the run asks for, made (or refused) when the test says."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Factory, defer.Deferred[Any]]] = []

    def __call__(self, factory: Factory) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.waiting.append((factory, d))
        return d

    def accept(self) -> tuple[ShortConnectionProtocol, HalfClosingTransport]:
        """Make the oldest connection asked for."""
        factory, d = self.waiting.pop(0)
        protocol: Any = factory.buildProtocol(None)  # type: ignore[arg-type]
        transport = HalfClosingTransport()
        protocol.makeConnection(transport)
        d.callback(protocol)
        return protocol, transport

    def refuse(self) -> None:
        """Refuse the oldest connection asked for."""
        _, d = self.waiting.pop(0)
        d.errback(error.ConnectionRefusedError())


def echo_and_close(
    protocol: ShortConnectionProtocol, transport: HalfClosingTransport
) -> None:
    """The server echoes what came, then closes."""
    protocol.dataReceived(transport.value())
    protocol.readConnectionLost()
    protocol.connectionLost(Failure(error.ConnectionDone()))


def run_of(connections: int = 1, size: int = 100) -> tuple[Any, ...]:
    clock = MemoryReactorClock()
    connects = Connects()
    settings = LoadSettings(connections, size, duration=1.0, short=True)
    run = ShortConnectionRun(settings, clock, connects)
    results: list[Any] = []
    run.start().addBoth(results.append)
    return clock, connects, run, results


def test_each_connection_sends_half_closes_and_is_replaced() -> None:
    clock, connects, run, _results = run_of(connections=2, size=100)
    assert len(connects.waiting) == 2  # every slot asks at once
    protocol, transport = connects.accept()
    assert len(transport.value()) == 100 and transport.half_closed
    clock.advance(0.01)
    echo_and_close(protocol, transport)
    assert len(connects.waiting) == 2  # the ended one's place is taken
    assert run.result.requests == 1 and len(run.result.latencies) == 1
    assert run.result.percentiles(0.5) == [0.01]
    assert run.result.clean == run.result.opened == 1


def test_the_end_waits_for_connections_in_flight() -> None:
    clock, connects, _run, results = run_of(connections=1)
    protocol, transport = connects.accept()
    echo_and_close(protocol, transport)
    late, late_transport = connects.accept()
    clock.advance(1.0)  # the time is up with one connection open
    assert results == [] and connects.waiting == []
    echo_and_close(late, late_transport)
    assert len(results) == 1
    result: LoadResult = results[0]
    assert result.ok and result.requests == 1  # the late one ended after the time
    assert result.clean == result.opened == 2
    assert result.bytes_verified == result.bytes_sent == 200


def test_a_short_echo_is_counted_and_the_run_goes_on() -> None:
    clock, connects, _run, results = run_of(connections=1)
    protocol, transport = connects.accept()
    protocol.dataReceived(transport.value()[:40])
    protocol.readConnectionLost()
    protocol.connectionLost(Failure(error.ConnectionDone()))
    assert len(connects.waiting) == 1  # replaced all the same
    again, again_transport = connects.accept()
    clock.advance(1.0)
    echo_and_close(again, again_transport)
    result = results[0]
    assert not result.ok and result.clean == 1 and result.opened == 2
    assert result.problems == [
        "connection 0: closed after 40 of 100 bytes came back",
        "1 connection(s) closed by the server before the echo was whole",
    ]


def test_a_wrong_byte_is_a_mismatch_where_it_is() -> None:
    clock, connects, run, _results = run_of(connections=1)
    protocol, transport = connects.accept()
    data = bytearray(transport.value())
    data[57] ^= 0xFF
    protocol.dataReceived(bytes(data))
    assert transport.disconnecting or transport.disconnected or protocol.failed
    protocol.connectionLost(Failure(error.ConnectionLost()))
    clock.advance(1.0)
    connects.refuse()  # the one opened in its place
    [found] = run.result.mismatches
    assert (found.connection, found.offset) == (0, 57)


def test_refused_before_any_connection_fails_the_run() -> None:
    _clock, connects, run, results = run_of(connections=3)
    connects.refuse()
    assert len(results) == 1 and isinstance(results[0], Failure)
    assert classify(results[0]).code == REFUSED
    assert not run.running and connects.waiting  # the others are left to fail
    connects.refuse()
    connects.refuse()  # and nothing more happens
    assert len(results) == 1


def test_refused_later_is_counted_by_its_reason() -> None:
    clock, connects, _run, results = run_of(connections=1)
    protocol, transport = connects.accept()
    echo_and_close(protocol, transport)
    connects.refuse()
    connects.refuse()
    assert len(connects.waiting) == 1  # the run goes on
    clock.advance(1.0)
    connects.refuse()
    result = results[0]
    assert not result.ok and result.clean == result.opened == 1
    assert result.problems == ["3 connection(s) failed to connect: connection refused"]


def test_a_transport_that_cannot_half_close_closes_once_the_echo_is_whole() -> None:
    """As TLS cannot half-close, such a connection closes when every byte is
    back (TLS itself: end to end in test_benchcli.py)."""
    clock = MemoryReactorClock()
    run = ShortConnectionRun(LoadSettings(1, 10, 1.0, short=True), clock, Connects())
    protocol = ShortConnectionProtocol(run, 0, 0.0)
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert len(transport.value()) == 10 and not transport.disconnecting
    protocol.dataReceived(transport.value())
    assert transport.disconnecting  # every byte back: closed
