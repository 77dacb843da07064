"""Unit tests of echod.loadgen: the pattern, and a load run against fake peers."""

from __future__ import annotations

from typing import Any

import pytest
from OpenSSL.SSL import Error as SSLError
from twisted.internet import defer, error
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.loadgen import (
    MAX_PIECE,
    PERIOD,
    LoadProtocol,
    LoadResult,
    LoadRun,
    LoadSettings,
    Pattern,
)
from echod.tlsclient import CertificateRejectedError


def test_the_pattern_is_periodic_and_differs_per_connection() -> None:
    a, b = Pattern(1), Pattern(2)
    assert a.at(0, 10) != b.at(0, 10)
    assert a.at(5, 300) == a.at(5 + PERIOD, 300)
    assert a.at(0, 300)[7:17] == a.at(7, 10)
    assert len(a.at(123, MAX_PIECE)) == MAX_PIECE


def test_first_difference_finds_the_wrong_byte() -> None:
    p = Pattern(9)
    data = bytearray()
    for offset in range(1000, 1000 + 150_000, MAX_PIECE):
        data += p.at(offset, min(MAX_PIECE, 1000 + 150_000 - offset))
    assert p.first_difference(1000, bytes(data)) is None
    data[140_001] ^= 0xFF
    assert p.first_difference(1000, bytes(data)) == 140_001
    # shifted by one byte: wrong at once
    assert p.first_difference(1001, bytes(data[:10])) == 0


class Peer:
    """Fake connections: each a StringTransport whose protocol we drive."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.transports: list[StringTransport] = []
        self.protocols: list[Any] = []

    def connect(self, factory: Factory) -> defer.Deferred[Any]:
        if self.refuse:
            return defer.fail(error.ConnectionRefusedError())
        protocol: Any = factory.buildProtocol(None)  # type: ignore[arg-type]
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.transports.append(transport)
        self.protocols.append(protocol)
        return defer.succeed(protocol)

    def echo(self, index: int, change: Any = None) -> int:
        """Send back what connection C{index} wrote; returns the byte count."""
        data = self.transports[index].value()
        self.transports[index].clear()
        if change is not None:
            data = change(data)
        if data:
            self.protocols[index].dataReceived(data)
        return len(data)

    def close(self, index: int) -> None:
        """The server's EOF, then the connection closes."""
        self.protocols[index].readConnectionLost()
        self.protocols[index].connectionLost(Failure(error.ConnectionDone()))


def start(settings: LoadSettings, peer: Peer) -> tuple[Any, MemoryReactorClock]:
    clock = MemoryReactorClock()
    results: list[Any] = []
    LoadRun(settings, clock, peer.connect).start().addBoth(results.append)
    return results, clock


def test_ping_pong_counts_round_trips_and_ends_clean() -> None:
    peer = Peer()
    results, clock = start(LoadSettings(connections=2, size=100, duration=1.0), peer)
    for _ in range(5):
        clock.advance(0.01)
        assert peer.echo(0) == 100
        assert peer.echo(1) == 100
    clock.advance(1.0)  # time up: the in-flight messages come back, then EOF
    peer.echo(0)
    peer.echo(1)
    assert all(t.disconnecting for t in peer.transports)  # half-closed
    assert not results
    peer.close(0)
    peer.close(1)
    [result] = results
    assert isinstance(result, LoadResult)
    assert result.ok
    assert result.requests == 10
    assert result.bytes_verified == result.bytes_sent == 1200
    assert result.percentile(0.5) == pytest.approx(0.01)


def test_connect_and_handshake_times() -> None:
    """Connect: from the connect call to TCP connected; handshake: then to done."""
    clock = MemoryReactorClock()
    pending: list[defer.Deferred[Any]] = []

    def connect(factory: Factory) -> defer.Deferred[Any]:
        pending.append(defer.Deferred())
        return pending[-1]

    run = LoadRun(LoadSettings(connections=2), clock, connect)
    run.start()
    first, second = LoadProtocol(run, 0), LoadProtocol(run, 1)
    clock.advance(0.25)
    first.makeConnection(StringTransport())
    clock.advance(0.5)
    second.makeConnection(StringTransport())
    clock.advance(0.125)
    second.handshakeCompleted()
    connect_times, handshake_times = (
        run.result.connect_times,
        run.result.handshake_times,
    )
    assert (len(connect_times), connect_times.smallest) == (2, 0.25)
    assert connect_times.percentiles(0.5, 1.0) == [0.75, 0.75]
    assert (len(handshake_times), handshake_times.percentiles(0.5)) == (1, [0.125])


