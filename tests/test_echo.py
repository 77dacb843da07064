"""Unit tests of echod.echo with Twisted's in-memory transports and clock."""

from __future__ import annotations

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from echod.access import AccessList, parse_networks
from echod.echo import (
    EchoFactory,
    EchoProtocol,
    ListenerFactory,
    RefusedProtocol,
    format_address,
)
from echod.settings import EchoSettings
from echod.stats import EchoStats


def make_factory(**settings: object) -> tuple[EchoFactory, MemoryReactorClock]:
    clock = MemoryReactorClock()
    factory = EchoFactory(EchoSettings(**settings), EchoStats(), clock)  # type: ignore[arg-type]
    return factory, clock


def connect(
    factory: EchoFactory, host: str = "198.51.100.7", port: int = 4242
) -> tuple[EchoProtocol, StringTransport]:
    peer = IPv4Address("TCP", host, port)
    protocol = factory.buildProtocol(peer)
    assert isinstance(protocol, EchoProtocol)
    transport = StringTransport(peerAddress=peer)
    protocol.makeConnection(transport)
    return protocol, transport


def test_echoes_every_byte_in_order() -> None:
    factory, _ = make_factory()
    protocol, transport = connect(factory)
    for piece in (b"a", b"bc", b"\x00\xff" * 1000, b"end"):
        protocol.dataReceived(piece)
    assert transport.value() == b"abc" + b"\x00\xff" * 1000 + b"end"
    assert protocol.bytes_in == protocol.bytes_out == 2006


def test_registers_itself_as_streaming_producer() -> None:
    factory, _ = make_factory()
    protocol, transport = connect(factory)
    assert transport.producer is protocol
    assert transport.streaming is True


def test_backpressure_pauses_and_resumes_reading() -> None:
    factory, _ = make_factory()
    protocol, transport = connect(factory)
    protocol.pauseProducing()
    assert transport.producerState == "paused"
    before = protocol.progress()
    protocol.resumeProducing()
    assert transport.producerState == "producing"
    assert protocol.progress() > before  # a drained queue is progress


def test_half_close_flushes_then_closes() -> None:
    factory, _ = make_factory()
    protocol, transport = connect(factory)
    protocol.dataReceived(b"tail")
    protocol.readConnectionLost()
    assert transport.value() == b"tail"
    assert transport.disconnecting
    assert transport.producer is None  # or the close would wait forever
    protocol.connectionLost(Failure(ConnectionDone()))
    assert factory.stats.closed["eof"] == 1


def tick(clock: MemoryReactorClock, seconds: float, step: float = 0.25) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)


def test_idle_timeout_closes_cleanly_only_without_progress() -> None:
    factory, clock = make_factory(idle_timeout=10.0)
    protocol, transport = connect(factory)
    tick(clock, 6)
    protocol.dataReceived(b"x")
    tick(clock, 9)
    assert not transport.disconnecting  # 9 s since the last byte
    tick(clock, 2)  # 11 s: past the timeout, within one sweep interval (1 s)
    # StringTransport sets disconnected in abortConnection alone
    assert transport.disconnecting and not transport.disconnected  # FIN, not RST
    assert transport.producer is None  # or the close would wait for a resume
    assert protocol.end_reason == "idle-timeout"
    protocol.connectionLost(Failure(ConnectionDone()))
    assert factory.stats.closed["idle-timeout"] == 1
    assert not clock.getDelayedCalls()  # the sweeper stops with no connections


def test_an_idle_close_that_does_not_finish_is_aborted_at_the_next_look() -> None:
    """A queue the client never reads, a TLS close_notify never answered: the
    clean close cannot finish; bytes the client sends meanwhile are discarded,
    and do not keep the connection."""
    factory, clock = make_factory(idle_timeout=10.0)
    protocol, transport = connect(factory)
    tick(clock, 10)
    assert not transport.disconnecting  # the look at 1 s saw it connected
    tick(clock, 1)  # the look at 11 s closes it
    assert transport.disconnecting and not transport.disconnected
    transport.clear()
    protocol.dataReceived(b"after the close")  # TLS still reads
    assert transport.value() == b""  # not echoed
    tick(clock, 1)
    assert transport.disconnected  # aborted
    protocol.connectionLost(Failure(ConnectionLost()))
    assert factory.stats.closed["idle-timeout"] == 1


