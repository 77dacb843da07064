"""The client's connection to its peer, shared by every mode of
``echod client``, and how its end and its peer are told."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, error
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.clienterrors import OK, TLS, ClientError, classify
from echod.echo import can_half_close
from echod.hostnames import host_port
from echod.target import Target, is_same_address


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


def reached(target: Target, session: Session) -> str:
    """How to name the peer once connected: the target, and when it was a
    name, the address that answered, as ping shows C{localhost (127.0.0.1)}.

    A name may have several addresses, of both IP versions (C{-4}, C{-6});
    this says which one the echo came from.
    """
    label = target.label()
    if target.proxy is not None:  # the address that answered is the proxy's
        return f"{label} (via {target.proxy.label()})"
    if target.host is None or session.transport is None:
        return label
    address = getattr(session.transport.getPeer(), "host", None)
    if not isinstance(address, str) or is_same_address(address, target.host):
        return label
    return f"{label} ({address})"


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


def abort(session: Session, code: int) -> int:
    """Drop the connection at once (a handshake that never ended); C{code}."""
    if session.transport is not None:
        session.transport.abortConnection()  # type: ignore[attr-defined]
    return code