class TLSStringTransport(StringTransport, TLSMemoryBIOProtocol):  # type: ignore[misc]
    """A StringTransport that the load generator takes for a TLS connection."""


def tls_run(connections: int) -> tuple[LoadRun, list[Any], list[Any], Any]:
    clock = MemoryReactorClock()
    protocols: list[Any] = []

    def connect(factory: Factory) -> defer.Deferred[Any]:
        protocol: Any = factory.buildProtocol(None)  # type: ignore[arg-type]
        protocol.makeConnection(TLSStringTransport())
        protocols.append(protocol)
        return defer.succeed(protocol)

    results: list[Any] = []
    run = LoadRun(LoadSettings(connections=connections, size=10), clock, connect)
    run.start().addBoth(results.append)
    return run, protocols, results, clock


def test_tls_runs_start_once_every_handshake_is_done() -> None:
    """No handshake in the first round trip's latency, nor in the rates."""
    run, protocols, _, clock = tls_run(2)
    assert not run.running and protocols[0].transport.value() == b""
    clock.advance(0.5)
    protocols[0].handshakeCompleted()
    assert not run.running
    protocols[1].handshakeCompleted()
    assert run.running and run.started == 0.5
    assert [len(p.transport.value()) for p in protocols] == [10, 10]
    times = run.result.handshake_times
    assert (len(times), times.percentiles(0.0, 1.0)) == (2, [0.5, 0.5])


def test_a_connection_lost_in_its_handshake_does_not_hold_the_run() -> None:
    run, protocols, results, clock = tls_run(2)
    protocols[0].handshakeCompleted()
    protocols[1].connectionLost(Failure(error.ConnectionDone()))
    assert run.running  # the other one goes on
    clock.advance(5.0)  # time up; connection 0's message is still out
    protocols[0].dataReceived(protocols[0].transport.value())
    protocols[0].readConnectionLost()
    protocols[0].connectionLost(Failure(error.ConnectionDone()))
    [result] = results
    assert result.problems == ["connection 1: closed by the server before the start"]
    assert result.clean == 1


def test_a_wrong_byte_is_a_mismatch_at_its_offset() -> None:
    peer = Peer()
    results, clock = start(LoadSettings(connections=1, size=100), peer)
    peer.echo(0)

    def corrupt(data: bytes) -> bytes:
        return data[:42] + bytes([data[42] ^ 1]) + data[43:]

    peer.echo(0, corrupt)
    assert peer.transports[0].disconnecting  # aborted
    peer.protocols[0].connectionLost(Failure(error.ConnectionLost()))
    clock.advance(10)
    [result] = results
    assert not result.ok
    [m] = result.mismatches
    assert (m.connection, m.offset) == (0, 142)
    assert m.got == m.expected ^ 1


def test_bytes_that_never_come_back_are_reported() -> None:
    peer = Peer()
    results, clock = start(LoadSettings(connections=1, size=100, duration=1), peer)
    peer.echo(0, lambda data: data[:60])  # 40 bytes lost
    clock.advance(1)
    peer.close(0)
    [result] = results
    assert not result.ok
    assert result.problems == [
        "connection 0: closed by the server after 60 of 100 bytes came back"
    ]


def test_more_bytes_back_than_sent_is_a_failure() -> None:
    peer = Peer()
    results, clock = start(LoadSettings(connections=1, size=10), peer)
    peer.echo(0, lambda data: data + data)
    peer.protocols[0].connectionLost(Failure(error.ConnectionLost()))
    clock.advance(10)
    [result] = results
    assert result.problems == ["connection 0: 10 bytes more came back than were sent"]


