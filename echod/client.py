"""``echod client``: poke any TCP, TLS or UDP service, echo or not.

Three modes, chosen by how it is run (and C{-z}, as nc's: connect, close):

- on a terminal: an ``input>`` prompt with line editing and history
  (readline). Replies are printed as they arrive, above the line being typed,
  which is then redrawn; ``exit`` or Ctrl-D quits (Ctrl-D first half-closes
  and prints what is still coming);
- not on a terminal: a pipe like ``nc -N``: stdin goes to the peer byte for
  byte, the peer's bytes to stdout, both with backpressure; at the end of
  stdin the connection is half-closed; it exits when the peer closes;
- ``--count N``: a probe that sends N messages, checks each echo and prints
  round-trip times and a summary, like ping.

Over UDP (``--udp``, L{echod.udpclient}) each message or line is a datagram.

Exit codes (also in the README): 0 fine, 1 a probe saw a lost or wrong echo,
2 bad usage, 3 name not found, 4 connection refused, 5 network or host
unreachable, 6 timeout, 7 TLS failure (certificate or handshake), 8 reset
by the peer.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import math
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from OpenSSL.SSL import Error as SSLError
from service_identity import VerificationError
from twisted.internet import defer, error, stdio
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP6ClientEndpoint,
    clientFromString,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IPushProducer,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.cli import (
    add_family_options,
    is_port,
    options_apply,
    parse_arguments,
    port_number,
)
from echod.echo import can_half_close
from echod.endpointerrors import empty_unix_path, parse_error_message
from echod.hostnames import HostNameError, ascii_host, host_port
from echod.resolve import ReactorOfOneFamily, family_mismatch, source_family
from echod.reuseport import split_description
from echod.settings import MAX_UDP_PAYLOAD
from echod.tlsclient import (
    CertificateRejectedError,
    ClientTLS,
    TLSClientError,
    connection_creator,
)
from echod.unixnames import abstract_unix
from echod.zones import missing_zone, needs_zone

DEFAULT_TARGET = "localhost:10000"
PROMPT = "input> "

OK, PROBE_FAILED, USAGE, DNS, REFUSED, UNREACHABLE, TIMEOUT, TLS, RESET = range(9)


class ClientError(Exception):
    """A failure with the exit code it maps to."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def classify(failure: Failure | BaseException) -> ClientError:
    """The exit code and one-line message for a connection failure."""
    e = failure.value if isinstance(failure, Failure) else failure
    if isinstance(e, ClientError):
        return e
    if isinstance(e, error.DNSLookupError):
        return ClientError(DNS, f"cannot resolve the name: {e}")
    if isinstance(e, error.ConnectBindError):
        why = os.strerror(e.osError) if isinstance(e.osError, int) else e
        return ClientError(USAGE, f"cannot bind the source address: {why}")
    if isinstance(e, error.ConnectionRefusedError):
        return ClientError(REFUSED, "connection refused")
    if isinstance(e, (error.TimeoutError, defer.TimeoutError, defer.CancelledError)):
        return ClientError(TIMEOUT, "timed out")
    if isinstance(e, error.NoRouteError):
        return ClientError(UNREACHABLE, "no route to host")
    os_error = (
        getattr(e, "osError", None) if isinstance(e, error.ConnectError) else None
    )
    if os_error in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return ClientError(UNREACHABLE, f"unreachable: {e}")
    if os_error in (errno.ENOENT, errno.ENOTDIR):
        # a UNIX socket path with nothing there: as a TCP port nobody listens on
        return ClientError(REFUSED, "connection refused: no such socket file")
    if os_error in (errno.EACCES, errno.EPERM):
        return ClientError(UNREACHABLE, "permission denied")
    if isinstance(e, VerificationError):
        return ClientError(TLS, f"TLS failure: the certificate does not match: {e}")
    if isinstance(e, CertificateRejectedError):
        return ClientError(TLS, f"TLS failure: {e}")
    if isinstance(e, SSLError):
        reason = "; ".join(str(x[2]) for x in e.args[0] if len(x) > 2) if e.args else ""
        return ClientError(TLS, f"TLS failure: {reason or e}")
    if isinstance(e, (error.ConnectionLost, ConnectionResetError)):
        return ClientError(RESET, "connection reset by the peer")
    if isinstance(e, error.ConnectError):
        text = str(e)
        if "unreachable" in text.lower():
            return ClientError(UNREACHABLE, text)
        if "refused" in text.lower():
            return ClientError(REFUSED, "connection refused")
        return ClientError(UNREACHABLE, text)
    return ClientError(RESET, f"connection failed: {e}")


@dataclass(frozen=True)
class Target:
    """Where to connect, and the host name TLS verifies."""

    host: str | None
    port: int | None
    endpoint: str | None  # a Twisted client endpoint string, when not host:port
    tls: bool
    family: int | None = None  # -4 or -6: the addresses of one IP version only
    source: str | None = None  # --source: the local address to connect from
    source_port: int | None = None  # --source-port: the local port

    def label(self) -> str:
        """How messages name the peer: C{host:port}, C{[v6]:port} or the endpoint."""
        if self.endpoint is not None:
            return self.endpoint
        return host_port(self.host or "", self.port)


TARGET_FORMS = (
    "expected HOST:PORT, [IPv6]:PORT or a Twisted endpoint such as "
    "tcp:host=HOST:port=PORT"
)


def is_ipv6(text: str) -> bool:
    """Whether C{text} is an IPv6 address."""
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def checked_port(text: str, port_text: str) -> int:
    """C{port_text} as a port number, or L{ClientError} (usage) naming C{text}."""
    port = int(port_text)
    if not is_port(port):
        raise ClientError(USAGE, f"bad port in {text!r}: ports are 1 to 65535")
    return port