def test_a_wall_clock_step_forward_does_not_make_connections_idle() -> None:
    """The reactor's clock is the wall clock: an NTP step or a resumed virtual
    machine moves it by minutes at once. The sweeper counts its looks, so the
    step is one look, not the whole timeout."""
    factory, clock = make_factory(idle_timeout=10.0)
    protocol, transport = connect(factory)
    tick(clock, 3)
    protocol.dataReceived(b"x")
    tick(clock, 1)
    clock.advance(3600)  # the step: one (early) look
    assert not transport.disconnecting
    tick(clock, 8)
    assert not transport.disconnecting
    tick(clock, 1)  # ten looks without progress since the one that saw it
    assert protocol.end_reason == "idle-timeout"


def test_one_sweeper_for_all_connections() -> None:
    factory, clock = make_factory(idle_timeout=4.0)
    quiet, _ = connect(factory, port=1)
    busy, busy_transport = connect(factory, port=2)
    assert len(clock.getDelayedCalls()) == 1
    for _ in range(20):
        tick(clock, 0.5)
        busy.dataReceived(b"!")
    assert quiet.end_reason == "idle-timeout"
    assert not busy_transport.disconnecting


def test_idle_timeout_zero_disables() -> None:
    factory, clock = make_factory(idle_timeout=0.0)
    _, transport = connect(factory)
    assert not clock.getDelayedCalls()
    clock.advance(10**6)
    assert not transport.disconnecting


def test_max_connections_refuses_and_counts() -> None:
    factory, _ = make_factory(max_connections=1)
    first, _ = connect(factory)
    refused = factory.buildProtocol(IPv4Address("TCP", "198.51.100.8", 1))
    assert isinstance(refused, RefusedProtocol)
    transport = StringTransport()
    refused.makeConnection(transport)
    assert transport.disconnecting and transport.value() == b""
    assert factory.stats.refused["max-connections"] == 1
    first.connectionLost(Failure(ConnectionDone()))
    assert isinstance(
        factory.buildProtocol(IPv4Address("TCP", "1.2.3.4", 1)), EchoProtocol
    )


def test_each_listener_counts_the_connections_it_accepted() -> None:
    """Two listeners into one factory: one echo, one limit, counted apart."""
    factory, _ = make_factory(max_connections=2)
    plain, tls = ListenerFactory(factory, "tcp:7"), ListenerFactory(factory, "ssl:443")
    for door, port in ((plain, 1), (tls, 2), (plain, 3)):  # the third is refused
        door.buildProtocol(IPv4Address("TCP", "198.51.100.8", port))
    assert factory.stats.accepted_by == {"tcp:7": 1, "ssl:443": 1}
    assert factory.stats.refused["max-connections"] == 1


def test_max_per_ip_counts_addresses_not_ports() -> None:
    factory, _ = make_factory(max_per_ip=2)
    connect(factory, port=1)
    connect(factory, port=2)
    assert isinstance(
        factory.buildProtocol(IPv4Address("TCP", "198.51.100.7", 3)), RefusedProtocol
    )
    assert isinstance(
        factory.buildProtocol(IPv4Address("TCP", "198.51.100.9", 3)), EchoProtocol
    )
    assert factory.stats.refused["max-per-ip"] == 1


def test_unix_peers_have_no_per_ip_limit() -> None:
    factory, _ = make_factory(max_per_ip=1)
    for _ in range(3):
        assert isinstance(
            factory.buildProtocol(UNIXAddress(b"/run/e.sock")), EchoProtocol
        )


