"""Unit tests of echod.writethrough: sending at once, never out of order."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from echod.compat import TESTED_TWISTED, running_twisted_tested, twisted_tested
from echod.echo import EchoFactory
from echod.settings import EchoSettings
from echod.stats import EchoStats
from echod.writethrough import WriteThroughEchoProtocol, direct_send


class QueueTransport(StringTransport):
    """A StringTransport with the queue internals write-through uses."""

    dataBuffer = b""
    offset = 0
    _tempDataLen = 0
    bufferSize = 65536
    writing = False

    def write(self, data: bytes) -> None:
        super().write(data)
        self._tempDataLen += len(data)

    def _maybePauseProducer(self) -> None:
        if len(self.dataBuffer) - self.offset + self._tempDataLen > self.bufferSize:
            self.pauseProducing()

    def startWriting(self) -> None:
        self.writing = True

    def queued(self) -> bytes:
        """Everything queued, in order."""
        queued: bytes = self.dataBuffer[self.offset :] + self.value()
        return queued


class Kernel:
    """A socket send that takes at most C{room} bytes, recording what it took."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.taken = b""

    def send(self, data: bytes) -> int:
        n = min(self.room, len(data))
        if n == 0:
            raise BlockingIOError
        self.taken += data[:n]
        self.room -= n
        return n


def make(room: int) -> tuple[WriteThroughEchoProtocol, QueueTransport, Kernel]:
    factory = EchoFactory(
        EchoSettings(), EchoStats(), MemoryReactorClock(), WriteThroughEchoProtocol
    )
    protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
    assert isinstance(protocol, WriteThroughEchoProtocol)
    transport = QueueTransport()
    protocol.makeConnection(transport)
    kernel = Kernel(room)
    protocol._send = kernel.send
    return protocol, transport, kernel


def test_sends_at_once_when_nothing_is_queued() -> None:
    protocol, transport, kernel = make(room=100)
    protocol.dataReceived(b"ping")
    assert kernel.taken == b"ping"
    assert transport.value() == b""
    assert protocol.bytes_in == 4


def test_what_the_kernel_did_not_take_is_queued_in_order() -> None:
    protocol, transport, kernel = make(room=3)
    data = b"abcdef"
    protocol.dataReceived(data)
    assert transport.dataBuffer is data and transport.offset == 3  # not copied
    assert transport.writing
    protocol.dataReceived(b"ghi")  # queued behind the rest, never sent first
    assert kernel.taken == b"abc"
    assert transport.queued() == b"defghi"


def test_a_full_kernel_buffer_queues_everything() -> None:
    protocol, transport, kernel = make(room=0)
    protocol.dataReceived(b"xyz")
    assert kernel.taken == b"" and transport.queued() == b"xyz"


def test_a_large_remainder_pauses_reading() -> None:
    protocol, transport, _ = make(room=10)
    protocol.dataReceived(b"q" * (transport.bufferSize + 11))
    assert transport.producerState == "paused"


def test_a_send_error_goes_to_the_ordinary_path() -> None:
    protocol, transport, _ = make(room=10)

    def broken(data: bytes) -> int:
        raise ConnectionResetError

    protocol._send = broken
    protocol.dataReceived(b"lost?")
    assert transport.value() == b"lost?"


def test_after_finish_input_takes_the_ordinary_path() -> None:
    """A stopping daemon discards late input there; it is never sent straight on."""
    protocol, _, kernel = make(room=100)
    protocol.finish()
    assert protocol._send is None
    protocol.dataReceived(b"late")
    assert kernel.taken == b""
    assert protocol.end_reason == "drain"


def test_transports_without_known_internals_take_the_public_path() -> None:
    assert direct_send(StringTransport()) is None
    factory = EchoFactory(
        EchoSettings(), EchoStats(), MemoryReactorClock(), WriteThroughEchoProtocol
    )
    protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"public")
    assert transport.value() == b"public"


def test_tested_twisted_range() -> None:
    low, high = TESTED_TWISTED
    assert twisted_tested(low) and twisted_tested(high)
    from twisted.python.versions import Version

    assert not twisted_tested(Version("Twisted", 99, 1, 0))
    assert not twisted_tested(Version("Twisted", 20, 3, 0))


def test_the_running_twisted_is_checked_once() -> None:
    """Asked per connection: the version check (a parse and two comparisons)
    was a tenth of the daemon's CPU per short connection."""
    assert running_twisted_tested() == twisted_tested()
    before = running_twisted_tested.cache_info()
    for _ in range(3):
        running_twisted_tested()
    after = running_twisted_tested.cache_info()
    assert after.misses == before.misses and after.currsize == 1
    assert after.hits == before.hits + 3


def test_direct_send_on_a_real_tcp_transport() -> None:
    """A real tcp.Server from a real reactor qualifies (on a tested Twisted)."""
    import socket

    from echod.reactor import LeanEPollReactor

    reactor: Any = LeanEPollReactor()
    seen: list[object] = []

    class Probe(WriteThroughEchoProtocol):
        def connectionMade(self) -> None:
            seen.append(direct_send(self.transport))

    factory = EchoFactory(EchoSettings(), EchoStats(), reactor, Probe)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    try:
        for _ in range(100):
            if seen:
                break
            reactor.iterate(0.01)
        assert seen and seen[0] is not None
    finally:
        client.close()
        port.stopListening()
        for _ in range(5):
            reactor.iterate(0.01)
