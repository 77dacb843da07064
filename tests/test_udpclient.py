"""Unit tests of echod.udpclient: datagrams as a session, lines, the UDP probe."""

from __future__ import annotations

import errno
import socket

import pytest
from twisted.internet import error
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from echod.clienterrors import PROBE_FAILED, REFUSED, USAGE, ClientError
from echod.settings import MAX_UDP_PAYLOAD
from echod.udpclient import (
    DatagramProbe,
    DatagramSession,
    LinesToPeer,
    UDPSession,
)


class FakeSocket:
    """The socket of a L{FakePort}: records datagrams, or fails as told."""

    def __init__(self, fail: OSError | None = None) -> None:
        self.sent: list[bytes] = []
        self.fail = fail
        self.error = 0  # SO_ERROR

    def send(self, data: bytes) -> int:
        if self.fail is not None:
            raise self.fail
        self.sent.append(data)
        return len(data)

    def getsockopt(self, level: int, option: int) -> int:
        assert (level, option) == (socket.SOL_SOCKET, socket.SO_ERROR)
        return self.error


class FakePort:
    """The UDP port under a L{DatagramSession}."""

    def __init__(self, fail: OSError | None = None) -> None:
        self.socket = FakeSocket(fail)
        self.sent = self.socket.sent
        self.listening = True
        self.reading = True

    def getHandle(self) -> FakeSocket:
        return self.socket

    def stopListening(self) -> None:
        self.listening = False

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True


def udp_session(port: FakePort) -> tuple[UDPSession, DatagramSession]:
    session = UDPSession()
    protocol = DatagramSession(session)
    protocol.makeConnection(port)  # type: ignore[arg-type]
    session.makeConnection(protocol.stream)  # type: ignore[arg-type]
    return session, protocol


def test_each_write_is_one_datagram_and_each_datagram_reaches_the_session() -> None:
    port = FakePort()
    session, protocol = udp_session(port)
    got: list[bytes] = []
    session.on_data = got.append
    session.transport.write(b"one")  # type: ignore[union-attr]
    session.transport.writeSequence([b"two", b"three"])  # type: ignore[union-attr]
    assert port.sent == [b"one", b"two", b"three"]
    protocol.datagramReceived(b"back", ("127.0.0.1", 7))
    assert got == [b"back"]
    assert not session.half_close()  # no half-close over UDP
    protocol.stream.pauseProducing()
    assert not port.reading
    protocol.stream.resumeProducing()
    assert port.reading
    session.transport.loseConnection()  # type: ignore[union-attr]
    assert not port.listening
    assert session.reason is not None and session.reason.check(error.ConnectionDone)


def refused_by_icmp(port: FakePort, protocol: DatagramSession) -> None:
    """What the reactor does on an ICMP port unreachable: EPOLLERR, and it
    drops the port, whose socket holds ECONNREFUSED."""
    port.socket.error = errno.ECONNREFUSED
    protocol.doStop()


def test_icmp_port_unreachable_ends_the_session_as_refused() -> None:
    port = FakePort()
    session, protocol = udp_session(port)
    refused_by_icmp(port, protocol)
    assert session.reason is not None
    assert session.reason.check(error.ConnectionRefusedError)
    assert port.listening  # the reactor is already closing it


def test_send_errors() -> None:
    too_large = OSError(errno.EMSGSIZE, "Message too long")
    session, _ = udp_session(FakePort(fail=too_large))
    session.transport.write(b"x")  # type: ignore[union-attr]
    assert session.reason is not None
    failure = session.reason.value
    assert isinstance(failure, ClientError) and failure.code == USAGE
    refused = OSError(errno.ECONNREFUSED, "Connection refused")
    session, _ = udp_session(FakePort(fail=refused))
    session.transport.write(b"x")  # type: ignore[union-attr]
    assert session.reason is not None
    assert session.reason.check(error.ConnectionRefusedError)
    for lost in (BlockingIOError(errno.EAGAIN, "full"), OSError(errno.ENOBUFS, "x")):
        session, _ = udp_session(FakePort(fail=lost))
        session.transport.write(b"x")  # type: ignore[union-attr]
        assert session.reason is None  # a datagram lost, as UDP may lose any


def test_lines_to_peer_sends_a_datagram_per_line() -> None:
    port = FakePort()
    session, _ = udp_session(port)
    clock = Clock()
    bridge = LinesToPeer(session, None, clock)
    for chunk in (b"hel", b"lo\nwor", b"ld\n\nla", b"st"):
        bridge.dataReceived(chunk)
    assert port.sent == [b"hello\n", b"world\n", b"\n"]
    bridge.dataReceived(b"y" * (MAX_UDP_PAYLOAD + 10))  # a line longer than a datagram
    assert port.sent[3:] == [b"last" + b"y" * (MAX_UDP_PAYLOAD - 4)]
    bridge.readConnectionLost()  # the end of stdin: the rest, without a newline
    assert port.sent[4:] == [b"y" * 14]
    assert port.listening  # it waits for the peer to be quiet, then closes
    assert len(clock.getDelayedCalls()) == 1


class ProbeRun:
    """A L{DatagramProbe} on a fake port and a clock."""

    def __init__(self, count: int) -> None:
        self.port = FakePort()
        self.session, self.protocol = udp_session(self.port)
        self.clock = Clock()
        self.probe = DatagramProbe(
            self.clock, self.session, "peer:7", count, 32, 0.0, 1.0
        )
        self.result: list[int] = []
        self.probe.start().addCallback(self.result.append)

    def echo(self, data: bytes) -> None:
        self.protocol.datagramReceived(data, ("127.0.0.1", 7))
        self.clock.advance(0)  # the next message goes after the interval


def test_probe_goes_on_past_a_loss_and_tells_late_from_wrong(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = ProbeRun(4)
    first = run.port.sent[0]
    run.echo(first)  # seq 1: intact
    run.clock.advance(1.0)  # seq 2: no echo in time
    late = run.port.sent[1]
    run.clock.advance(0)  # seq 3 goes out
    run.echo(late)  # seq 2's echo, late: not counted, seq 3 still awaited
    run.echo(first)  # seq 1's again, repeated: not counted
    run.echo(b"garbage")  # while seq 3 is awaited: its echo, wrong
    run.echo(b"stray")  # nothing awaited for a moment? seq 4 is: wrong too
    out = capsys.readouterr().out
    assert "seq=2: no echo within 1s" in out
    assert "seq=2: a late or repeated echo, not counted" in out
    assert "seq=1: a late or repeated echo, not counted" in out
    assert "seq=3: the echo differs from what was sent" in out
    assert "seq=4: the echo differs from what was sent" in out
    assert "4 sent, 1 echoed intact, 2 wrong, 1 lost, 75% failed" in out
    assert run.result == [PROBE_FAILED]


def test_probe_ends_on_icmp_port_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = ProbeRun(3)
    refused_by_icmp(run.port, run.protocol)
    assert run.result == [REFUSED]
    assert "peer:7: connection refused" in capsys.readouterr().err


def test_unexpected_reason_is_a_failure() -> None:
    session, protocol = udp_session(FakePort())
    protocol.stream.end(OSError("odd"))
    assert isinstance(session.reason, Failure)