def test_an_address_not_allowed_is_refused_before_the_limits_count_it() -> None:
    access = AccessList(
        parse_networks("198.51.100.0/24"), parse_networks("198.51.100.9")
    )
    factory, _ = make_factory(access=access, max_per_ip=1)
    for host in ("192.0.2.1", "198.51.100.9"):
        refused = factory.buildProtocol(IPv4Address("TCP", host, 1))
        assert isinstance(refused, RefusedProtocol)
    assert factory.stats.refused["denied"] == 2
    assert factory.limits.open == 0
    connect(factory, host="198.51.100.7")
    assert isinstance(factory.buildProtocol(UNIXAddress(b"/run/e.sock")), EchoProtocol)


def test_draining_factory_refuses_new_connections() -> None:
    factory, _ = make_factory()
    factory.draining = True
    assert isinstance(
        factory.buildProtocol(IPv4Address("TCP", "1.2.3.4", 1)), RefusedProtocol
    )
    assert factory.stats.refused["draining"] == 1


def test_close_is_logged_with_peer_bytes_duration_reason() -> None:
    factory, clock = make_factory()
    protocol, _ = connect(factory)
    protocol.dataReceived(b"12345")
    clock.advance(2.5)
    with capturedLogs() as events:
        protocol.connectionLost(Failure(ConnectionLost()))
    (event,) = [e for e in events if e.get("event") == "closed"]
    assert event["peer"] == "198.51.100.7:4242"
    assert event["bytes_in"] == event["bytes_out"] == 5
    assert event["duration"] == 2.5
    assert event["reason"] == "reset"
    stats = factory.stats
    assert (stats.connections_open, stats.connections_total, stats.bytes_in) == (
        0,
        1,
        5,
    )


def test_log_connections_chooses_the_close_lines() -> None:
    """all: every close; abnormal: all but a clean end (eof, closed), and a
    clean end that discarded bytes; none: no close line. Counted all the same."""
    expected = {
        "all": ["eof", "closed", "reset"],
        "abnormal": ["reset"],
        "none": [],
    }
    for which, reasons in expected.items():
        factory, _ = make_factory(log_connections=which)
        with capturedLogs() as events:
            for half_closed, failure in (
                (True, ConnectionDone()),
                (False, ConnectionDone()),
                (False, ConnectionLost()),
            ):
                protocol, _ = connect(factory)
                protocol.dataReceived(b"x")
                if half_closed:
                    protocol.readConnectionLost()
                protocol.connectionLost(Failure(failure))
        logged = [e["reason"] for e in events if e.get("event") == "closed"]
        assert logged == reasons, which
        assert factory.stats.connections_total == 3
    factory, _ = make_factory(log_connections="abnormal")
    assert factory.logs_close("eof", discarded=1)
    assert not factory.logs_close("eof", discarded=0)
    assert factory.logs_close("idle-timeout", discarded=0)


def test_finish_stops_reading_and_closes_after_flush() -> None:
    factory, _ = make_factory()
    protocol, transport = connect(factory)
    protocol.dataReceived(b"read before the stop")
    protocol.finish()
    assert transport.producerState == "paused"
    assert transport.producer is None
    assert transport.disconnecting  # a wrapper transport: whole close after flush
    assert transport.value() == b"read before the stop"
    assert protocol.end_reason == "drain"


def test_on_empty_fires_when_last_connection_ends() -> None:
    factory, _ = make_factory()
    fired: list[bool] = []
    factory.on_empty = lambda: fired.append(True)
    a, _ = connect(factory)
    b, _ = connect(factory)
    a.connectionLost(Failure(ConnectionDone()))
    assert fired == []
    b.connectionLost(Failure(ConnectionDone()))
    assert fired == [True]


def test_format_address() -> None:
    from twisted.internet.address import IPv6Address

    assert format_address(IPv4Address("TCP", "10.1.2.3", 7)) == "10.1.2.3:7"
    assert format_address(IPv6Address("TCP", "::1", 7)) == "[::1]:7"
    assert format_address(IPv6Address("TCP", "::ffff:10.1.2.3", 7)) == "10.1.2.3:7"
    assert format_address(UNIXAddress(b"/tmp/s")) == "unix:/tmp/s"
    assert format_address(UNIXAddress(None)) == "unix:"  # was "UNIXAddress(None)"
    assert format_address(UNIXAddress(b"\0echod")) == "unix:@echod"
