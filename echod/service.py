"""The daemon's service: binds every listener, and drains connections at stop."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IReactorUDP,
    IStreamServerEndpoint,
)
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from echod.access import EVERYONE, AccessFileError, AccessSources
from echod.echo import EchoFactory, EchoProtocol, ListenerFactory, format_address
from echod.endpointerrors import (
    empty_unix_path,
    listen_failure_message,
    own_port_hint,
    parse_error_message,
)
from echod.logs import json_log_observer, text_log_observer
from echod.metrics import ListenerState, metrics_site
from echod.notify import SystemdNotifier
from echod.proxy import ProxyHeaderEndpoint
from echod.reactor import describe, is_lean
from echod.reuseport import (
    ReusePortAddress,
    ReusePortEndpoint,
    reuse_port_address,
    split_description,
)
from echod.settings import DEFAULT_BACKLOG, EchoSettings
from echod.stats import EchoStats
from echod.stopsignals import stop_once
from echod.tls import (
    ServedCertificate,
    ServerTLS,
    SNIDirectory,
    TLSConfigError,
    TLSProfile,
    TLSServerEndpoint,
    expiry_warnings,
)
from echod.tos import mark_listener
from echod.udp import UDPEchoProtocol, listen_udp
from echod.unixnames import abstract_unix
from echod.writethrough import WriteThroughEchoProtocol

log = Logger(namespace="echod")

FLUSH_GRACE = 5.0
"""Seconds, after the drain time, for the last echoes to flush before abort."""


BACKLOG_TYPES = frozenset({"tcp", "tcp6", "ssl", "unix", "tls"})
"""Endpoint types whose strings take a C{backlog} argument."""


def with_backlog(description: str, backlog: int) -> str:
    """C{description} with C{:backlog=N} added when its type takes one and it has none.

    Twisted's default listen queue is 50: a burst of a few thousand clients
    overflows it, and the kernel then drops handshakes that clients believe
    complete, leaving them waiting for seconds. echod asks for a deep queue.
    """
    head = description.removeprefix("haproxy:")
    kind = head.split(":", 1)[0]
    if kind in BACKLOG_TYPES and ":" in head and "backlog=" not in head:
        return f"{description}:backlog={backlog}"
    return description


class ListenError(Exception):
    """A listener could not be set up; the message says which and why."""


@contextmanager
def errors_named(inner: str, description: str) -> Iterator[None]:
    """Reword a L{ListenError} about C{inner} (the endpoint under C{haproxy:})
    to name the whole C{description} the user gave."""
    try:
        yield
    except ListenError as e:
        raise ListenError(str(e).replace(repr(inner), repr(description))) from None


def listen_now(
    endpoint: IStreamServerEndpoint,
    factory: IProtocolFactory,
    failing: str,
    held: Iterable[IListeningPort] = (),
) -> IListeningPort:
    """Listen, and return the port, or raise L{ListenError} starting C{failing}.

    Every endpoint Twisted ships listens synchronously; one that does not
    would leave us unable to report its failure at start, so it is refused.
    C{held} are the ports this daemon listens on already: when one of them
    is what holds the address, the error says so.
    """
    result: list[IListeningPort | Failure] = []
    endpoint.listen(factory).addBoth(result.append)
    if not result:
        raise ListenError(f"{failing}: the endpoint did not listen at once")
    outcome = result[0]
    if isinstance(outcome, Failure):
        hint = own_port_hint(outcome.value, [port.getHost() for port in held])
        raise ListenError(f"{failing}: {listen_failure_message(outcome.value)}{hint}")
    return outcome


def parse_endpoint(
    reactor: Any,
    description: str,
    backlog: int | None = None,
    reuse_port: bool = False,
) -> IStreamServerEndpoint:
    """A server endpoint from its string, or L{ListenError} saying what is wrong.

    Parsing an endpoint string may read files (certificates for C{ssl:}), so
    both syntax errors and file errors end up here.
    """
    if description.startswith("haproxy:"):
        inner = description.removeprefix("haproxy:")
        if inner.startswith("haproxy:"):
            raise ListenError(
                f"bad endpoint {description!r}: haproxy: twice (a connection "
                "carries one PROXY header, from the proxy in front)"
            )
        with errors_named(inner, description):
            return ProxyHeaderEndpoint(
                parse_endpoint(reactor, inner, backlog, reuse_port)
            )
    kind, _, kwargs = split_description(description)
    if kind in BACKLOG_TYPES:
        check_backlog(description, kwargs)
    if reuse_port:
        try:
            address = reuse_port_address(description, backlog or DEFAULT_BACKLOG)
        except ValueError as e:
            detail = parse_error_message(e)
            raise ListenError(f"bad endpoint {description!r}: {detail}") from None
        if address is not None:
            return ReusePortEndpoint(reactor, address)
    if empty_unix_path(description):
        raise ListenError(f"bad endpoint {description!r}: no socket path")
    try:
        used = description if backlog is None else with_backlog(description, backlog)
        used = abstract_unix(used, server=True)
        endpoint: IStreamServerEndpoint = serverFromString(reactor, used)
    except Exception as e:  # the parsers raise anything from ValueError to OSError
        detail = parse_error_message(e)
        if description.startswith("systemd:") and isinstance(e, (IndexError, KeyError)):
            detail = (
                "no socket inherited from systemd at that index or name "
                "(start echod from a socket unit, or systemd-socket-activate "
                "with --fdname: Twisted needs LISTEN_FDNAMES)"
            )
        raise ListenError(f"bad endpoint {description!r}: {detail}") from None
    return endpoint


def check_backlog(description: str, kwargs: dict[str, str]) -> None:
    """Raise L{ListenError} if an endpoint's C{backlog=} is not a number of at
    least 1 (Python makes a negative backlog 0, a queue of about one)."""
    backlog = kwargs.get("backlog", "1")
    if not backlog.isdigit() or int(backlog) < 1:
        raise ListenError(
            f"bad endpoint {description!r}: {backlog!r} is not a number of at least 1"
        )


class EchoService(Service):
    """Serves echo on every configured listener with one factory and one stats.

    L{listen} binds everything at once and raises L{ListenError} on the first
    failure, so a daemon that cannot serve what it was asked for does not start.
    L{stopService} stops accepting, gives open connections the drain time to
    finish, then flushes and closes the rest.
    """

    name = "echod"

    def __init__(
        self,
        settings: EchoSettings,
        reactor: Any,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.notifier = notifier or SystemdNotifier()
        self.settings = settings
        self.reactor = reactor
        self.stats = EchoStats()
        self.factory = EchoFactory(
            settings,
            self.stats,
            reactor,
            WriteThroughEchoProtocol if settings.write_through else EchoProtocol,
            elapsed_clock=time.monotonic,
        )
        self.tls_servers: list[ServerTLS | SNIDirectory] = []
        self.udp_protocols: list[UDPEchoProtocol] = []
        self.owns_signals = False
        """Under twistd: reload on SIGHUP, and make a second stop signal
        harmless on any reactor (not in tests of the service)."""
        self.endpoints = [(d, self._endpoint(d)) for d in settings.ports]
        self.listening: list[tuple[str, IListeningPort]] = []
        self.metrics_port: IListeningPort | None = None
        self._waiters: list[Deferred[None]] = []
        self.factory.on_empty = self._connections_empty

    def _endpoint(self, description: str) -> IStreamServerEndpoint:
        """The endpoint for one --port; echod builds ssl: and tls: listeners itself."""
        s = self.settings
        if description.startswith(("haproxy:ssl:", "haproxy:tls:")):
            return self._proxied_tls_endpoint(description)
        if description.startswith("ssl:"):
            return self._ssl_endpoint(description)
        if description.startswith("tls:"):
            return self._sni_endpoint(description)
        return parse_endpoint(self.reactor, description, s.backlog, s.reuse_port)

    def _proxied_tls_endpoint(self, description: str) -> IStreamServerEndpoint:
        """C{haproxy:ssl:...} or C{haproxy:tls:...}: the PROXY header in clear,
        then echod's TLS (as HAProxy sends it; see L{echod.proxy})."""
        inner = description.removeprefix("haproxy:")
        with errors_named(inner, description):
            tls = self._endpoint(inner)
        assert isinstance(tls, TLSServerEndpoint)
        return ProxyHeaderEndpoint(tls.inner, tls.wrap)

    def _ssl_endpoint(self, description: str) -> IStreamServerEndpoint:
        s = self.settings
        _, args, kwargs = split_description(description)
        unknown = set(kwargs) - {"privateKey", "certKey", "interface", "backlog"}
        if len(args) != 1 or not args[0].isdigit() or unknown:
            why = (
                f"unknown {', '.join(sorted(unknown))}" if unknown else "ssl:PORT[:...]"
            )
            raise ListenError(f"bad endpoint {description!r}: {why}")
        check_backlog(description, kwargs)
        key_text = kwargs.get("privateKey")
        cert_text = kwargs.get("certKey") or key_text
        cert = Path(cert_text) if cert_text else s.tls_cert
        key = Path(key_text) if key_text else (s.tls_key or s.tls_cert)
        if cert is None or key is None:
            raise ListenError(
                f"{description!r} needs a certificate: --tls-cert FILE --tls-key FILE, "
                "or privateKey=FILE:certKey=FILE in the endpoint"
            )
        try:
            server = ServerTLS(cert, key, self._tls_profile())
        except TLSConfigError as e:
            raise ListenError(str(e)) from None
        return self._tls_over_tcp(
            server, int(args[0]), kwargs.get("interface", ""), kwargs
        )

    def _sni_endpoint(self, description: str) -> IStreamServerEndpoint:
        _, args, kwargs = split_description(description)
        unknown = set(kwargs) - {"port", "interface", "backlog"}
        port_text = kwargs.get("port", "443")
        if len(args) != 1 or not port_text.isdigit() or unknown:
            why = f"unknown {', '.join(sorted(unknown))}" if unknown else (
                "tls:DIRECTORY[:port=N][:interface=ADDR]"
            )  # fmt: skip
            raise ListenError(f"bad endpoint {description!r}: {why}")
        check_backlog(description, kwargs)
        try:
            sni = SNIDirectory(Path(args[0]), self._tls_profile())
        except TLSConfigError as e:
            raise ListenError(str(e)) from None
        return self._tls_over_tcp(
            sni, int(port_text), kwargs.get("interface", "::"), kwargs
        )

    def _tls_profile(self) -> TLSProfile:
        return TLSProfile(self.settings.tls_min_version, self.settings.tls_client_ca)

    def _tls_over_tcp(
        self,
        server: ServerTLS | SNIDirectory,
        port: int,
        interface: str,
        kwargs: dict[str, str],
    ) -> IStreamServerEndpoint:
        """A TCP listener (IPv6 if the interface is) with C{server}'s TLS in front."""
        self.tls_servers.append(server)
        backlog = int(kwargs.get("backlog", self.settings.backlog))
        tcp: IStreamServerEndpoint
        if self.settings.reuse_port:
            family = socket.AF_INET6 if ":" in interface else socket.AF_INET
            address = ReusePortAddress(family, interface or "0.0.0.0", port, backlog)
            tcp = ReusePortEndpoint(self.reactor, address)
        elif ":" in interface:
            tcp = TCP6ServerEndpoint(self.reactor, port, backlog, interface)
        else:
            tcp = TCP4ServerEndpoint(self.reactor, port, backlog, interface)
        return TLSServerEndpoint(server, tcp)

    def reload(self) -> None:
        """SIGHUP: reload every TLS listener's key pairs, and read the files
        of --allowfile and --denyfile again."""
        sources = self.settings.access.sources
        files = sources.files() if sources is not None else ()
        if not (self.tls_servers or files):
            log.info("SIGHUP: nothing to reload (no TLS listener, no access file)")
        if self.tls_servers:
            took = [server.reload() for server in self.tls_servers]
            self.stats.note_reload("tls", all(took))
        if sources is not None and files:
            self.stats.note_reload("access", self.reload_access(sources))

    def reload_access(self, sources: AccessSources) -> bool:
        """Serve new clients by the access files as they are now; on a file
        that will not do, keep the lists in force and say why (False)."""
        try:
            access = sources.load()
        except AccessFileError as e:
            log.error("access reload refused, the old lists stay: {e}", e=str(e))
            return False
        self.factory.access = access
        for protocol in self.udp_protocols:
            protocol.access = access
        log.info("access reloaded: {rules}", rules=access.describe(), event="access")
        return True

    def listen(self) -> None:
        """Bind every stream and UDP listener now, or raise L{ListenError}."""
        try:
            for description, endpoint in self.endpoints:
                failing = f"cannot listen on '{description}'"
                held = [port for _, port in self.listening]
                door = ListenerFactory(self.factory, description)
                port = listen_now(endpoint, door, failing, held)
                self.listening.append((description, port))
                self._mark(port)
            for udp in self.settings.udp:
                udp_reactor: IReactorUDP = self.reactor
                protocol = UDPEchoProtocol(
                    udp, self.stats, self.reactor, self.factory.access
                )
                self.udp_protocols.append(protocol)
                desc = f"udp:{udp.port}" + (
                    f":interface={udp.interface}" if udp.interface else ""
                )
                try:
                    port = listen_udp(
                        udp_reactor, udp, protocol, min(udp.max_size + 1, 65536)
                    )
                except Exception as e:
                    raise ListenError(f"cannot listen on {desc!r}: {e}") from None
                self.listening.append((desc, port))
                self._mark(port)
            if self.settings.metrics:
                self.metrics_port = self._listen_metrics(self.settings.metrics)
        except ListenError:
            for _, port in self.listening:
                port.stopListening()
            self.listening.clear()
            raise

    def _mark(self, port: IListeningPort) -> None:
        """C{--tos}: mark what the listener sends (not a UNIX one's). Twisted's
        TCP, UNIX and UDP ports keep their socket as C{socket}."""
        handle = getattr(port, "socket", None)
        if self.settings.tos is not None and isinstance(handle, socket.socket):
            mark_listener(handle, self.settings.tos)

    def _listen_metrics(self, description: str) -> IListeningPort:
        endpoint = parse_endpoint(self.reactor, description, self.settings.backlog)
        site = metrics_site(
            self.factory,
            self.listener_states,
            self.health,
            self.certificates,
            self.settings.metrics_access,
            after_header=description.startswith("haproxy:"),
        )
        held = [port for _, port in self.listening]
        failing = f"cannot serve metrics on '{description}'"
        return listen_now(endpoint, site, failing, held)

    def listener_states(self) -> list[ListenerState]:
        """Every echo listener and whether it accepts now."""
        up = self.running and not self.factory.draining
        return [ListenerState(d, bool(up)) for d in self.settings.ports]

    def certificates(self) -> list[ServedCertificate]:
        """Every certificate the TLS listeners serve now, once a file."""
        served = {c.file: c for s in self.tls_servers for c in s.certificates()}
        return list(served.values())

    def health(self) -> tuple[bool, str]:
        """(healthy, one word why) for /healthz."""
        if self.factory.draining:
            return False, "stopping"
        if not self.running:
            return False, "starting"
        return True, "ok"

    def setServiceParent(self, parent: Any) -> None:
        """Join C{parent}; under twistd also choose the log format.

        twistd starts logging with the application's L{ILogObserver}
        component when it has one, so C{--log-format json} sets it here, and
        so does text, for the same lines faster (L{echod.logs.ClassicText}),
        unless twistd's C{--syslog} or C{--logger} chose the output.
        """
        super().setServiceParent(parent)
        if not isinstance(parent, Componentized):
            return
        s = self.settings
        if s.log_format == "json":
            parent.setComponent(
                ILogObserver, json_log_observer(s.log_file, self.reactor)
            )
        elif s.writes_log:
            parent.setComponent(
                ILogObserver, text_log_observer(s.log_file, self.reactor)
            )

    def startService(self) -> None:
        """Log the listeners and limits (logging is up by now)."""
        super().startService()
        if self.owns_signals:  # before the first line that says we listen
            signal.signal(
                signal.SIGHUP,
                lambda *_: self.reactor.callFromThread(self.reload),
            )
        for description, port in self.listening:
            log.info(
                "listening on {endpoint} at {address}",
                endpoint=description,
                address=format_address(port.getHost()),
                event="listening",
            )
        if self.metrics_port is not None:
            log.info(
                "metrics on {endpoint} at {address} (/metrics, /healthz)",
                endpoint=self.settings.metrics,
                address=format_address(self.metrics_port.getHost()),
                event="metrics",
            )
        log.info(
            "reactor: {reactor}; write-through: {wt}; busy-poll: {busy}",
            reactor=describe(self.reactor),
            wt="on" if self.settings.write_through else "off",
            busy=f"{self.settings.busy_poll * 1e6:g} us"
            if self.settings.busy_poll
            else "off",
            event="reactor",
        )
        s = self.settings

        def limit(n: int) -> str:
            return str(n) if n else "unlimited"

        log.info(
            "limits: idle_timeout={idle} max_connections={maxc} "
            "max_per_ip={maxip} drain_timeout={drain} "
            "file_limit={files} (up to {cap} connections)",
            idle=f"{s.idle_timeout:g}s" if s.idle_timeout else "off",
            maxc=limit(s.max_connections),
            maxip=limit(s.max_per_ip),
            drain=f"{s.drain_timeout:g}s",
            files=limit(s.file_limit),
            cap=limit(self.factory.limits.fd_cap),
            event="limits",
        )
        if s.log_connections != "all":
            log.info(
                "connection log: {which} (every connection is counted in the "
                "stop summary and /metrics)",
                which="abnormal ends only"
                if s.log_connections == "abnormal"
                else "off",
                event="connection_log",
            )
        if s.access != EVERYONE:
            log.info(
                "access: {rules}",
                rules=s.access.describe(),
                event="access",
            )
        for server in self.tls_servers:
            for warning in expiry_warnings(server.certificates()):
                log.warn("{warning}", warning=warning)
        # twistd starts the services before the reactor runs, and the reactor
        # installs its SIGTERM and SIGINT handlers as it starts: READY before
        # then would let a stop that follows it at once (systemctl start, then
        # stop) kill the daemon outright instead of draining it.
        self.reactor.callWhenRunning(self._reactor_running)

    def _reactor_running(self) -> None:
        """The reactor runs, its stop handlers in place: on Twisted's own
        reactors, make a second stop signal harmless; then READY=1 (and the
        watchdog), now that a stop signal drains."""
        if not self.running:
            return  # stopped before the reactor ran: nothing to announce
        if self.owns_signals and not is_lean(self.reactor):
            stop_once(self.reactor)  # the lean reactor stops once by itself
        self.notifier.ready(f"echoing on {len(self.listening)} listeners")
        self.notifier.start_watchdog(self.reactor)

    def stopService(self) -> Deferred[None]:
        """Stop accepting, drain, flush, close; fires when every connection ended."""
        super().stopService()
        self.factory.draining = True
        self.notifier.stopping(
            f"stopping: draining {len(self.factory.connections)} connections"
        )
        stops = [maybeDeferred(port.stopListening) for _, port in self.listening]
        self.listening.clear()
        # /metrics and /healthz stay up while draining (healthz says 503), so a
        # load balancer sees the stop and Prometheus sees the drain.
        d: Deferred[Any] = DeferredList(stops, consumeErrors=True)
        d.addCallback(self._log_stopping)
        d.addCallback(lambda _: self._wait_empty(self.settings.drain_timeout))
        d.addCallback(self._finish_remaining)
        d.addCallback(lambda _: self._wait_empty(FLUSH_GRACE))
        d.addCallback(self._abort_remaining)
        d.addCallback(lambda _: self.factory.idle_sweeper.stop())
        d.addCallback(self._stop_metrics)
        d.addCallback(lambda _: self.notifier.stop_watchdog())
        d.addCallback(
            lambda _: log.info(
                "stopped: {summary}", summary=self.stats.summary(), event="stopped"
            )
        )
        return d

    def _stop_metrics(self, _: object) -> Deferred[None] | None:
        port, self.metrics_port = self.metrics_port, None
        return None if port is None else port.stopListening()

    def _log_stopping(self, _: object) -> None:
        log.info(
            "stopping: no longer accepting; {open} open connections get "
            "{drain:g}s to finish",
            open=len(self.factory.connections),
            drain=self.settings.drain_timeout,
            event="stopping",
        )

    def _finish_remaining(self, _: object) -> None:
        remaining = list(self.factory.connections)
        if remaining:
            log.info(
                "drain time over: flushing and closing {n} connections",
                n=len(remaining),
                event="drain-finish",
            )
        for protocol in remaining:
            protocol.finish()

    def _abort_remaining(self, _: object) -> Deferred[None]:
        remaining = list(self.factory.connections)
        if remaining:
            log.warn(
                "{n} connections did not finish flushing; aborting them",
                n=len(remaining),
                event="drain-abort",
            )
        for protocol in remaining:
            protocol.abort("drain-abort")
        # Aborted connections report connectionLost on the next reactor turn.
        return self._wait_empty(1.0)

    def _wait_empty(self, timeout: float) -> Deferred[None]:
        """Fires when no connection is open, or after C{timeout} seconds."""
        if not self.factory.connections:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        clock: IReactorTime = self.reactor
        call = clock.callLater(timeout, self._fire_waiter, d)
        d.addBoth(_cancel_call, call)
        return d

    def _fire_waiter(self, d: Deferred[None]) -> None:
        if d in self._waiters:
            self._waiters.remove(d)
            d.callback(None)

    def _connections_empty(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)


def _cancel_call(result: object, call: Any) -> object:
    if call.active():
        call.cancel()
    return result