def checked_host(host: str) -> str:
    """C{host} in ASCII (an international name as its A-labels, as curl
    looks it up and sends it in TLS), or L{ClientError} (usage)."""
    try:
        return ascii_host(host)
    except HostNameError as e:
        raise ClientError(USAGE, str(e)) from None


def endpoint_host_port(
    args: list[str], kwargs: dict[str, str]
) -> tuple[str | None, str | None]:
    """The host and port text of a split C{tcp:} or C{ssl:} endpoint string."""
    host = kwargs.get("host", args[0] if args else None)
    port = kwargs.get("port", args[1] if len(args) > 1 else None)
    return host, port


def check_endpoint_host(text: str, host: str | None) -> None:
    """Refuse a bracketed host in an endpoint string, which Twisted would look up."""
    if host is not None and ("[" in host or "]" in host):
        raise ClientError(
            USAGE,
            f"bad host {host!r} in {text!r}: in an endpoint string an IPv6 "
            "address has no brackets and its colons are escaped "
            "(host=\\:\\:1); or give [IPv6]:PORT",
        )


def ssl_target(text: str) -> Target:
    """Twisted's C{ssl:} client endpoint string as a target of echod's own TLS.

    Twisted's C{ssl:} client endpoint verifies nothing unless given a CA
    directory; echod never connects unverified without C{--insecure}, so
    C{ssl:host=H:port=P} (or C{ssl:H:P}) means what C{tls:H:P} means.
    """
    _, args, kwargs = split_description(text)
    other = sorted(set(kwargs) - {"host", "port"})
    if other:
        raise ClientError(
            USAGE,
            f"bad endpoint {text!r}: echod does TLS itself, so {', '.join(other)} "
            "has no place here: use tls:HOST:PORT with --cacert, --cert, --key",
        )
    host, port_text = endpoint_host_port(args, kwargs)
    check_endpoint_host(text, host)
    if not host or port_text is None or not port_text.isdigit():
        raise ClientError(USAGE, f"bad endpoint {text!r}: expected ssl:HOST:PORT")
    return Target(checked_host(host), checked_port(text, port_text), None, True)


def check_endpoint(text: str) -> None:
    """Check the host and port of a C{tcp:} client endpoint string up front.

    Twisted would take a bracketed host as a name to look up (and report a
    refused or failed connection) and a port past 65535 as a connect error.
    """
    kind, args, kwargs = split_description(text)
    if kind != "tcp":
        return
    host, port_text = endpoint_host_port(args, kwargs)
    check_endpoint_host(text, host)
    if host is not None:
        checked_host(host)  # Twisted converts it itself, or fails late
    if host is not None and needs_zone(host.partition("%")[0]):
        # Twisted's tcp: endpoint drops a zone; [fe80::1%eth0]:PORT keeps it.
        address, _, zone = host.partition("%")
        port = port_text or "PORT"
        if not zone:
            raise ClientError(USAGE, missing_zone(host, f"[{host}%eth0]:{port}"))
        raise ClientError(
            USAGE,
            f"Twisted's tcp: endpoint loses the zone of {host}: write "
            f"[{address}%{zone}]:{port}",
        )
    if port_text is not None and port_text.isdigit():
        checked_port(text, port_text)


def parse_target(text: str, tls: bool, family: int | None = None) -> Target:
    """C{host:port}, C{[v6]:port}, C{tls:host:port}, or a client endpoint string.

    C{family} (4 or 6, from C{-4}/C{-6}) goes with a host and port only: an
    endpoint string names its own (C{tcp6:}).
    """
    if text.startswith("tls:"):
        tls, text = True, text[len("tls:") :]
    if text.startswith("ssl:"):
        return of_family(ssl_target(text), family)
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
        if not (closed and is_ipv6(host)):
            raise ClientError(USAGE, f"bad IPv6 address in {text!r}")
    else:
        host, _, port_text = text.rpartition(":")
        if ":" in host and not is_ipv6(host):
            host = ""  # an endpoint string such as tcp:HOST:PORT
    if host and port_text.isdigit() and "=" not in text:
        if needs_zone(host):
            example = f"[{host}%eth0]:{port_text}"
            raise ClientError(USAGE, missing_zone(host, example))
        target = Target(checked_host(host), checked_port(text, port_text), None, tls)
        return of_family(target, family)
    if tls:
        raise ClientError(USAGE, f"TLS needs HOST:PORT, not {text!r}")
    check_endpoint(text)
    if family is not None:
        raise ClientError(
            USAGE,
            f"-{family} goes with HOST:PORT, not the endpoint string {text!r} "
            "(which names its own: tcp:, tcp6:)",
        )
    return Target(None, None, text, False)


def with_source(
    target: Target, source: str | None, source_port: int | None = None
) -> Target:
    """C{target}, connected from the local address C{source} (C{--source})
    and the local port C{source_port} (C{--source-port}).

    The source's IP version is the connection's: a name is looked up to
    addresses of that version alone (as C{-4}/C{-6}), and an address of the
    other version is a usage error.
    """
    if source is None and source_port is None:
        return target
    if target.host is None:
        option = "--source" if source is not None else "--source-port"
        raise ClientError(
            USAGE, f"{option} goes with HOST:PORT, not the endpoint string "
            f"{target.endpoint!r}",
        )  # fmt: skip
    if source is None:
        return replace(target, source_port=source_port)
    try:
        version = source_family(source, target.family, "--source")
    except ValueError as e:
        raise ClientError(USAGE, str(e)) from None
    mismatch = family_mismatch(target.host, version)
    if mismatch is not None:
        raise ClientError(
            USAGE, f"--source {source} is an IPv{version} address, and "
            f"{target.host} is not",
        )  # fmt: skip
    return replace(target, family=version, source=source, source_port=source_port)


