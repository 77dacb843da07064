"""``echod client --udp``: a UDP peer as a session of the client's modes.

UDP has no connection: a socket is *connected* to the peer's address, so
that only its datagrams come in and an ICMP error (port or host unreachable)
is left on the socket; L{DatagramTransport} gives it the few transport
methods the client's modes call. Each C{write} is one datagram; each
datagram received is handed to the session whole. There is no half-close
and no backpressure: the modes then wait for a quiet peer, as they do over
TLS.

echod connects and sends on the socket of a Twisted UDP port itself
(C{getHandle()}): Twisted's C{connect} takes (host, port) alone and so loses
a link-local address's zone (C{fe80::1%eth0}), which the socket address from
getaddrinfo keeps. An ICMP error makes epoll report EPOLLERR, on which the
reactor drops the port; L{DatagramSession.doStop} reads the error then
(SO_ERROR) and ends the session with it. A send that fails with it ends the
session the same way.

The probe (L{DatagramProbe}) goes on past a lost datagram, as ping does,
and tells a late echo from a wrong one by the sequence number it carries.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import DatagramProtocol
from twisted.python.failure import Failure

from echod.clienterrors import UNREACHABLE, USAGE, ClientError
from echod.pipe import StdinToPeer
from echod.probe import Probe
from echod.resolve import addresses_of, family_of, ip_version
from echod.session import Session
from echod.settings import MAX_UDP_PAYLOAD
from echod.tos import set_tos


class DatagramTransport:
    """One connected UDP socket, written and closed as a stream transport is."""

    def __init__(self, protocol: DatagramSession) -> None:
        self.protocol = protocol
        self.closed = False

    def write(self, data: bytes) -> None:
        """Send C{data} as one datagram."""
        if self.closed or not data:
            return
        port: Any = self.protocol.transport
        try:
            port.getHandle().send(data)
        except (BlockingIOError, InterruptedError):
            pass  # the send buffer is full: lost, as UDP may lose any datagram
        except OSError as e:
            if e.errno == errno.ENOBUFS:
                return  # the same, from the device's queue
            if e.errno == errno.EMSGSIZE:
                self.end(ClientError(USAGE, "a datagram too large to send"))
            else:
                self.end(error.getConnectError((e.errno, e.strerror)))

    def getPeer(self) -> IPv4Address | IPv6Address:
        """The address the socket is connected to."""
        port: Any = self.protocol.transport
        return self._address(port.getHandle().getpeername())

    def getHost(self) -> IPv4Address | IPv6Address:
        """The local address the socket is bound to."""
        port: Any = self.protocol.transport
        return self._address(port.getHandle().getsockname())

    @staticmethod
    def _address(name: tuple[Any, ...]) -> IPv4Address | IPv6Address:
        """A socket name as a Twisted address."""
        host, number = name[:2]
        kind = IPv6Address if ":" in host else IPv4Address
        return kind("UDP", host, number)

    def writeSequence(self, data: list[bytes]) -> None:
        """Send each item as its own datagram."""
        for item in data:
            self.write(item)

    def loseConnection(self) -> None:
        """Close the socket; the session ends cleanly."""
        self.end(None)

    abortConnection = loseConnection

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """No backpressure over UDP: a datagram the kernel cannot queue is lost."""

    def unregisterProducer(self) -> None:
        """See L{registerProducer}."""

    # IPushProducer: stdout full (pipe mode) stops reading datagrams, which
    # then wait in the socket's receive buffer, or are dropped past it.

    def pauseProducing(self) -> None:
        """Stop reading datagrams."""
        if not self.closed and self.protocol.transport is not None:
            self.protocol.transport.stopReading()  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        """Read datagrams again."""
        if not self.closed and self.protocol.transport is not None:
            self.protocol.transport.startReading()  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        """Nothing to release."""

    def end(self, why: BaseException | None, stop: bool = True) -> None:
        """Close the socket and tell the session why (None: a clean end)."""
        if self.closed:
            return
        self.closed = True
        port = self.protocol.transport
        if port is not None and stop:
            port.stopListening()  # type: ignore[attr-defined]
        reason = Failure(error.ConnectionDone()) if why is None else Failure(why)
        self.protocol.session.connectionLost(reason)


class DatagramSession(DatagramProtocol):
    """Hands each datagram from the peer to the session, whole."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.stream = DatagramTransport(self)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """A datagram from the peer (the connected socket takes no other)."""
        self.session.dataReceived(datagram)

    def doStop(self) -> None:
        """The socket is going away. Not by us: the reactor dropped it on an
        error that an ICMP message left there (EPOLLERR: port unreachable,
        host unreachable), which is read here."""
        if not self.stream.closed:
            port: Any = self.transport
            code = port.getHandle().getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            why = (
                error.getConnectError((code, os.strerror(code)))
                if code
                else error.ConnectionLost("the UDP socket was closed")
            )
            self.stream.end(why, stop=False)
        super().doStop()


class UDPSession(Session):
    """A L{Session} whose transport is a connected UDP socket."""

    closed_note = "closed"


async def connect_udp(
    reactor: Any,
    host: str,
    port: int,
    family: int | None = None,
    source: str | None = None,
    source_port: int | None = None,
    tos: int | None = None,
) -> UDPSession:
    """A session on a UDP socket connected to C{host}:C{port}.

    A name is looked up to its addresses of IP version C{family} (4 or 6)
    when that is given. The socket is bound to the local address C{source}
    and the local port C{source_port} when they are given, and its datagrams
    carry the TOS byte C{tos} (C{-T}) when that is.
    """
    address = host
    if ip_version(host) is None:
        version, flag = family_of(
            family if source is None else None, source, "--source"
        )
        found = await addresses_of(reactor, host, port, version, semantics="UDP",
                                   flag=flag)  # fmt: skip
        address = found[0]
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        peer = socket.getaddrinfo(
            address, port, family, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST
        )[0][4]
    except OSError as e:
        zone = address.partition("%")[2]
        why = f"no network interface {zone!r} (the address's zone)" if zone else e
        raise ClientError(UNREACHABLE, f"cannot reach {address}: {why}") from None
    session = UDPSession()
    protocol = DatagramSession(session)
    interface = source or ("::" if family == socket.AF_INET6 else "")
    try:
        udp = reactor.listenUDP(
            source_port or 0, protocol, interface=interface, maxPacketSize=65536
        )
    except error.CannotListenError as e:
        why = os.strerror(e.socketError.errno) if e.socketError.errno else str(e)
        raise ClientError(USAGE, f"cannot bind the source address: {why}") from None
    try:
        if tos is not None:
            set_tos(udp.getHandle(), tos)
        udp.getHandle().connect(peer)
    except OSError as e:
        udp.stopListening()
        raise error.getConnectError((e.errno, e.strerror)) from None
    session.makeConnection(protocol.stream)  # type: ignore[arg-type]
    return session


class DatagramProbe(Probe):
    """The probe over UDP: each message one datagram, a loss does not end it.

    A datagram that is not the echo awaited is told apart by the sequence
    number it carries: an earlier message's echo (late, after its timeout, or
    repeated) is shown and not counted; anything else while an echo is
    awaited is that echo, wrong.
    """

    waiting = False

    def send_next(self) -> None:
        """Send the next message (and await its echo), or finish."""
        self.waiting = self.seq < self.count
        super().send_next()

    def no_echo(self) -> None:
        """No echo in time: counted lost; go on with the next message."""
        self.waiting = False
        self.lost += 1
        print(f"seq={self.seq}: no echo within {self.timeout:g}s", flush=True)
        self.reactor.callLater(self.interval, self.send_next)

    def on_data(self, data: bytes) -> None:
        """One datagram: the echo awaited, an earlier one's, or a wrong one."""
        if self.done.called:
            return
        if self.waiting and data == self.expect:
            self.waiting = False
            self.judge(data)
            return
        seq = self.sequence_of(data)
        if seq is not None and seq <= self.seq:  # not the awaited: that is equal
            print(f"seq={seq}: a late or repeated echo, not counted", flush=True)
            return
        if self.waiting:
            self.waiting = False
            self.judge(data)
        else:
            print(f"a datagram of {len(data)} bytes that echoes no message", flush=True)

    def sequence_of(self, data: bytes) -> int | None:
        """The number of the probe message C{data} is, or None."""
        head = data.split(b" ", 2)
        if len(head) < 2 or head[0] != b"echod-probe" or not head[1].isdigit():
            return None
        seq = int(head[1])
        return seq if self.payload(seq) == data else None


class LinesToPeer(StdinToPeer):
    """Pipe mode over UDP: each line of stdin (with its newline) one datagram.

    A line longer than the largest datagram goes in pieces; the last line
    goes at the end of stdin even without a newline.
    """

    pending = b""

    def dataReceived(self, data: bytes) -> None:
        """Bytes from stdin: send the whole lines."""
        if self.endings is not None:
            data = self.endings.convert(data)
        self.pending += data
        lines = self.pending.split(b"\n")
        self.pending = lines.pop()
        for line in lines:
            self.send(line + b"\n")
        whole = len(self.pending) - len(self.pending) % MAX_UDP_PAYLOAD
        if whole:  # a line longer than a datagram: its full pieces go now
            self.send(self.pending[:whole])
            self.pending = self.pending[whole:]

    def send(self, datagram: bytes) -> None:
        """One datagram (or, past the size limit, several) to the peer."""
        for start in range(0, len(datagram), MAX_UDP_PAYLOAD):
            self.to_peer(datagram[start : start + MAX_UDP_PAYLOAD])

    def readConnectionLost(self) -> None:
        """End of stdin: send the last partial line, then wait for a quiet peer."""
        if self.pending:
            self.send(self.pending)
            self.pending = b""
        super().readConnectionLost()
