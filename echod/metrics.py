"""Prometheus metrics on /metrics and a health check on /healthz (``--metrics``).

The figures are read from the daemon's L{EchoStats} and its open connections
when Prometheus scrapes, in the reactor thread: serving metrics costs nothing
per connection or per byte. The exposition format is prometheus_client's.
(prometheus_client's own Twisted resource runs the collector in a thread
pool, where reading the reactor's state would race with it; this resource
renders in the reactor instead.)
"""

from __future__ import annotations

import io
import platform
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IAddress, IProtocolNegotiationFactory
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

import twisted
from echod import __version__
from echod.access import EVERYONE, AccessList
from echod.echo import EchoFactory, RefusedProtocol, format_address, tls_keys
from echod.logs import worth_logging
from echod.proxytlv import proxied_session
from echod.stats import REFUSAL_REASONS, RELOADED, UDP_DROP_REASONS, EchoStats
from echod.tls import ServedCertificate, negotiated

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

MAX_CONNECTIONS = 16
"""Most connections the metrics listener holds open at once.

Prometheus scrapes over one connection and a load balancer's health check
takes another; beyond a few, connections only take file descriptors from the
echo service. Sixteen fit in the descriptors echod keeps back from echo
connections (L{echod.fdlimit.RESERVE}).
"""

IDLE_TIMEOUT = 60.0
"""Seconds a metrics connection may stay without a request before it is closed."""

MAX_BODY = 64 * 1024
"""Most request body bytes a metrics client may send (no page reads any)."""

log = Logger(namespace="echod")


@dataclass(frozen=True)
class ListenerState:
    """A listener as the metrics see it."""

    endpoint: str
    up: bool


def every_reason(known: tuple[str, ...], counts: Counter[str]) -> list[str]:
    """The reasons to export: every known one (zero or not), then any other counted."""
    return [*known, *sorted(set(counts) - set(known))]


class EchoCollector(Collector):
    """Turns echod's counters into Prometheus metric families at scrape time."""

    def __init__(
        self,
        factory: EchoFactory,
        listeners: Callable[[], list[ListenerState]],
        certificates: Callable[[], list[ServedCertificate]] = list,
    ) -> None:
        self.factory = factory
        self.listeners = listeners
        self.certificates = certificates

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family (called by the registry when scraped)."""
        stats = self.factory.stats
        live = list(self.factory.connections)
        yield GaugeMetricFamily(
            "echod_connections_open", "Open echo connections.", value=len(live)
        )
        yield CounterMetricFamily(
            "echod_connections", "Echo connections accepted.",
            value=stats.connections_total,
        )  # fmt: skip
        refused = CounterMetricFamily(
            "echod_connections_refused", "Connections refused, by reason.",
            labels=["reason"],
        )  # fmt: skip
        for reason in every_reason(REFUSAL_REASONS, stats.refused):
            refused.add_metric([reason], stats.refused[reason])
        yield refused
        closed = CounterMetricFamily(
            "echod_connections_closed", "Connections ended, by why.", labels=["reason"]
        )
        for reason, count in sorted(stats.closed.items()):
            closed.add_metric([reason], count)
        yield closed
        yield CounterMetricFamily(
            "echod_idle_timeouts", "Connections closed by the idle timeout.",
            value=stats.closed.get("idle-timeout", 0),
        )  # fmt: skip
        yield CounterMetricFamily(
            "echod_received_bytes", "Bytes read from clients.",
            value=stats.bytes_in + sum(p.bytes_in + p.bytes_discarded for p in live),
        )  # fmt: skip
        yield CounterMetricFamily(
            "echod_sent_bytes", "Bytes echoed to clients (queued or sent).",
            value=stats.bytes_out + sum(p.bytes_out for p in live),
        )  # fmt: skip
        yield CounterMetricFamily(
            "echod_tls_handshake_failures",
            "TLS connections that failed before any byte was echoed.",
            value=stats.tls_handshake_failures,
        )
        sessions = CounterMetricFamily(
            "echod_tls_connections",
            "TLS connections whose handshake finished, by where TLS ended (echod, "
            "or the proxy in front per its PROXY v2 header), version and cipher.",
            labels=["terminated", "version", "cipher"],
        )
        made = Counter(stats.tls_sessions)
        for p in live:
            keys = tls_keys(negotiated(p.transport), proxied_session(p.transport))
            made.update(stats.tls_kind(key) for key in keys)
        for key, count in sorted(made.items()):
            sessions.add_metric(list(key), count)
        yield sessions
        yield CounterMetricFamily(
            "echod_udp_datagrams", "UDP datagrams echoed.", value=stats.udp_datagrams
        )
        dropped = CounterMetricFamily(
            "echod_udp_dropped", "UDP datagrams dropped, by reason.", labels=["reason"]
        )
        for reason in every_reason(UDP_DROP_REASONS, stats.udp_dropped):
            dropped.add_metric([reason], stats.udp_dropped[reason])
        yield dropped
        yield CounterMetricFamily(
            "echod_metrics_connections_refused",
            "Metrics clients refused: not in --metrics-allow, too many open at "
            "once, or a request body over 64 KiB.",
            value=stats.metrics_refused,
        )
        up = GaugeMetricFamily(
            "echod_listener_up", "1 while a listener accepts.", labels=["endpoint"]
        )
        accepted = CounterMetricFamily(
            "echod_listener_connections",
            "Echo connections accepted, by the listener they came in by.",
            labels=["endpoint"],
        )
        for listener in self.listeners():
            up.add_metric([listener.endpoint], 1 if listener.up else 0)
            accepted.add_metric(
                [listener.endpoint], stats.accepted_by[listener.endpoint]
            )
        yield up
        yield accepted
        yield from reload_metrics(stats)
        expiry = GaugeMetricFamily(
            "echod_tls_certificate_expiry_timestamp_seconds",
            "When the certificate a TLS listener serves expires (Unix time), by file.",
            labels=["file"],
        )
        for served in self.certificates():
            expiry.add_metric([str(served.file)], served.not_after)
        yield expiry


def reload_metrics(stats: EchoStats) -> Iterator[Metric]:
    """SIGHUP's reloads: how many took or were refused, and whether the last
    one of each kind took (1 from the start: what was loaded then is in force)."""
    reloads = CounterMetricFamily(
        "echod_reloads", "SIGHUP reloads, by what and result (ok, refused).",
        labels=["what", "result"],
    )  # fmt: skip
    last = GaugeMetricFamily(
        "echod_reload_last_successful",
        "0 while the last reload of this was refused (the old one stays in force).",
        labels=["what"],
    )
    for what in RELOADED:
        for took, result in ((True, "ok"), (False, "refused")):
            reloads.add_metric([what, result], stats.reloads[what, took])
        last.add_metric([what], 0 if what in stats.reload_failing else 1)
    yield reloads
    yield last


class MetricsPage(Resource):
    """GET /metrics: the registry in Prometheus's text format."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        """Render every metric now, in the reactor thread."""
        request.setHeader(b"content-type", CONTENT_TYPE)
        return generate_latest(self.registry)