def of_family(target: Target, family: int | None) -> Target:
    """C{target} limited to IP version C{family}; a usage error when its host
    is an address of the other version."""
    assert target.host is not None
    mismatch = family_mismatch(target.host, family)
    if mismatch is not None:
        raise ClientError(USAGE, mismatch)
    return replace(target, family=family)


def local_address(target: Target) -> tuple[str, int] | None:
    """The local address and port to bind before connecting, or None (any).

    A port alone binds the wildcard address (C{""}), which either IP version
    takes, so that a name may still resolve to both.
    """
    if target.source is None and target.source_port is None:
        return None
    return (target.source or "", target.source_port or 0)


def make_endpoint(
    reactor: Any, target: Target, settings: ClientTLS, timeout: float | None
) -> IStreamClientEndpoint:
    """The endpoint for C{target}, TLS-wrapped when asked."""
    if target.endpoint is not None:
        if empty_unix_path(target.endpoint):
            raise ClientError(
                USAGE, f"bad endpoint {target.endpoint!r}: no socket path"
            )
        try:
            endpoint: IStreamClientEndpoint = clientFromString(
                reactor, abstract_unix(target.endpoint, server=False)
            )
        except Exception as e:
            text = target.endpoint
            if str(e).startswith("Unknown endpoint type") and "=" not in text:
                # Most likely HOST:PORT with a port that is not a number.
                raise ClientError(
                    USAGE, f"bad target {text!r}: {TARGET_FORMS}"
                ) from None
            detail = parse_error_message(e)
            raise ClientError(USAGE, f"bad endpoint {text!r}: {detail}") from None
        return endpoint
    assert target.host is not None and target.port is not None
    # An IPv6 literal needs no lookup; and HostnameEndpoint drops a link-local
    # address's zone (fe80::1%eth0), which then cannot be connected.
    bind = local_address(target)
    if is_ipv6(target.host):
        endpoint = TCP6ClientEndpoint(
            reactor, target.host, target.port, timeout or 30, bind
        )
    elif target.family is not None:
        flag = (
            f"-{target.family}"
            if target.source is None
            else f"--source {target.source}"
        )
        endpoint = OneFamilyEndpoint(
            reactor, target.host, target.port, timeout or 30, target.family, bind, flag
        )
    else:
        endpoint = HostnameEndpoint(
            reactor, target.host, target.port, timeout=timeout or 30, bindAddress=bind
        )
    if target.tls:
        try:
            creator = connection_creator(target.host, settings)
        except TLSClientError as e:
            raise ClientError(USAGE, str(e)) from None
        endpoint = wrapClientTLS(creator, endpoint)
    return endpoint


@implementer(IStreamClientEndpoint)
class OneFamilyEndpoint:
    """Twisted's C{HostnameEndpoint} over the addresses of one IP version
    (C{-4}, C{-6}); a name without any is "cannot resolve", saying which."""

    def __init__(
        self,
        reactor: Any,
        host: str,
        port: int,
        timeout: float,
        family: int,
        bind: tuple[str, int] | None = None,
        flag: str | None = None,
    ) -> None:
        self.family = family
        self.flag = flag or f"-{family}"
        """The option that asked for this IP version, for messages."""
        self.endpoint = HostnameEndpoint(
            ReactorOfOneFamily(reactor, family),
            host,
            port,
            timeout=timeout,
            bindAddress=bind,
        )

    def connect(self, protocolFactory: Any) -> defer.Deferred[Any]:
        """Connect to the first address of the family that answers."""

        def no_address(failure: Failure) -> None:
            failure.trap(error.DNSLookupError)
            raise ClientError(
                DNS,
                f"cannot resolve the name to an IPv{self.family} address ({self.flag})",
            )

        d: defer.Deferred[Any] = self.endpoint.connect(protocolFactory)
        return d.addErrback(no_address)


def is_same_address(address: str, host: str) -> bool:
    """Whether C{host} is the address C{address} (zones aside), not a name."""
    try:
        return ipaddress.ip_address(address.partition("%")[0]) == ipaddress.ip_address(
            host.partition("%")[0]
        )
    except ValueError:
        return False


def reached(target: Target, session: Session) -> str:
    """How to name the peer once connected: the target, and when it was a
    name, the address that answered, as ping shows C{localhost (127.0.0.1)}.

    A name may have several addresses, of both IP versions (C{-4}, C{-6});
    this says which one the echo came from.
    """
    label = target.label()
    if target.host is None or session.transport is None:
        return label
    address = getattr(session.transport.getPeer(), "host", None)
    if not isinstance(address, str) or is_same_address(address, target.host):
        return label
    return f"{label} ({address})"


@implementer(IHandshakeListener)
class Session(Protocol):
    """The connection to the peer, shared by the modes."""

    closed_note = "connection closed by the peer"
    """What the prompt says when the session ends cleanly."""

    def __init__(self) -> None:
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.secured: defer.Deferred[None] = defer.Deferred()
        """Fires when a TLS handshake has completed (never without TLS)."""
        self.reason: Failure | None = None
        self.on_data: Any = None

    def handshakeCompleted(self) -> None:
        """TLS is up: the server's certificate was verified."""
        self.secured.callback(None)

    def on_close(self, handler: Any) -> None:
        """Call C{handler(reason)} when the connection ends."""
        self.closed.addCallback(lambda _: handler(self.reason))

    def dataReceived(self, data: bytes) -> None:
        """Hand the bytes to the mode's handler."""
        if self.on_data is not None:
            self.on_data(data)

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        """Tell the mode how the connection ended."""
        self.reason = reason
        self.closed.callback(None)

    def half_close(self) -> bool:
        """Shut our write side if the transport can; False if it cannot (TLS)."""
        if not can_half_close(self.transport):
            return False
        self.transport.loseWriteConnection()  # type: ignore[union-attr]
        return True