def test_stream_keeps_at_most_the_window_in_flight() -> None:
    peer = Peer()
    settings = LoadSettings(connections=1, size=1000, stream=True, window=10_000)
    start(settings, peer)
    assert len(peer.transports[0].value()) == 10_000
    # 2,500 back: topped up in 1,000-byte writes until 10,000 or more are in flight
    peer.echo(0, lambda data: data[:2500])
    assert len(peer.transports[0].value()) == 3000
    protocol = peer.protocols[0]
    assert protocol.sent - protocol.received <= settings.window + settings.size


def test_a_failed_connect_fails_the_run() -> None:
    results, _ = start(LoadSettings(connections=3), Peer(refuse=True))
    [failure] = results
    assert isinstance(failure, Failure)
    assert failure.check(error.ConnectionRefusedError)


def test_a_failed_tls_handshake_fails_the_run_like_a_failed_connect() -> None:
    """A TLS endpoint's connect fires before the handshake; its failure comes later."""
    peer = Peer()
    results, clock = start(LoadSettings(connections=3, duration=1.0), peer)
    rejected = CertificateRejectedError("certificate verify failed: nope")
    peer.protocols[1].connectionLost(Failure(rejected))
    [failure] = results
    assert isinstance(failure, Failure) and failure.value is rejected
    assert [t.disconnecting for t in peer.transports] == [True, False, True]
    for index in (0, 2):
        peer.protocols[index].connectionLost(Failure(error.ConnectionAborted()))
    clock.advance(2.0)  # no timer left to fire into the ended run
    assert not clock.getDelayedCalls()


def test_a_tls_failure_after_echoes_is_a_problem_not_a_connect_failure() -> None:
    peer = Peer()
    results, clock = start(LoadSettings(connections=1, duration=1.0), peer)
    clock.advance(0.01)
    peer.echo(0)
    peer.protocols[0].connectionLost(Failure(SSLError([("SSL routines", "", "bad")])))
    [result] = results
    assert isinstance(result, LoadResult) and not result.ok
    assert "closed by the server" in result.problems[0]


def test_the_drain_timeout_ends_a_stuck_run() -> None:
    peer = Peer()
    settings = LoadSettings(connections=1, size=10, duration=1, drain_timeout=2)
    results, clock = start(settings, peer)
    clock.advance(1)  # time up with a message in flight that never returns
    clock.advance(2)
    assert peer.transports[0].disconnecting
    peer.protocols[0].connectionLost(Failure(error.ConnectionLost()))
    [result] = results
    assert result.problems[0].startswith("1 connection(s) still waiting")


@implementer(ITCPTransport)
class TCPStringTransport(StringTransport):  # type: ignore[misc]
    """A TCP transport that, as a real one, must not be used once it is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.used_after_close: list[str] = []

    def loseWriteConnection(self) -> None:
        if self.closed:
            self.used_after_close.append("loseWriteConnection")

    def loseConnection(self) -> None:
        if self.closed:
            self.used_after_close.append("loseConnection")
        super().loseConnection()

    def abortConnection(self) -> None:
        if self.closed:
            self.used_after_close.append("abortConnection")
        super().abortConnection()


def test_connections_closed_before_the_start_end_the_run() -> None:
    """A daemon that refuses (--allow) closes each connection before all are up:
    the run ends with a problem for each, touching no closed transport."""
    clock = MemoryReactorClock()
    pending: list[defer.Deferred[Any]] = []

    def connect(factory: Factory) -> defer.Deferred[Any]:
        pending.append(defer.Deferred())
        return pending[-1]

    run = LoadRun(LoadSettings(connections=2, duration=1.0), clock, connect)
    results: list[Any] = []
    run.start().addBoth(results.append)
    transports = [TCPStringTransport(), TCPStringTransport()]
    for index, transport in enumerate(transports):
        protocol = LoadProtocol(run, index)
        protocol.makeConnection(transport)
        protocol.readConnectionLost()  # the server's EOF at once
        transport.closed = True
        protocol.connectionLost(Failure(error.ConnectionDone()))
    for deferred in pending:
        deferred.callback(None)
    [result] = results
    assert isinstance(result, LoadResult) and not result.ok
    assert result.problems == [
        f"connection {index}: closed by the server before the start" for index in (0, 1)
    ]
    assert [t.used_after_close for t in transports] == [[], []]
    assert not clock.getDelayedCalls()
