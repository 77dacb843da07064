"""Unit tests of echod.metrics: the figures Prometheus sees."""

from __future__ import annotations

import platform
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest

import twisted
from echod import __version__
from echod.access import AccessList, parse_networks
from echod.echo import EchoFactory, EchoProtocol, RefusedProtocol
from echod.metrics import (
    BoundedSiteFactory,
    EchoCollector,
    HealthPage,
    ListenerState,
    metrics_registry,
    metrics_site,
)
from echod.settings import EchoSettings
from echod.stats import REFUSAL_REASONS, UDP_DROP_REASONS, EchoStats
from echod.tls import ServedCertificate


def scrape(factory: EchoFactory, listeners: list[ListenerState]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EchoCollector(factory, lambda: listeners))
    return generate_latest(registry).decode()


def test_counters_include_open_connections() -> None:
    factory = EchoFactory(EchoSettings(max_per_ip=1), EchoStats(), MemoryReactorClock())
    protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
    assert isinstance(protocol, EchoProtocol)
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(b"x" * 100)
    factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 2))  # refused: per IP
    factory.stats.bytes_in = factory.stats.bytes_out = 1000  # closed ones
    factory.stats.closed["idle-timeout"] = 3
    factory.stats.udp_dropped["rate"] = 7
    text = scrape(
        factory, [ListenerState("tcp:7", True), ListenerState("unix:/s", False)]
    )
    for line in (
        "echod_connections_open 1.0",
        "echod_connections_total 1.0",
        'echod_connections_refused_total{reason="max-per-ip"} 1.0',
        'echod_connections_refused_total{reason="max-connections"} 0.0',
        'echod_connections_closed_total{reason="idle-timeout"} 3.0',
        "echod_idle_timeouts_total 3.0",
        "echod_received_bytes_total 1100.0",
        "echod_sent_bytes_total 1100.0",
        'echod_udp_dropped_total{reason="rate"} 7.0',
        'echod_listener_up{endpoint="tcp:7"} 1.0',
        'echod_listener_connections_total{endpoint="tcp:7"} 0.0',  # from the start
        'echod_listener_up{endpoint="unix:/s"} 0.0',
    ):
        assert line in text.splitlines(), line


def test_health_page() -> None:
    request = DummyRequest([b""])
    assert HealthPage(lambda: (True, "ok")).render_GET(request) == b"ok\n"  # type: ignore[arg-type]
    request = DummyRequest([b""])
    assert HealthPage(lambda: (False, "stopping")).render_GET(request) == b"stopping\n"  # type: ignore[arg-type]
    assert request.responseCode == 503


def test_every_reason_is_exported_even_at_zero() -> None:
    """Each documented reason has a sample from the start (rate() needs it)."""
    factory = EchoFactory(EchoSettings(), EchoStats(), MemoryReactorClock())
    factory.stats.refused["bad-proxy-header"] = 2
    factory.stats.refused["file-limit"] = 1
    factory.stats.refused["some-new-reason"] = 4
    lines = scrape(factory, []).splitlines()
    for reason in REFUSAL_REASONS:
        count = factory.stats.refused[reason]
        sample = f'echod_connections_refused_total{{reason="{reason}"}} {count}.0'
        assert sample in lines
    assert 'echod_connections_refused_total{reason="some-new-reason"} 4.0' in lines
    for reason in UDP_DROP_REASONS:
        assert f'echod_udp_dropped_total{{reason="{reason}"}} 0.0' in lines
    assert "echod_metrics_connections_refused_total 0.0" in lines


def test_bounded_site_refuses_past_its_bound_and_admits_again() -> None:
    stats = EchoStats()
    bounded = BoundedSiteFactory(Site(Resource()), 2, stats)
    peer = IPv4Address("TCP", "192.0.2.1", 1)
    first, second = bounded.buildProtocol(peer), bounded.buildProtocol(peer)
    for protocol in (first, second):
        protocol.makeConnection(StringTransport())
    third = bounded.buildProtocol(peer)
    assert isinstance(third, RefusedProtocol)
    transport = StringTransport()
    third.makeConnection(transport)
    assert transport.disconnecting and transport.value() == b""
    assert stats.metrics_refused == 1
    first.connectionLost(None)  # type: ignore[arg-type]
    fourth = bounded.buildProtocol(peer)
    assert not isinstance(fourth, RefusedProtocol)