def ended(reason: Failure) -> int:
    """Exit code for how the peer ended the connection."""
    if reason.check(error.ConnectionDone):
        return OK
    return classify(reason).code


def connected_line(target: Target, session: Session, udp: bool = False) -> str:
    """What C{-v} says once connected (as nc -v): the peer, the address that
    answered when the target was a name, and our own address."""
    line = f"{'sending to' if udp else 'connected to'} {reached(target, session)}"
    local = session.transport.getHost() if session.transport is not None else None
    if getattr(local, "host", None) is not None:
        line += f" from {host_port(local.host, local.port)}"  # type: ignore[union-attr]
    return line


def when_usable(session: Session, tls: bool) -> defer.Deferred[None]:
    """Fires when the session can carry bytes: at once over TCP, after the
    handshake over TLS; fails with how the connection ended if it ends first."""
    if not tls:
        return defer.succeed(None)
    usable: defer.Deferred[None] = defer.Deferred()

    def secured(_: object) -> None:
        if not usable.called:
            usable.callback(None)

    def lost(reason: Failure | None) -> None:
        if not usable.called:
            if reason is None or reason.check(error.ConnectionDone):
                reason = Failure(
                    ClientError(TLS, "TLS failure: closed during the handshake")
                )
            usable.errback(reason)

    session.secured.addCallback(secured)
    session.on_close(lost)
    return usable


ZERO_IO_HANDSHAKE_TIMEOUT = 10.0
"""Seconds C{-z} waits for a TLS handshake without C{--timeout}."""


def run_zero(
    session: Session, target: Target, timeout: float | None, reactor: Any
) -> defer.Deferred[int]:
    """C{-z}, as nc's: prove the connection (and the TLS handshake, within
    C{timeout} seconds), send nothing, close cleanly; 0, or the code of how it
    failed.

    Over TLS the close waits (as long again at most) for the server's answer
    to our close_notify: under TLS 1.3 a server judges the client's
    certificate after the client has finished its handshake, so a refusal
    (no client certificate, or one it does not trust) arrives as an alert
    only then.
    """
    done: defer.Deferred[int] = defer.Deferred()

    def close(_: object) -> None:
        def closed(reason: Failure | None) -> None:
            if waiting.active():
                waiting.cancel()
            if reason is not None and reason.check(SSLError):
                failed(reason)  # the server's alert: refused after all
            elif not done.called:
                done.callback(OK)

        waiting = reactor.callLater(
            timeout or ZERO_IO_HANDSHAKE_TIMEOUT,
            session.transport.abortConnection,  # type: ignore[union-attr]
        )
        session.on_close(closed)
        session.transport.loseConnection()  # type: ignore[union-attr]

    def failed(failure: Failure) -> None:
        if done.called:
            return
        error = classify(failure)
        sys.stderr.write(f"echod client: {target.label()}: {error}\n")
        done.callback(error.code)

    usable = when_usable(session, target.tls)
    if target.tls:
        usable.addTimeout(timeout or ZERO_IO_HANDSHAKE_TIMEOUT, reactor)
    usable.addCallbacks(close, failed)
    done.addCallback(lambda code: code if code == OK else abort(session, code))
    return done


def abort(session: Session, code: int) -> int:
    """Drop the connection at once (a handshake that never ended); C{code}."""
    if session.transport is not None:
        session.transport.abortConnection()  # type: ignore[attr-defined]
    return code


# Pipe mode: stdin -> peer, peer -> stdout, like nc -N.


@implementer(IHalfCloseableProtocol)
class StdinToPeer(Protocol):
    """Standard input and output, wired to the session with backpressure."""

    def __init__(self, session: Session, idle: float | None, reactor: Any) -> None:
        self.session = session
        self.idle = idle
        self.reactor = reactor
        self.last = time.monotonic()
        self.timed_out = False
        self.stdout_full = False
        """stdout's queue is full, so the peer's bytes are not being read."""
        self.stdout_open = True
        self.flushed: defer.Deferred[None] = defer.Deferred()
        """Fires once standard output has taken every byte (or is gone)."""

    def connectionMade(self) -> None:
        """Wire the two streams: each side's producer pauses the other's reads."""
        assert self.transport is not None and self.session.transport is not None
        self.session.transport.registerProducer(self.transport, True)  # type: ignore[attr-defined]
        self.transport.registerProducer(PeerReads(self), True)  # type: ignore[attr-defined]
        self.session.on_data = self.to_stdout

    def to_stdout(self, data: bytes) -> None:
        """Bytes from the peer, to stdout."""
        self.last = time.monotonic()
        assert self.transport is not None
        self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        """Bytes from stdin, to the peer."""
        self.last = time.monotonic()
        assert self.session.transport is not None
        self.session.transport.write(data)

    def readConnectionLost(self) -> None:
        """End of stdin: half-close, and keep printing what still comes."""
        assert self.session.transport is not None
        self.session.transport.unregisterProducer()  # type: ignore[attr-defined]
        if not self.session.half_close():
            # TLS in Twisted cannot half-close: wait until the peer is quiet.
            self.wait_quiet(self.idle or 1.0)

    def wait_quiet(self, seconds: float) -> None:
        """Close once nothing has come for C{seconds}."""
        quiet = time.monotonic() - self.last
        if quiet >= seconds:
            assert self.session.transport is not None
            self.session.transport.loseConnection()
        else:
            self.reactor.callLater(seconds - quiet, self.wait_quiet, seconds)

    def writeConnectionLost(self) -> None:
        """stdout closed: nothing more can be flushed; the peer's end decides."""
        self.stdout_open = False

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        """Standard input and output are closed, every byte written out."""
        if not self.flushed.called:
            self.flushed.callback(None)

    def close_stdio(self) -> defer.Deferred[None]:
        """Close standard input and output once all queued output is written.

        The end must wait for it: the peer's last bytes can still be queued
        for a slow reader of our stdout when the peer closes.
        """
        assert self.transport is not None
        self.transport.loseConnection()
        if not self.stdout_open:  # nothing to flush, and no one to tell us
            self.connectionLost()
        return self.flushed


