"""Prometheus metrics on /metrics and a health check on /healthz (``--metrics``).

The figures are read from the daemon's L{EchoStats} and its open connections
when Prometheus scrapes, in the reactor thread: serving metrics costs nothing
per connection or per byte. The exposition format is prometheus_client's.
(prometheus_client's own Twisted resource runs the collector in a thread
pool, where reading the reactor's state would race with it; this resource
renders in the reactor instead.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from echod.echo import EchoFactory

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class ListenerState:
    """A listener as the metrics see it."""

    endpoint: str
    up: bool


class EchoCollector(Collector):
    """Turns echod's counters into Prometheus metric families at scrape time."""

    def __init__(
        self, factory: EchoFactory, listeners: Callable[[], list[ListenerState]]
    ) -> None:
        self.factory = factory
        self.listeners = listeners

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
        for reason in ("max-connections", "max-per-ip", "draining"):
            refused.add_metric([reason], stats.refused.get(reason, 0))
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
        yield CounterMetricFamily(
            "echod_udp_datagrams", "UDP datagrams echoed.", value=stats.udp_datagrams
        )
        dropped = CounterMetricFamily(
            "echod_udp_dropped", "UDP datagrams dropped, by reason.", labels=["reason"]
        )
        for reason in ("source-port", "size", "rate"):
            dropped.add_metric([reason], stats.udp_dropped.get(reason, 0))
        yield dropped
        up = GaugeMetricFamily(
            "echod_listener_up", "1 while a listener accepts.", labels=["endpoint"]
        )
        for listener in self.listeners():
            up.add_metric([listener.endpoint], 1 if listener.up else 0)
        yield up


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


class QuietSite(Site):
    """A Site that does not log every scrape (Prometheus scrapes every few seconds)."""

    def log(self, request: http.Request) -> None:
        """Log nothing per request."""


def metrics_site(
    factory: EchoFactory,
    listeners: Callable[[], list[ListenerState]],
    healthy: Callable[[], tuple[bool, str]],
) -> Site:
    """The web site served on ``--metrics``: /metrics and /healthz."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EchoCollector(factory, listeners))
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry))
    root.putChild(b"healthz", HealthPage(healthy))
    site = QuietSite(root)
    site.noisy = False
    site.displayTracebacks = False
    return site
