"""Short connections for C{echod bench --short}: connections a second, every
byte verified.

Each of C{connections} slots opens a connection, sends one message of
C{size} bytes (L{Pattern}, seeded per connection), half-closes (TLS, which
cannot, closes once the whole echo is back), reads the echo to the server's
EOF and closes; while the run lasts a new connection takes its place at once.
What a load balancer's or firewall's connection rate, and a health checker,
put on a server. Each connection is a latency sample, from the connect call
to the server's EOF: name lookup, TCP (and TLS) handshake, the echo and the
close.

A connection that is refused, times out, is reset or cut short is counted
by its reason and does not stop the run: under such load those are among
the figures. Only a failure to connect before any connection was made (the
target is down), or a TLS handshake that fails before any connection got
through (the certificate), fails the run as a whole, with that failure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from OpenSSL.SSL import Error as SSLError
from service_identity import VerificationError
from twisted.internet import defer, error
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.clienterrors import classify
from echod.echo import can_half_close
from echod.loadgen import (
    MAX_PIECE,
    CheckedConnection,
    LoadResult,
    RunRecord,
)

SHOWN_FAILURES = 5
"""How many kinds of failed connection are named, most frequent first."""


@implementer(IHandshakeListener)
class ShortConnectionProtocol(CheckedConnection):
    """One short connection: one message out, its echo checked, then closed."""

    run: ShortConnectionRun

    def __init__(self, run: ShortConnectionRun, index: int, began: float) -> None:
        super().__init__(run, index)
        self.began = began  # when it was asked for: the sample's start
        self.size = run.settings.size
        self.sent = False
        self.connected_at = 0.0
        self.handshaking = False

    def connectionMade(self) -> None:
        """Send at once, or once the TLS handshake is done."""
        self.connected_at = self.run.now()
        self.run.connected(self)
        if isinstance(self.transport, TLSMemoryBIOProtocol):
            self.handshaking = True
        else:
            self._send()

    def handshakeCompleted(self) -> None:
        """TLS is up: note how long it took, then send."""
        self.handshaking = False
        self.run.handshake_done(self.run.now() - self.connected_at)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        for offset in range(0, self.size, MAX_PIECE):
            length = min(MAX_PIECE, self.size - offset)
            self.transport.write(self.pattern.at(offset, length))
        self.sent = True
        if can_half_close(self.transport):
            self.transport.loseWriteConnection()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        """Check the echo byte for byte; over TLS, close once it is all back."""
        if not self.take_echo(data, self.size):
            return
        if self.received == self.size and not can_half_close(self.transport):
            assert self.transport is not None
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        """Report how this connection ended."""
        self.alive = False
        self.run.connection_ended(self, reason)


class ShortConnectionRun(RunRecord):
    """Runs short connections for the duration; C{done} fires with the result.

    The result's C{requests} and C{latencies} are connections completed
    within the time and their durations; C{clean} counts connections that
    got their whole echo and the server's EOF, C{opened} those that
    connected.
    """

    def setup(self) -> None:
        """Nothing connected or failed yet."""
        self.in_flight = 0  # connects asked for and connections open
        self.open: set[ShortConnectionProtocol] = set()
        self.failures: Counter[str] = Counter()

    def live_protocols(self) -> Iterable[ShortConnectionProtocol]:
        """The connections open now."""
        return self.open

    def start(self) -> defer.Deferred[LoadResult]:
        """Fill every slot and run for the duration."""
        self.running = True
        self.started = self.now()
        self._time_call = self.clock.callLater(self.settings.duration, self._time_up)
        for _ in range(self.settings.connections):
            self._open_one()
        return self.done

    def _open_one(self) -> None:
        index = next(self._indexes)
        began = self.now()
        factory = Factory()
        factory.protocol = lambda: ShortConnectionProtocol(self, index, began)  # type: ignore[assignment,misc]
        self.in_flight += 1
        d = self.connect(factory)
        d.addErrback(self._connect_failed)

    def connected(self, protocol: ShortConnectionProtocol) -> None:
        """Count a connection made and the time it took."""
        if self.ended:  # connected after the run failed or was interrupted
            protocol.abort()
            return
        self.open.add(protocol)
        self.result.opened += 1
        self.result.connect_times.record(protocol.connected_at - protocol.began)

    def handshake_done(self, seconds: float) -> None:
        """Note a TLS handshake's time."""
        self.result.handshake_times.record(seconds)

    def _connect_failed(self, failure: Failure) -> None:
        self.in_flight -= 1
        if self.ended:
            return
        if self.result.opened == 0:
            self._fail(failure)  # nothing ever connected: the target is down
            return
        self.failures[f"failed to connect: {classify(failure)}"] += 1
        self._next()

    def connection_ended(
        self, protocol: ShortConnectionProtocol, reason: Failure
    ) -> None:
        """Account for one ended connection; open the next while running."""
        self.in_flight -= 1
        self.open.discard(protocol)
        if self.ended:
            return
        self.result.bytes_sent += protocol.size if protocol.sent else 0
        if protocol.failed:
            pass  # already reported
        elif not protocol.sent and reason.check(SSLError, VerificationError):
            if not self.result.clean:
                # No connection has got through TLS: the certificate or the
                # server's settings, not the load (exit 7, as echod client).
                self._fail(reason)
                return
            self.failures[f"TLS failed: {classify(reason)}"] += 1
        elif protocol.received != protocol.size or not protocol.sent:
            why = "reset" if reason.check(error.ConnectionLost) else "closed"
            got = f"{protocol.received:,} of {protocol.size:,} bytes came back"
            self.failures[f"{why} by the server before the echo was whole"] += 1
            if sum(self.failures.values()) == 1:
                self.problem(f"connection {protocol.index}: {why} after {got}")
        else:
            self.result.clean += 1
            if self.running:
                self.result.requests += 1
                self.result.latencies.record(self.now() - protocol.began)
        self._next()

    def _next(self) -> None:
        if self.running:
            self._open_one()
        self._maybe_done()

    def _time_up(self) -> None:
        self.running = False
        self.result.elapsed = self.now() - self.started
        self._deadline = self.clock.callLater(
            self.settings.drain_timeout, self._drain_over
        )
        self._maybe_done()

    def _drain_over(self) -> None:
        self._deadline = None
        if self.open:
            self.problem(
                f"{len(self.open)} connection(s) still waiting for their echo "
                f"{self.settings.drain_timeout:g} s after the end"
            )
            for protocol in list(self.open):
                protocol.abort()

    def interrupt(self) -> None:
        """Stop now (Ctrl-C): keep the figures so far; C{done} never fires."""
        self._halt()
        self.problem(
            f"interrupted after {self.result.elapsed:.1f} s, "
            f"{len(self.open)} connection(s) open"
        )

    def _maybe_done(self) -> None:
        if self.running or self.in_flight or self.ended:
            return
        self.ended = True
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        for reason, count in self.failures.most_common(SHOWN_FAILURES):
            self.problem(f"{count:,} connection(s) {reason}")
        others = sum(self.failures.values()) - sum(
            count for _, count in self.failures.most_common(SHOWN_FAILURES)
        )
        if others:
            self.problem(f"{others:,} connection(s) failed for other reasons")
        self.done.callback(self.result)
