"""Unit tests of echod.udp: the echo and its reflection guards."""

from __future__ import annotations

import pytest
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor

from echod.access import AccessList, parse_networks
from echod.settings import UDPSettings
from echod.stats import EchoStats
from echod.udp import SourceRateLimiter, UDPEchoProtocol, listen_udp


class RecordingTransport:
    """Stands in for a UDP port: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def make(
    rate: int = 5, max_size: int = 100
) -> tuple[UDPEchoProtocol, RecordingTransport, Clock]:
    clock = Clock()
    protocol = UDPEchoProtocol(
        UDPSettings(port=0, rate=rate, max_size=max_size), EchoStats(), clock
    )
    transport = RecordingTransport()
    protocol.transport = transport  # type: ignore[assignment]
    return protocol, transport, clock


def test_echoes_to_the_source() -> None:
    protocol, transport, _ = make()
    protocol.datagramReceived(b"ping", ("192.0.2.5", 5353))
    assert transport.sent == [(b"ping", ("192.0.2.5", 5353))]
    assert protocol.stats.udp_datagrams == 1


def test_never_answers_port_zero_or_small_services() -> None:
    protocol, transport, _ = make()
    for port in (0, 7, 9, 13, 17, 19, 37):
        protocol.datagramReceived(b"x", ("192.0.2.5", port))
    assert transport.sent == []
    assert protocol.stats.udp_dropped["source-port"] == 7


def test_drops_datagrams_from_addresses_not_allowed() -> None:
    protocol, transport, _ = make()
    protocol.access = AccessList(parse_networks("192.0.2.0/24"), ())
    protocol.datagramReceived(b"in", ("192.0.2.5", 4000))
    protocol.datagramReceived(b"out", ("198.51.100.1", 4000))
    assert transport.sent == [(b"in", ("192.0.2.5", 4000))]
    assert protocol.stats.udp_dropped["denied"] == 1


def test_drops_oversized_datagrams() -> None:
    protocol, transport, _ = make(max_size=100)
    protocol.datagramReceived(b"y" * 100, ("192.0.2.5", 4000))
    protocol.datagramReceived(b"y" * 101, ("192.0.2.5", 4000))
    assert len(transport.sent) == 1
    assert protocol.stats.udp_dropped["size"] == 1


def test_rate_limit_per_source() -> None:
    protocol, transport, clock = make(rate=5)
    for _ in range(8):
        protocol.datagramReceived(b"z", ("192.0.2.5", 4000))
    protocol.datagramReceived(
        b"z", ("192.0.2.6", 4000)
    )  # another source is not affected
    assert len(transport.sent) == 6
    assert protocol.stats.udp_dropped["rate"] == 3
    clock.advance(0.4)  # two tokens back
    for _ in range(3):
        protocol.datagramReceived(b"z", ("192.0.2.5", 4000))
    assert len(transport.sent) == 8


def test_a_clock_stepped_back_does_not_block_a_source() -> None:
    """The reactor's clock is the wall clock; NTP may step it back. The
    source's tokens must not go an hour into debt."""
    clock = Clock()
    clock.advance(10_000)
    limiter = SourceRateLimiter(rate=2, clock=clock)
    assert limiter.allow("a") and limiter.allow("a") and not limiter.allow("a")
    clock.rightNow -= 3600  # the step back
    assert not limiter.allow("a")  # no tokens made by the step
    clock.advance(0.5)
    assert limiter.allow("a")  # refilling at the rate, as before the step


def test_rate_limiter_table_is_bounded() -> None:
    clock = Clock()
    limiter = SourceRateLimiter(rate=2, clock=clock, max_sources=2)
    assert limiter.allow("a") and limiter.allow("b")
    assert not limiter.allow("c")  # table full of sources that owe tokens
    clock.advance(1.0)  # a and b have refilled: they can be forgotten
    assert limiter.allow("c")
    assert len(limiter) == 1


def test_listen_udp_without_a_zone_is_twisteds_listen_udp() -> None:
    calls: list[tuple[object, ...]] = []

    class Reactor:
        def listenUDP(self, *args: object, **kwargs: object) -> str:
            calls.append((*args, kwargs))
            return "port"

    protocol = DatagramProtocol()
    udp = UDPSettings(port=7007, interface="::1")
    port: object = listen_udp(Reactor(), udp, protocol, 1473)
    assert port == "port"
    assert calls == [(7007, protocol, {"interface": "::1", "maxPacketSize": 1473})]


def test_listen_udp_with_a_zone_that_is_no_interface() -> None:
    with pytest.raises(CannotListenError):
        listen_udp(
            MemoryReactor(),
            UDPSettings(port=7007, interface="fe80::1%no-such-interface"),
            DatagramProtocol(),
            1473,
        )