@implementer(IPushProducer)
class PeerReads:
    """The peer's transport as the producer of stdout's bytes, noting when
    stdout pauses it: a pipe mode stalled on stdout is not an idle peer."""

    def __init__(self, bridge: StdinToPeer) -> None:
        self.bridge = bridge
        self.transport: Any = bridge.session.transport

    def pauseProducing(self) -> None:
        """stdout is full: stop reading the peer."""
        self.bridge.stdout_full = True
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        """stdout has room again."""
        self.bridge.stdout_full = False
        self.bridge.last = time.monotonic()
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        """stdout is gone."""
        self.transport.stopProducing()


def run_pipe(
    reactor: Any,
    session: Session,
    idle: float | None,
    bridge_type: type[StdinToPeer] = StdinToPeer,
) -> defer.Deferred[int]:
    """Pipe mode until the peer closes; the result is the exit code."""
    bridge = bridge_type(session, idle, reactor)
    stdio.StandardIO(bridge, reactor=reactor)  # the bridge is its protocol
    done: defer.Deferred[int] = defer.Deferred()

    def finished(reason: Failure) -> None:
        if bridge.timed_out:
            code = TIMEOUT
            if bridge.stdout_full:  # the stall was ours: stdout took nothing
                sys.stderr.write(
                    f"echod client: timed out writing to stdout ({idle:g}s)\n"
                )
            else:
                sys.stderr.write(f"echod client: timed out: nothing for {idle:g}s\n")
        else:
            code = ended(reason)
            if code:
                sys.stderr.write(f"echod client: {classify(reason)}\n")
        flushed = bridge.close_stdio()
        if idle:  # as nc -w: a reader of stdout that takes nothing does not hold us
            flushed.addTimeout(idle, reactor)
        flushed.addCallbacks(lambda _: done.callback(code), stdout_stuck)

    def stdout_stuck(failure: Failure) -> None:
        failure.trap(defer.TimeoutError)
        if not bridge.timed_out:  # else that was said already
            sys.stderr.write(f"echod client: timed out writing to stdout ({idle:g}s)\n")
        done.callback(TIMEOUT)

    session.on_close(finished)
    if idle:
        watch_idle(reactor, session, bridge, idle)
    return done


def watch_idle(
    reactor: Any, session: Session, bridge: StdinToPeer, idle: float
) -> None:
    """Abort, marking the bridge timed out, if nothing moves for C{idle} seconds."""

    def check() -> None:
        if session.closed.called:
            return
        if time.monotonic() - bridge.last >= idle:
            bridge.timed_out = True
            assert session.transport is not None
            session.transport.abortConnection()  # type: ignore[attr-defined]
            return
        reactor.callLater(min(idle / 4, 1.0), check)

    reactor.callLater(min(idle / 4, 1.0), check)


# Probe mode: N messages, each echo checked, like ping.