def test_bounded_site_serves_only_whom_its_access_list_permits() -> None:
    stats = EchoStats()
    access = AccessList(allow=parse_networks("192.0.2.0/24,2001:db8::/32"))
    bounded = BoundedSiteFactory(Site(Resource()), 2, stats, access)
    for host, kind in (("192.0.2.9", IPv4Address), ("2001:db8::9", IPv6Address)):
        assert not isinstance(
            bounded.buildProtocol(kind("TCP", host, 1)), RefusedProtocol
        )
    outside = bounded.buildProtocol(IPv4Address("TCP", "198.51.100.1", 1))
    assert isinstance(outside, RefusedProtocol) and stats.metrics_refused == 1
    unix = bounded.buildProtocol(UNIXAddress(b"/run/echod.sock"))
    assert not isinstance(unix, RefusedProtocol)  # the socket's mode decides


class OkPage(Resource):
    """Answers 200 to any GET."""

    isLeaf = True

    def render_GET(self, request: object) -> bytes:
        return b"ok"


def test_behind_a_proxy_header_the_named_client_is_checked_at_its_first_bytes() -> None:
    """The connection is built with the proxy's address, before the header is
    read; the check waits for the address the header names."""
    stats = EchoStats()
    access = AccessList(allow=parse_networks("192.0.2.0/24"))
    bounded = BoundedSiteFactory(Site(OkPage()), 2, stats, access, after_header=True)
    proxy = IPv4Address("TCP", "127.0.0.1", 1)
    for client, served in (("192.0.2.9", True), ("198.51.100.1", False)):
        wrapper = bounded.buildProtocol(proxy)  # not refused: the proxy's address
        assert not isinstance(wrapper, RefusedProtocol)
        transport = StringTransport(peerAddress=IPv4Address("TCP", client, 2))
        wrapper.makeConnection(transport)
        wrapper.dataReceived(b"GET / HTTP/1.1\r\nHost: m\r\n\r\n")  # keep-alive
        assert transport.disconnecting != served
        assert transport.value().startswith(b"HTTP/1.1 ") == served
    assert stats.metrics_refused == 1


def test_metrics_site_is_bounded_with_an_idle_timeout() -> None:
    factory = EchoFactory(EchoSettings(), EchoStats(), MemoryReactorClock())
    site = metrics_site(factory, lambda: [], lambda: (True, "ok"))
    assert site.most == 16
    assert site.wrappedFactory.timeOut == 60
    assert site.stats is factory.stats
    # A TLS listener offers the site's ALPN protocols through the wrapper.
    assert IProtocolNegotiationFactory.providedBy(site)
    assert site.acceptableProtocols() == Site(Resource()).acceptableProtocols()


def test_the_process_and_the_build_are_exported() -> None:
    """process_* (as every Prometheus client library exports them), python_info
    and echod_build_info, beside echod's own figures."""
    factory = EchoFactory(EchoSettings(), EchoStats(), MemoryReactorClock())
    text = generate_latest(metrics_registry(factory, lambda: [])).decode()
    values = {
        line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["process_resident_memory_bytes"] > 1 << 20
    assert values["process_open_fds"] >= 3
    assert 0 < time.time() - values["process_start_time_seconds"] < 3600
    assert values["process_cpu_seconds_total"] > 0
    build = (
        f'echod_build_info{{python="{platform.python_version()}",'
        f'twisted="{twisted.__version__}",version="{__version__}"}}'
    )
    assert values[build] == 1
    assert values["echod_connections_total"] == 0
    assert any(name.startswith("python_info{") for name in values)


def test_reloads_and_the_certificates_served() -> None:
    """Every kind and result from the start, 1 for a kind whose last reload
    took (or that has not been reloaded); the expiry of each file served."""
    factory = EchoFactory(EchoSettings(), EchoStats(), MemoryReactorClock())
    served = [ServedCertificate(Path("/etc/echod/a.pem"), 1.8e9)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EchoCollector(factory, list, lambda: served))
    start = generate_latest(registry).decode()
    for line in (
        'echod_reloads_total{result="ok",what="tls"} 0.0',
        'echod_reloads_total{result="refused",what="access"} 0.0',
        'echod_reload_last_successful{what="tls"} 1.0',
        'echod_reload_last_successful{what="access"} 1.0',
        "echod_tls_certificate_expiry_timestamp_seconds"
        '{file="/etc/echod/a.pem"} 1.8e+09',
    ):
        assert line in start.splitlines(), line
    factory.stats.note_reload("tls", True)
    factory.stats.note_reload("tls", False)
    factory.stats.note_reload("access", False)
    factory.stats.note_reload("access", True)
    after = generate_latest(registry).decode().splitlines()
    for line in (
        'echod_reloads_total{result="ok",what="tls"} 1.0',
        'echod_reloads_total{result="refused",what="tls"} 1.0',
        'echod_reload_last_successful{what="tls"} 0.0',
        'echod_reload_last_successful{what="access"} 1.0',
    ):
        assert line in after, line
