"""Write-through: send an echo at once when nothing is queued.

A Twisted transport queues every C{write} and sends it on the next reactor
turn, switching EPOLLOUT on and off around it: for a ping-pong echo that is an
extra epoll_ctl pair and a reactor turn per message. asyncio instead tries the
send at once and queues only what the kernel did not take.
L{WriteThroughEchoProtocol} gives echod that behaviour on plain TCP and UNIX
socket transports:

- nothing queued: C{socket.send} now. What the kernel did not take becomes
  the transport's queue as it is (the bytes object and an offset into it,
  no copy), and Twisted's own C{doWrite} sends it when the socket is
  writable, pausing us first if it is over the transport's C{bufferSize};
  on an error the bytes are queued through C{transport.write}, and Twisted
  reports the error as usual;
- something queued: C{transport.write}, so bytes never overtake each other.

It also reads and writes 256 KiB at a time instead of Twisted's 64 KiB
(C{bufferSize} is both the read size and the queue bound), which halves the
system calls of a bulk stream; the memory bound per connection is then about
512 KiB instead of 128 KiB.

It uses Twisted internals (C{dataBuffer}, C{offset}, C{_tempDataLen},
C{_maybePauseProducer}), so it is used only with C{tcp.Connection}
transports that send with Twisted's own C{writeSomeData} and only on the
Twisted releases in L{echod.compat.TESTED_TWISTED}; anywhere else (TLS and
PROXY wrappers, UNIX transports that pass descriptors, another Twisted) the
protocol takes the public path of L{EchoProtocol}. Both paths run the same
tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import tcp

from echod.compat import running_twisted_tested
from echod.echo import EchoProtocol

BUFFER_SIZE = 256 * 1024
"""Read size and queue bound of a write-through transport."""


def direct_send(transport: Any) -> Callable[[bytes], int] | None:
    """The socket's C{send} if write-through is safe on C{transport}, else None."""
    if not isinstance(transport, tcp.Connection):
        return None
    if type(transport).writeSomeData is not tcp.Connection.writeSomeData:
        return None  # e.g. UNIX transports that pass file descriptors
    if getattr(transport, "TLS", False) or not running_twisted_tested():
        return None
    internals = ("dataBuffer", "offset", "_tempDataLen", "_maybePauseProducer")
    if not all(hasattr(transport, a) for a in internals):
        return None
    send: Callable[[bytes], int] = transport.socket.send
    return send


class WriteThroughEchoProtocol(EchoProtocol):
    """L{EchoProtocol} that sends at once when its transport's queue is empty."""

    _send: Callable[[bytes], int] | None = None

    def connectionMade(self) -> None:
        """Find out whether this transport allows write-through."""
        transport: Any = self.transport
        send = direct_send(transport)
        if send is not None:
            self._send = send
            transport.bufferSize = BUFFER_SIZE
            # Twisted's empty queue is a class attribute until first used;
            # on the instance, the check below is a plain dictionary hit
            # instead of a generic lookup on every message.
            transport.dataBuffer = b""
        super().connectionMade()

    def finish(self) -> None:
        """Stop as L{EchoProtocol} does; what still arrives takes its path."""
        self._send = None
        super().finish()

    def dataReceived(self, data: bytes) -> None:
        """Echo C{data}: straight to the socket if nothing is queued."""
        send = self._send
        if send is None:  # no write-through, or finishing (see finish)
            return super().dataReceived(data)
        self.bytes_in += len(data)
        transport: Any = self.transport
        # Our protocol never writes after closing its side, so an empty queue
        # is the only condition; see the module docstring.
        if not transport.dataBuffer and not transport._tempDataLen:
            try:
                sent = send(data)
            except BlockingIOError:
                sent = 0
            except OSError:  # the ordinary path will report it
                transport.write(data)
                return
            if sent == len(data):
                return
            # The rest becomes the (empty) queue as it is: no copy.
            transport.dataBuffer = data
            transport.offset = sent
            transport._maybePauseProducer()
            transport.startWriting()
            return
        transport.write(data)