class Probe:
    """Sends numbered messages one at a time and checks each echo."""

    def __init__(
        self,
        reactor: Any,
        session: Session,
        label: str,
        count: int,
        size: int,
        interval: float,
        timeout: float,
        peer: str | None = None,
    ) -> None:
        self.reactor = reactor
        self.session = session
        self.label = label
        self.peer = peer or label
        """How each echo's line names where it came from (L{reached})."""
        self.count = count
        self.size = size
        self.interval = interval
        self.timeout = timeout
        self.done: defer.Deferred[int] = defer.Deferred()
        self.received = bytearray()
        self.times: list[float] = []
        self.seq = 0
        self.sent_at = 0.0
        self.expect = b""
        self.lost = 0
        self.wrong = 0
        self.timer: Any = None

    def start(self) -> defer.Deferred[int]:
        """Begin; the result is the exit code."""
        self.session.on_data = self.on_data
        self.session.on_close(self.closed)
        self.send_next()
        return self.done

    def payload(self, seq: int) -> bytes:
        """The message for C{seq}: its number, repeated to C{size} bytes."""
        head = f"echod-probe {seq} ".encode()
        return (head * (self.size // len(head) + 1))[: self.size]

    def send_next(self) -> None:
        """Send the next message, or finish."""
        if self.seq >= self.count:
            self.finish()
            return
        self.seq += 1
        self.expect = self.payload(self.seq)
        self.received.clear()
        self.sent_at = time.perf_counter()
        assert self.session.transport is not None
        self.session.transport.write(self.expect)
        self.timer = self.reactor.callLater(self.timeout, self.no_echo)

    def no_echo(self) -> None:
        """No full echo in time: the stream is out of step; stop here."""
        self.lost += 1
        print(f"seq={self.seq}: no echo within {self.timeout:g}s", flush=True)
        self.finish()

    def on_data(self, data: bytes) -> None:
        """Collect the echo; when it is whole, check it and time it."""
        self.received.extend(data)
        if len(self.received) < len(self.expect):
            return
        echo = bytes(self.received)
        self.received.clear()
        self.judge(echo)

    def judge(self, echo: bytes) -> None:
        """The whole echo of the current message: time it, check it, go on."""
        rtt = (time.perf_counter() - self.sent_at) * 1000
        self.cancel_timer()
        if echo == self.expect:
            self.times.append(rtt)
            print(
                f"{self.size} bytes from {self.peer}: seq={self.seq} time={rtt:.3f} ms",
                flush=True,
            )
        else:
            self.wrong += 1
            print(f"seq={self.seq}: the echo differs from what was sent", flush=True)
        self.reactor.callLater(self.interval, self.send_next)

    def cancel_timer(self) -> None:
        """Stop waiting for the current echo."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()

    def finish(self) -> None:
        """Print the summary and close."""
        if self.done.called:
            return
        ok = len(self.times)
        failed = 100.0 * (self.seq - ok) / self.seq if self.seq else 0.0
        print(f"--- {self.label} echo probe ---")
        print(
            f"{self.seq} sent, {ok} echoed intact, {self.wrong} wrong, "
            f"{self.lost} lost, {failed:.0f}% failed"
        )
        if self.times:
            t = self.times
            print(
                f"rtt min/avg/max/mdev = {min(t):.3f}/{statistics.mean(t):.3f}/"
                f"{max(t):.3f}/{statistics.pstdev(t):.3f} ms"
            )
        self.done.callback(OK if ok == self.count else PROBE_FAILED)
        if self.session.transport is not None:
            self.session.transport.loseConnection()

    def closed(self, reason: Failure) -> None:
        """The connection ended before the probe did."""
        if self.done.called:
            return
        self.cancel_timer()
        if not reason.check(error.ConnectionDone):
            e = classify(reason)
            sys.stderr.write(f"echod client: {self.label}: {e}\n")
            self.done.callback(e.code)
            return
        sys.stderr.write(f"echod client: {self.label}: the peer closed\n")
        self.lost += 1
        self.finish()


# Interactive mode: readline in the main thread, the reactor in another.


class Terminal:
    """Prints replies above the line being typed, then redraws it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending = b""
        self.flush_call: Any = None
        try:
            import readline
        except ImportError:  # pragma: no cover - readline is on every Linux
            self.readline: Any = None
        else:
            self.readline = readline

    def show(self, text: str) -> None:
        """Print C{text} (whole lines) above the prompt and the typed line."""
        with self.lock:
            typed = self.readline.get_line_buffer() if self.readline else ""
            sys.stdout.write("\r\x1b[K" + text + PROMPT + typed)
            sys.stdout.flush()

    def reply(self, data: bytes, reactor: Any) -> None:
        """Bytes from the peer: print whole lines now, a partial line soon."""
        self.pending += data
        if b"\n" in self.pending:
            lines, _, self.pending = self.pending.rpartition(b"\n")
            self.show(lines.decode("utf-8", "replace") + "\n")
        if self.flush_call is not None and self.flush_call.active():
            self.flush_call.cancel()
        if self.pending:
            self.flush_call = reactor.callLater(0.3, self.flush)

    def flush(self) -> None:
        """A partial line that stayed partial: print it as it is."""
        if self.pending:
            text, self.pending = self.pending.decode("utf-8", "replace"), b""
            self.show(text + "\n")


def run_interactive(reactor: Any, session: Session, label: str) -> int:
    """The prompt loop, in this thread; the reactor runs in another."""
    terminal = Terminal()
    session.on_data = lambda data: terminal.reply(data, reactor)
    outcome: list[int] = []
    at_prompt = threading.Event()

    def closed(reason: Failure) -> None:
        terminal.flush()
        code = ended(reason)
        note = session.closed_note if code == OK else str(classify(reason))
        terminal.show(f"({note})\n")
        outcome.append(code)
        if at_prompt.is_set():
            # Wake the prompt: a real SIGINT interrupts readline's blocking read.
            os.kill(os.getpid(), signal.SIGINT)

    def wait_for_end(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not outcome and time.monotonic() < deadline:
            time.sleep(0.02)

    session.on_close(closed)
    sys.stdout.write(f"connected to {label}; 'exit' or Ctrl-D quits\n")
    try:
        while not outcome:
            at_prompt.set()
            try:
                line = input(PROMPT)
            except EOFError:
                at_prompt.clear()
                sys.stdout.write("\n")
                reactor.callFromThread(half_close_or_close, session)
                wait_for_end(5)
                break
            finally:
                at_prompt.clear()
            if outcome or line == "exit":
                break
            reactor.callFromThread(send_line, session, line)
        if not outcome:
            reactor.callFromThread(close_session, session)
            wait_for_end(2)
    except KeyboardInterrupt:
        if not outcome:  # Ctrl-C from the user, not our wake-up call
            sys.stdout.write("\n")
            reactor.callFromThread(close_session, session)
            wait_for_end(2)
    return outcome[0] if outcome else OK


def send_line(session: Session, line: str) -> None:
    """One typed line, with its newline, to the peer."""
    if session.transport is not None:
        session.transport.write(line.encode() + b"\n")


def half_close_or_close(session: Session) -> None:
    """Ctrl-D: half-close (or, over TLS, close after a moment)."""
    if session.transport is None:
        return
    if not session.half_close():
        session.transport.loseConnection()


def close_session(session: Session) -> None:
    """Close the connection."""
    if session.transport is not None:
        session.transport.loseConnection()


# The command.


def add_target_arguments(p: argparse.ArgumentParser, nc_letters: bool = False) -> None:
    """The target and its TLS options, shared by ``echod client`` and ``bench``.

    C{nc_letters}: C{--source} is also nc's C{-s} (``bench`` has C{-s} for
    its size).
    """
    p.add_argument(
        "target",
        nargs="?",
        default=DEFAULT_TARGET,
        help="HOST:PORT, tls:HOST:PORT, or a Twisted client endpoint "
        f"(default {DEFAULT_TARGET})",
    )
    p.add_argument(
        "port",
        nargs="?",
        help="the port, when TARGET is a host alone: HOST PORT, as nc takes them",
    )
    add_family_options(p, long=False)
    p.add_argument(
        *(["-s"] if nc_letters else []),
        "--source",
        metavar="ADDRESS",
        help="connect from this local address (as nc -s); its IP version is "
        "the connection's",
    )
    p.add_argument(
        "-p",
        "--source-port",
        metavar="PORT",
        type=port_number,
        help="connect from this local port (as nc -p)",
    )
    p.add_argument("--tls", action="store_true", help="connect with TLS (verified)")
    p.add_argument(
        "--cacert", type=Path, help="trust this CA file instead of the system's"
    )
    p.add_argument("--cert", type=Path, help="client certificate (mutual TLS)")
    p.add_argument("--key", type=Path, help="client key (mutual TLS)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate (warns)",
    )


def joined_target(target: str, port: str | None) -> str:
    """nc's C{HOST PORT} as one target: C{HOST:PORT}, C{[IPv6]:PORT}.

    C{target} keeps a C{udp:} or C{tls:} in front; a target that already has
    its port, or is an endpoint string, is refused (L{ClientError}, usage).
    """
    if port is None:
        return target
    if not (port.isdigit() and is_port(int(port))):
        raise ClientError(USAGE, f"bad port {port!r}: a port is a number, 1 to 65535")
    host, prefix = target, ""
    for kind in ("udp:", "tls:"):
        if host.startswith(kind):
            host, prefix = host[len(kind) :], prefix + kind
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if is_ipv6(host.partition("%")[0]):
        return f"{prefix}[{host}]:{port}"
    if not host or ":" in host or "=" in host:
        raise ClientError(
            USAGE,
            f"{target!r} and the port {port}: give HOST PORT, or HOST:PORT "
            "alone (an endpoint string names its own port)",
        )
    return f"{prefix}{host}:{port}"


def parse_target_arguments(
    parser: argparse.ArgumentParser, argv: Sequence[str]
) -> argparse.Namespace | int:
    """The options of a parser with L{add_target_arguments}, C{HOST PORT}
    joined into C{args.target}; or the exit code once the reason is out."""
    args = parse_arguments(parser, argv)
    if isinstance(args, int):
        return args
    try:
        args.target = joined_target(args.target, args.port)
    except ClientError as e:
        sys.stderr.write(f"{parser.prog}: error: {e}\n")
        return e.code
    return args


def tls_options_given(args: argparse.Namespace) -> list[str]:
    """The TLS options of L{add_target_arguments} that C{args} gives."""
    options = [
        ("--cacert", args.cacert),
        ("--cert", args.cert),
        ("--key", args.key),
        ("--insecure", args.insecure),
    ]
    return [option for option, value in options if value]


def check_tls_options_apply(args: argparse.Namespace, target: Target) -> None:
    """Refuse TLS options for a target without TLS: they would be ignored,
    and the connection would be in the clear where TLS was asked for."""
    given = tls_options_given(args)
    if given and not target.tls:
        raise ClientError(
            USAGE,
            f"{options_apply(given)} to TLS targets: add --tls, or write tls:HOST:PORT",
        )


def target_endpoint(
    args: argparse.Namespace, reactor: Any, prog: str
) -> tuple[Target, IStreamClientEndpoint] | int:
    """The target of L{add_target_arguments} and its endpoint.

    Or the exit code, once the reason is written to stderr in one line.
    """
    settings = ClientTLS(args.cacert, args.cert, args.key, args.insecure)
    try:
        target = parse_target(args.target, args.tls, args.family)
        target = with_source(target, args.source, args.source_port)
        check_tls_options_apply(args, target)
        return target, make_endpoint(reactor, target, settings, args.timeout)
    except ClientError as e:
        sys.stderr.write(f"{prog}: error: {e}\n")
        return e.code


def is_udp(args: argparse.Namespace) -> bool:
    """Whether ``echod client`` is to speak UDP: C{--udp}, or C{udp:HOST:PORT}."""
    return bool(args.udp) or args.target.startswith("udp:")


def udp_target(args: argparse.Namespace) -> Target:
    """The target of ``echod client --udp`` (or ``udp:HOST:PORT``): no TLS."""
    tls = args.tls or args.target.startswith("udp:tls:")
    given = ["--tls"] * bool(tls) + tls_options_given(args)
    if given:
        raise ClientError(
            USAGE, f"{', '.join(given)}: no TLS over UDP (echod has no DTLS)"
        )
    text = args.target.removeprefix("udp:")
    target = with_source(
        parse_target(text, False, args.family), args.source, args.source_port
    )
    if target.endpoint is not None:
        raise ClientError(
            USAGE, f"bad UDP target {text!r}: expected HOST:PORT or [IPv6]:PORT"
        )
    return target


def parser() -> argparse.ArgumentParser:
    """The options of ``echod client``."""
    p = argparse.ArgumentParser(
        prog="echod client",
        description="Talk to a TCP, TLS or UDP service: a prompt on a terminal, a "
        "pipe otherwise (like nc -N), or an echo probe with --count.",
    )
    add_target_arguments(p, nc_letters=True)
    p.add_argument(
        "-u",
        "--udp",
        action="store_true",
        help="UDP (also udp:HOST:PORT): each line, or each probe message, one datagram",
    )
    p.add_argument(
        "-w",
        "--timeout",
        type=float,
        default=None,
        help="seconds for connecting, and for an idle peer or stdout (pipe mode; "
        "as nc -w)",
    )
    p.add_argument(
        "-z",
        "--zero-io",
        action="store_true",
        help="connect (and finish the TLS handshake), send nothing, close: "
        "exit 0 if the port answers (as nc -z)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="say on stderr where the connection went, and from where (as nc -v)",
    )
    p.add_argument("--count", type=int, help="probe: send this many messages")
    p.add_argument("--size", type=int, default=64, help="probe: bytes per message")
    p.add_argument(
        "--interval", type=float, default=0.0, help="probe: seconds between messages"
    )
    return p


MAX_PROBE_SIZE = 64 << 20
"""The largest probe message (64 MiB): it is built, and checked, in memory."""


def check_numbers(args: argparse.Namespace) -> str | None:
    """Why the numbers in C{args} cannot be used, or None."""
    if args.count is not None and (args.count < 1 or args.size < 1):
        return "--count and --size must be at least 1"
    if args.size > MAX_PROBE_SIZE:
        return f"--size {args.size}: at most {MAX_PROBE_SIZE} bytes (64 MiB)"
    if args.size > MAX_UDP_PAYLOAD and is_udp(args):
        return (
            f"--size {args.size}: a UDP datagram holds at most {MAX_UDP_PAYLOAD} bytes"
        )
    if args.timeout is not None and not 0 < args.timeout < math.inf:
        return "--timeout must be a number of seconds more than 0"
    if not 0 <= args.interval < math.inf:
        return "--interval must be a number of seconds, 0 or more"
    if args.zero_io and is_udp(args):
        return (
            "-z proves a connection, and UDP has none: probe a UDP echo with "
            "--udp --count 1"
        )
    if args.zero_io and args.count is not None:
        return "-z sends nothing, and --count sends messages: give one"
    return None


def main(argv: Sequence[str]) -> int:
    """Run ``echod client``; the result is the exit code."""
    args = parse_target_arguments(parser(), argv)
    if isinstance(args, int):
        return args
    complaint = check_numbers(args)
    if complaint is not None:
        sys.stderr.write(f"echod client: error: {complaint}\n")
        return USAGE
    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor
    udp = is_udp(args)
    connect: Callable[[], defer.Deferred[Any]]
    if udp:
        from echod import udpclient  # it builds on this module

        try:
            target = udp_target(args)
        except ClientError as e:
            sys.stderr.write(f"echod client: error: {e}\n")
            return e.code
        host, port, family = target.host, target.port, target.family
        assert host is not None and port is not None

        def connect() -> defer.Deferred[Any]:
            return defer.ensureDeferred(
                udpclient.connect_udp(
                    reactor, host, port, family, target.source, target.source_port
                )
            )

    else:
        resolved = target_endpoint(args, reactor, "echod client")
        if isinstance(resolved, int):
            return resolved
        target, endpoint = resolved

        def connect() -> defer.Deferred[Any]:
            return endpoint.connect(Factory.forProtocol(Session))

    interactive = args.count is None and not args.zero_io and sys.stdin.isatty()
    result: list[int] = []
    connected = threading.Event()
    session_box: list[Session] = []

    def go() -> defer.Deferred[Any]:
        d = connect()
        if args.timeout:
            d.addTimeout(args.timeout, reactor)
        d.addCallback(started)
        d.addErrback(failed)
        return d

    def started(session: Any) -> Any:
        session_box.append(session)
        if args.verbose:
            line = connected_line(target, session, udp)
            if target.tls and not udp:
                when_usable(session, True).addCallbacks(
                    lambda _: sys.stderr.write(f"echod client: {line}, TLS verified\n"),
                    lambda _: None,  # the mode reports the failure
                )
            else:
                sys.stderr.write(f"echod client: {line}\n")
        if args.zero_io:
            d = run_zero(session, target, args.timeout, reactor)
        elif args.count is not None:
            d = (udpclient.DatagramProbe if udp else Probe)(
                reactor,
                session,
                target.label(),
                args.count,
                args.size,
                args.interval,
                args.timeout or 5.0,
                reached(target, session),
            ).start()
        elif interactive:
            connected.set()
            return None
        else:
            bridge = udpclient.LinesToPeer if udp else StdinToPeer
            d = run_pipe(reactor, session, args.timeout, bridge)
        d.addCallback(result.append)
        d.addBoth(lambda _: reactor.stop())
        return None

    def failed(failure: Failure) -> None:
        e = classify(failure)
        sys.stderr.write(f"echod client: {target.label()}: {e}\n")
        result.append(e.code)
        connected.set()
        reactor.stop()

    reactor.callWhenRunning(go)
    if interactive:
        thread = threading.Thread(
            target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True
        )
        thread.start()
        connected.wait()
        if result:
            thread.join(5)
            return result[0]
        code = run_interactive(reactor, session_box[0], reached(target, session_box[0]))
        reactor.callFromThread(reactor.stop)
        thread.join(5)
        return code
    reactor.run()
    return result[0] if result else OK