class HealthPage(Resource):
    """GET /healthz: 200 while every listener accepts, 503 when not (or stopping)."""

    isLeaf = True

    def __init__(self, healthy: Callable[[], tuple[bool, str]]) -> None:
        super().__init__()
        self.healthy = healthy

    def render_GET(self, request: Request) -> bytes:
        """Say ok, or why not, in one line."""
        ok, why = self.healthy()
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if not ok:
            request.setResponseCode(503)
        return (why + "\n").encode()


def refused_metrics_client(stats: EchoStats, peer: str, why: str) -> None:
    """Count a refused metrics client; log the first, then every 1000th."""
    stats.metrics_refused += 1
    if worth_logging(stats.metrics_refused):
        log.warn(
            "refused metrics connection {peer}: {why} ({count} so far)",
            peer=peer,
            why=why,
            count=stats.metrics_refused,
            event="metrics-refused",
        )


class BodilessRequest(Request):
    """A request that keeps no body: no metrics page reads one.

    Twisted keeps a request body whole, in memory or past 100 kB in a
    temporary file, however large it is (4 GB sent to /metrics took 4 GB of
    disk). Here the body is dropped as it arrives, and a client whose body
    passes L{MAX_BODY} is disconnected and counted as refused.
    """

    body_length = 0
    refused = False

    def __init__(self, *args: Any, stats: EchoStats, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = stats

    def gotLength(self, length: int | None) -> None:
        """Keep what little body there is in memory, never in a file."""
        self.content = io.BytesIO()
        if length is not None and length > MAX_BODY:
            self._too_large()

    def handleContentChunk(self, data: bytes) -> None:
        """Drop body bytes; disconnect a client that sends too many."""
        self.body_length += len(data)
        if self.body_length > MAX_BODY:
            self._too_large()

    def _too_large(self) -> None:
        transport: Any = self.channel.transport
        if transport is None or self.refused:
            return
        self.refused = True
        peer = format_address(transport.getPeer())
        refused_metrics_client(self.stats, peer, "request body over 64 KiB")
        transport.abortConnection()


class QuietSite(Site):
    """A Site that does not log every scrape (Prometheus scrapes every few seconds)."""

    def log(self, request: http.Request) -> None:
        """Log nothing per request."""


class AccessCheckedAfterHeader(ProtocolWrapper):
    """A metrics connection behind a PROXY header (C{--metrics haproxy:...}):
    the client is checked against C{--metrics-allow} when its first bytes
    after the header arrive, by the address the header names, not the proxy's
    (the header is read under this wrapper, after the connection was built).
    Nothing is served before that check: a request needs bytes."""

    factory: BoundedSiteFactory
    _checked = False

    def dataReceived(self, data: bytes) -> None:
        """Check the client once, then pass its bytes on (or close)."""
        if not self._checked:
            peer = self.getPeer()
            if not self.factory.access.permits(getattr(peer, "host", None)):
                refused_metrics_client(
                    self.factory.stats, format_address(peer), "not in --metrics-allow"
                )
                self.loseConnection()
                return
            self._checked = True
        super().dataReceived(data)


@implementer(IProtocolNegotiationFactory)
class BoundedSiteFactory(WrappingFactory):
    """A site that holds at most C{most} connections open, and serves only the
    clients C{access} permits, refusing the rest.

    Without a bound, clients of the metrics port (idle, or slow on purpose)
    could hold every file descriptor the daemon has, and echo clients would
    be turned away. A refused connection is closed at once and counted in
    L{EchoStats.metrics_refused}; the first refusal is logged, then every
    1000th, so a flood is not a flood of log lines. Behind a PROXY header
    (C{after_header}), C{access} is checked against the client the header
    names, once it has been read (L{AccessCheckedAfterHeader}).
    """

    noisy = False

    def __init__(
        self,
        site: Site,
        most: int,
        stats: EchoStats,
        access: AccessList = EVERYONE,
        after_header: bool = False,
    ) -> None:
        super().__init__(site)
        self.most = most
        self.stats = stats
        self.access = access
        self.after_header = after_header
        if after_header and access != EVERYONE:
            self.protocol = AccessCheckedAfterHeader

    def buildProtocol(self, addr: IAddress | None) -> Protocol:  # type: ignore[override]
        """The site's protocol, or one that closes at once when C{most} are open.

        (Not None, as Twisted's ports allow: a TLS listener wraps this factory
        and would wrap None too.)
        """
        peer = format_address(addr) if addr is not None else "?"
        permitted = self.after_header or self.access.permits(
            getattr(addr, "host", None)
        )
        if not permitted:
            refused_metrics_client(self.stats, peer, "not in --metrics-allow")
            return RefusedProtocol()
        if len(self.protocols) < self.most:
            return super().buildProtocol(addr)
        refused_metrics_client(self.stats, peer, f"{self.most} already open")
        return RefusedProtocol()

    def acceptableProtocols(self) -> list[bytes]:
        """The site's ALPN protocols, for a TLS listener to offer.

        (Twisted's TLS fails the handshake of a client that offers ALPN when
        the factory it wraps names no protocol, as curl's does.)
        """
        site: Site = self.wrappedFactory
        return list(site.acceptableProtocols())


def build_info() -> GaugeMetricFamily:
    """C{echod_build_info}: 1, labelled with what is running (as Prometheus's own
    C{prometheus_build_info}), so a dashboard can tell versions apart."""
    info = GaugeMetricFamily(
        "echod_build_info",
        "Always 1; the labels say which echod, Twisted and Python run.",
        labels=["version", "twisted", "python"],
    )
    info.add_metric([__version__, twisted.__version__, platform.python_version()], 1)
    return info


class BuildInfoCollector(Collector):
    """Collects L{build_info}."""

    def collect(self) -> Iterator[Metric]:
        """Yield C{echod_build_info}."""
        yield build_info()


def metrics_registry(
    factory: EchoFactory,
    listeners: Callable[[], list[ListenerState]],
    certificates: Callable[[], list[ServedCertificate]] = list,
) -> CollectorRegistry:
    """What /metrics serves: echod's own figures and its build, and the
    process's (C{process_*}: CPU, memory, open files, start time; read from
    /proc, as every Prometheus client library exports them) and Python's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EchoCollector(factory, listeners, certificates))
    registry.register(BuildInfoCollector())
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def metrics_site(
    factory: EchoFactory,
    listeners: Callable[[], list[ListenerState]],
    healthy: Callable[[], tuple[bool, str]],
    certificates: Callable[[], list[ServedCertificate]] = list,
    access: AccessList = EVERYONE,
    after_header: bool = False,
) -> BoundedSiteFactory:
    """The web site served on ``--metrics``: /metrics and /healthz, bounded,
    to the clients C{access} permits (by the PROXY header's address when
    C{after_header}: a C{haproxy:} listener)."""
    registry = metrics_registry(factory, listeners, certificates)
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry))
    root.putChild(b"healthz", HealthPage(healthy))
    requests = partial(BodilessRequest, stats=factory.stats)
    site = QuietSite(root, requestFactory=requests, timeout=IDLE_TIMEOUT)
    site.noisy = False
    site.displayTracebacks = False
    return BoundedSiteFactory(
        site, MAX_CONNECTIONS, factory.stats, access, after_header
    )
