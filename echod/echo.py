"""The echo protocol and the factory that admits, counts and logs its connections.

Three properties make this echo lose nothing and hold little:

- half-close: the protocol provides L{IHalfCloseableProtocol}, so a client's EOF
  arrives as C{readConnectionLost} while the connection can still write; echod
  then flushes everything it read and closes.
- backpressure: the protocol registers itself as the streaming producer of its own
  transport. When the transport has more than its C{bufferSize} queued, Twisted
  pauses the producer and echod stops reading from that client until the queue
  has drained; a client that never reads cannot make echod buffer for it.
- graceful stop: L{EchoProtocol.finish} stops reading, flushes every byte read,
  shuts the write side and reads (discarding) until the client closes, so the
  close is clean and never turns into a reset that would destroy echoed data.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from typing import Any, cast

from OpenSSL.SSL import Error as SSLError
from twisted.internet import error
from twisted.internet.address import UNIXAddress
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.fdlimit import connection_cap
from echod.hostnames import host_port
from echod.limits import ConnectionLimits, client_key, plain_host
from echod.proxytlv import ProxiedSession, proxied_session
from echod.settings import NORMAL_ENDS, EchoSettings
from echod.stats import EchoStats
from echod.tls import TLSSession, negotiated
from echod.unixnames import shown_unix_path

log = Logger(namespace="echod")

CLOSED = (
    "closed {peer} in={bytes_in} out={bytes_out} duration={duration:.3f}s "
    "reason={reason}"
)
"""The log line of an ended connection (TLS adds what its handshake made, a
PROXY v2 header what it said of the client's connection to the proxy)."""


class StreamTransport(typing.Protocol):
    """What the echo needs of its transport: TCP, UNIX, TLS and PROXY all have it."""

    def write(self, data: bytes) -> None: ...
    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...
    def getPeer(self) -> IAddress: ...


def can_half_close(transport: object) -> bool:
    """True if C{transport} can shut its write side and go on reading.

    Wrappers copy the interfaces of the transport they wrap, so Twisted's TLS
    transport claims L{ITCPTransport} too; its C{loseWriteConnection} would
    reach the TCP socket under it and cut the TLS stream without a
    close_notify. TLS cannot half-close; plain sockets (and the PROXY
    protocol wrapper over one) can.
    """
    return ITCPTransport.providedBy(transport) and not isinstance(
        transport, TLSMemoryBIOProtocol
    )


def format_address(address: IAddress) -> str:
    """A peer or host address as C{host:port}, C{[v6]:port} or C{unix:path}."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return host_port(plain_host(host), port)
    if isinstance(address, UNIXAddress):
        # A client socket usually has no name: "unix:", as nginx logs it. An
        # abstract name (leading NUL) is written with "@", as ss and systemd do.
        raw: str | bytes = address.name or b""
        name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return "unix:" + shown_unix_path(name)
    return str(address)


@implementer(IHalfCloseableProtocol, IPushProducer)
class EchoProtocol(Protocol):
    """Writes back every byte it receives, in order, with bounded buffering.

    Per-connection state is kept small (thousands of connections are held
    at once): the idle timeout is checked by the factory's L{IdleSweeper}
    from counters the protocol keeps anyway, and flags that rarely change
    are class attributes until they do.
    """

    factory: EchoFactory

    bytes_discarded = 0
    resumes = 0
    """Times the echo queue drained after a pause: progress, for the idle check."""
    end_reason: str | None = None
    _eof = False
    _discarding = False

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.bytes_in = 0
        self.started = 0.0
        self.progress_mark = -1
        """bytes_in + bytes_discarded + resumes when the sweeper last looked
        (-1 before its first look: being connected counts as progress)."""
        self.quiet_looks = 0
        """How many of the sweeper's looks in a row found no progress."""

    @property
    def stream(self) -> StreamTransport:
        """The transport, typed as what the echo uses of it."""
        return cast(StreamTransport, self.transport)

    @property
    def bytes_out(self) -> int:
        """Bytes handed back for the client: all that was read (not discarded)."""
        return self.bytes_in

    def progress(self) -> int:
        """A number that grows whenever the connection makes progress."""
        return self.bytes_in + self.bytes_discarded + self.resumes

    # IProtocol

    def connectionMade(self) -> None:
        """Start counting and register as the transport's producer."""
        self.started = self.factory.elapsed_clock()
        self.factory.connection_made(self)
        self.stream.registerProducer(self, True)
        # A TLS transport (Twisted's TLSMemoryBIOProtocol) says whether its
        # handshake is done; one that never finishes is cut off.
        if getattr(self.transport, "_handshakeDone", None) is False:
            self.factory.clock.callLater(
                self.factory.settings.tls_handshake_timeout, self._check_handshake
            )

    def dataReceived(self, data: bytes) -> None:
        """Echo C{data}; Twisted pauses us if the echo queue grows too long."""
        if self._discarding:
            self.bytes_discarded += len(data)
            return
        self.bytes_in += len(data)
        self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        """Let the factory count and log the end."""
        if self.end_reason is None:
            if reason.check(error.ConnectionDone):
                self.end_reason = "eof" if self._eof else "closed"
            elif reason.check(error.ConnectionLost):
                self.end_reason = "reset"
            elif reason.check(SSLError):
                # TLS wrappers end a failed handshake (plain text, a bad or
                # missing certificate, a protocol mismatch) with OpenSSL's error.
                self.end_reason = "tls-error"
                if self.bytes_in == 0:
                    self.factory.stats.tls_handshake_failures += 1
            else:
                self.end_reason = "error"
        self.factory.connection_lost(self, reason)

    # IHalfCloseableProtocol

    def readConnectionLost(self) -> None:
        """The client sent EOF: flush every byte read, then close cleanly."""
        self._eof = True
        # A registered, paused producer would keep Twisted from closing once
        # the queue drains (it resumes the producer instead); we are done
        # reading, so let go of it first.
        self.stream.unregisterProducer()
        self.stream.loseConnection()

    def writeConnectionLost(self) -> None:
        """Our write side is shut (during a stop): read and discard until EOF."""
        if self._discarding:
            self.stream.resumeProducing()

    # IPushProducer: the transport pauses us when its queue is full.

    def pauseProducing(self) -> None:
        """Stop reading from the client until the echo queue drains."""
        self.stream.pauseProducing()

    def resumeProducing(self) -> None:
        """The queue drained: that is progress; read again."""
        self.resumes += 1
        lower: Any = getattr(self.transport, "transport", None)
        if lower is not None and getattr(lower, "disconnecting", False):
            # A wrapper (TLS after the client's close_notify) is closing the
            # connection under us. While we stay registered, Twisted resumes
            # us instead of finishing the close: let go, and let it finish.
            self.stream.unregisterProducer()
            lower.startWriting()
            return
        self.stream.resumeProducing()

    def stopProducing(self) -> None:
        """The transport is going away; nothing to release."""

    # echod's own

    def finish(self) -> None:
        """Stop reading, flush every byte already read, then close cleanly.

        Used when the daemon stops and the drain time is over. The write side
        is shut down once flushed (the client sees EOF after its last echoed
        byte); input that still arrives is discarded until the client closes.
        """
        if self.transport is None or self.end_reason is not None:
            return
        self.end_reason = "drain"
        if self._eof:
            return  # already flushing towards a clean close
        transport = self.stream
        transport.unregisterProducer()
        transport.pauseProducing()
        self._discarding = True
        if can_half_close(transport):
            cast(ITCPTransport, transport).loseWriteConnection()
        else:
            # TLS: close_notify goes out after the queued echo; then Twisted
            # waits for the client's close_notify or FIN, which it sees only
            # if it reads. Read and discard, as a plain socket does once its
            # write side is shut.
            transport.loseConnection()
            if isinstance(transport, TLSMemoryBIOProtocol):
                transport.resumeProducing()

    def _check_handshake(self) -> None:
        transport = self.transport
        if transport is None or getattr(transport, "_handshakeDone", True):
            return
        if self.end_reason is None:
            self.factory.stats.tls_handshake_failures += 1
            log.warn(
                "TLS handshake from {peer} did not finish in time",
                peer=format_address(transport.getPeer()),
                event="tls-handshake-timeout",
            )
            self.abort("tls-handshake-timeout")

    def close_idle(self) -> None:
        """The idle timeout: close cleanly, as servers do (FIN, after a TLS
        close_notify), not with a reset.

        An idle connection has nothing queued, so it closes at once. One that
        is stuck (a queue the client never reads, a TLS client that never
        answers the close_notify) is aborted at the idle sweeper's next look,
        whatever it sends meanwhile.
        """
        self.end_reason = "idle-timeout"
        transport = self.stream
        transport.unregisterProducer()
        self._discarding = True  # TLS still reads, for the client's close_notify
        transport.loseConnection()

    def abort(self, reason: str) -> None:
        """Drop the connection at once, discarding what is still queued."""
        if self.end_reason is None or self.end_reason == "drain":
            self.end_reason = reason
        if self.transport is not None:
            self.stream.abortConnection()


class IdleSweeper:
    """Closes connections that made no progress for the idle timeout.

    One timer for all connections instead of one per connection: every
    C{interval} seconds (a tenth of the timeout, at least 50 ms, at most
    30 s) it compares each connection's progress counter with what it saw
    last time. A connection is closed once it has shown no progress for the
    timeout: between C{timeout} and C{timeout + interval} seconds after its
    last byte read or its last drained echo queue. It is closed cleanly; if
    it is still open at the next look, it is aborted.

    It counts its looks rather than comparing time stamps: the reactor's
    clock is the wall clock, and a step forward (an NTP correction, a
    virtual machine resumed) would otherwise make every quiet connection
    look idle at once. A step makes at most one early look.
    """

    def __init__(self, factory: EchoFactory, timeout: float) -> None:
        self.factory = factory
        self.timeout = timeout
        self.interval = min(max(timeout / 10, 0.05), 30.0)
        self.looks = math.ceil(timeout / self.interval - 1e-9)
        """Looks without progress, after the one that last saw it, that make
        a connection idle: C{looks} intervals are the timeout."""
        self._call: IDelayedCall | None = None

    def start(self) -> None:
        """Begin sweeping (idempotent)."""
        if self._call is None and self.timeout > 0:
            self._call = self.factory.clock.callLater(self.interval, self.sweep)

    def stop(self) -> None:
        """Stop sweeping."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def sweep(self) -> None:
        """Close the connections that have been quiet for the timeout."""
        looks = self.looks
        idle = []
        for protocol in self.factory.connections:
            if protocol.end_reason == "idle-timeout":
                idle.append(protocol)  # closed at the last look, still open: stuck
                continue
            mark = protocol.progress()
            if mark != protocol.progress_mark:
                protocol.progress_mark = mark
                protocol.quiet_looks = 0
                continue
            protocol.quiet_looks += 1
            if protocol.quiet_looks >= looks:
                idle.append(protocol)
        for protocol in idle:
            if protocol.end_reason is None:
                protocol.close_idle()
            else:  # closing already (the idle close, an EOF or a drain), and stuck
                protocol.abort("idle-timeout")
        self._call = self.factory.clock.callLater(self.interval, self.sweep)


class RefusedProtocol(Protocol):
    """Closes a connection that the limits refused, as soon as it is made."""

    def connectionMade(self) -> None:
        """Close cleanly, without reading or writing anything."""
        assert self.transport is not None
        self.transport.loseConnection()


class EchoFactory(Factory):
    """Builds echo connections for every listener of one daemon.

    One factory serves all listeners, so they share one set of limits, one set
    of counters and one list of open connections to drain at stop.
    """

    noisy = False

    protocol_class: type[EchoProtocol] = EchoProtocol

    def __init__(
        self,
        settings: EchoSettings,
        stats: EchoStats,
        clock: IReactorTime,
        protocol_class: type[EchoProtocol] | None = None,
        elapsed_clock: Callable[[], float] | None = None,
    ) -> None:
        if protocol_class is not None:
            self.protocol_class = protocol_class
        self.settings = settings
        self.stats = stats
        self.clock = clock
        self.elapsed_clock = elapsed_clock or clock.seconds
        """What a connection's C{duration=} is measured on: the daemon gives
        C{time.monotonic}, which no step of the wall clock moves (the
        reactor's clock is the wall clock); tests, their reactor's clock."""
        self.limits = ConnectionLimits(
            settings.max_connections,
            settings.max_per_ip,
            connection_cap(settings.file_limit),
        )
        self.connections: set[EchoProtocol] = set()
        self.draining = False
        self.on_empty: Callable[[], None] | None = None
        """Called each time the last open connection has ended."""
        self.idle_sweeper = IdleSweeper(self, settings.idle_timeout)
        self.access = settings.access
        """Who is served: the settings' list, until a SIGHUP reads its files again."""

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """An L{EchoProtocol}, or a L{RefusedProtocol} if a limit says no."""
        key = client_key(addr) if addr is not None else None
        if self.draining:
            reason: str | None = "draining"
        elif not self.access.permits(key):
            reason = "denied"
        else:
            reason = self.limits.refusal(key)
        if reason is not None:
            return self.refuse(addr, reason)
        self.limits.acquire(key)
        protocol = self.protocol_class(key)
        protocol.factory = self
        return protocol

    def refuse(self, addr: IAddress | None, reason: str) -> Protocol:
        """Count and log a refused connection; the protocol that closes it."""
        self.stats.refused[reason] += 1
        log.warn(
            "refused {peer}: {reason}",
            peer=format_address(addr) if addr is not None else "?",
            reason=reason,
            event="refused",
        )
        refused = RefusedProtocol()
        refused.factory = self
        return refused

    def connection_made(self, protocol: EchoProtocol) -> None:
        """Count a connection that has started."""
        self.connections.add(protocol)
        self.idle_sweeper.start()
        self.stats.connections_open += 1
        self.stats.connections_total += 1

    def connection_lost(self, protocol: EchoProtocol, reason: Failure) -> None:
        """Count and log a connection that has ended."""
        self.connections.discard(protocol)
        self.limits.release(protocol.key)
        stats = self.stats
        stats.connections_open -= 1
        stats.bytes_in += protocol.bytes_in
        stats.bytes_out += protocol.bytes_out
        why = protocol.end_reason or "closed"
        stats.closed[why] += 1
        session = negotiated(protocol.transport)
        proxied = proxied_session(protocol.transport)
        for key in tls_keys(session, proxied):
            stats.note_tls_session(key)
        if self.logs_close(why, protocol.bytes_discarded):
            self.log_close(protocol, why, session, proxied)
        if not self.connections:
            self.idle_sweeper.stop()
            if self.on_empty is not None:
                self.on_empty()

    def logs_close(self, reason: str, discarded: int) -> bool:
        """Whether an ended connection gets its log line (C{--log-connections})."""
        wanted = self.settings.log_connections
        if wanted == "all":
            return True
        return wanted == "abnormal" and (reason not in NORMAL_ENDS or discarded > 0)

    def log_close(
        self,
        protocol: EchoProtocol,
        reason: str,
        session: TLSSession | None = None,
        proxied: ProxiedSession | None = None,
    ) -> None:
        """The log line of an ended connection: who, bytes each way, how long,
        why; over TLS, what its handshake made (C{session}); behind a proxy,
        what its PROXY v2 header said (C{proxied})."""
        peer = "?"
        if protocol.transport is not None:
            peer = format_address(protocol.transport.getPeer())
        fields: dict[str, Any] = dict(
            peer=peer,
            bytes_in=protocol.bytes_in,
            bytes_out=protocol.bytes_out,
            duration=round(self.elapsed_clock() - protocol.started, 6),
            reason=reason,
            event="closed",
        )
        if protocol.bytes_discarded:
            fields["bytes_discarded"] = protocol.bytes_discarded
        text = CLOSED
        for said in (session, proxied):
            if said is not None:
                added = said.log_fields()
                fields.update(added)
                text += "".join(f" {name}={{{name}}}" for name in added)
        log.info(text, **fields)


def tls_keys(
    session: TLSSession | None, proxied: ProxiedSession | None
) -> list[tuple[str, str, str]]:
    """Where TLS ended, version and cipher, for each TLS session a connection
    had: with echod (C{session}), with the proxy in front (C{proxied})."""
    keys = []
    if session is not None:
        keys.append(("echod", session.version, session.cipher))
    if proxied is not None and proxied.tls_version is not None:
        keys.append(("proxy", proxied.tls_version, proxied.tls_cipher or ""))
    return keys


class ListenerFactory(Factory):
    """One listener's way into the shared L{EchoFactory}: the same echo, and
    a count of the connections that came in by this listener (its endpoint
    string), for C{echod_listener_connections_total}."""

    noisy = False

    def __init__(self, factory: EchoFactory, endpoint: str) -> None:
        self.echo_factory = factory
        self.endpoint = endpoint

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """The shared factory's protocol; an accepted one is counted here."""
        protocol = self.echo_factory.buildProtocol(addr)
        if not isinstance(protocol, RefusedProtocol):
            self.echo_factory.stats.accepted_by[self.endpoint] += 1
        return protocol

    def logPrefix(self) -> str:
        """The shared factory's log prefix."""
        return str(self.echo_factory.logPrefix())
