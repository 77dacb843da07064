"""``echod client`` in a pipe, as ``nc -N``: stdin to the peer byte for byte,
the peer's bytes to stdout, both with backpressure; the end of stdin
half-closes; it ends when the peer closes."""

from __future__ import annotations

import sys
import time
from typing import Any

from twisted.internet import defer, error, stdio
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IPushProducer,
)
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.clienterrors import TIMEOUT, classify
from echod.lineendings import CRLFEndings
from echod.session import Session, ended


@implementer(IHalfCloseableProtocol)
class StdinToPeer(Protocol):
    """Standard input and output, wired to the session with backpressure."""

    def __init__(
        self,
        session: Session,
        idle: float | None,
        reactor: Any,
        endings: CRLFEndings | None = None,
    ) -> None:
        self.session = session
        self.endings = endings
        """C{-C}: the line endings to convert stdin's bytes with."""
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
        """Bytes from stdin, to the peer (with C{-C}, CR LF for each lone LF)."""
        if self.endings is not None:
            data = self.endings.convert(data)
        self.to_peer(data)

    def to_peer(self, data: bytes) -> None:
        """Bytes for the peer, as they are."""
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
    crlf: bool = False,
) -> defer.Deferred[int]:
    """Pipe mode until the peer closes; the result is the exit code.

    C{crlf} (C{-C}): each LF of stdin without a CR before it goes as CR LF.
    """
    bridge = bridge_type(session, idle, reactor, CRLFEndings() if crlf else None)
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
