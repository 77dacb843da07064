"""A load generator for echo servers: many connections, every byte verified.

Each connection sends a byte stream that is a function of its offset and of
the connection (L{Pattern}), so every byte that comes back can be checked
where it lands: a lost, duplicated, reordered, corrupted or crossed-over
byte shows as a mismatch at a known offset. When the time is up each
connection stops sending, half-closes once everything it sent is written,
and reads until the server's EOF; it ends clean only if every byte it sent
came back.

- ping-pong: one message of C{size} bytes in flight per connection; the
  next is sent when the whole echo is back (its round trip is a latency
  sample);
- stream: each connection keeps up to C{window} bytes in flight, written in
  pieces of C{size} bytes, and reads what comes back.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from OpenSSL.SSL import Error as SSLError
from service_identity import VerificationError
from twisted.internet import defer, error
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.echo import can_half_close
from echod.histogram import DurationHistogram

PERIOD = 251
"""The pattern repeats every PERIOD bytes (a prime: no power-of-two alignment)."""
MAX_PIECE = 65536
"""The longest slice L{Pattern.at} is asked for at once."""
_BASE = bytes(range(PERIOD)) * (MAX_PIECE // PERIOD + 2)
"""The pattern from offset 0, long enough for any start plus L{MAX_PIECE}."""


class Pattern:
    """The bytes one connection sends: offset C{n} holds C{(n + seed) % 251}."""

    def __init__(self, seed: int) -> None:
        self.seed = seed % PERIOD

    def at(self, offset: int, length: int) -> bytes:
        """The C{length} bytes (at most L{MAX_PIECE}) from stream offset C{offset}."""
        start = (offset + self.seed) % PERIOD
        return _BASE[start : start + length]

    def first_difference(self, offset: int, data: bytes) -> int | None:
        """Where C{data}, received at C{offset}, first differs from the pattern."""
        for done in range(0, len(data), MAX_PIECE):
            piece = data[done : done + MAX_PIECE]
            expected = self.at(offset + done, len(piece))
            if piece != expected:
                at = next(
                    i
                    for i, (a, b) in enumerate(zip(piece, expected, strict=True))
                    if a != b
                )
                return done + at
        return None


@dataclass(frozen=True)
class LoadSettings:
    """What to run: the mode, how many connections, how big, how long."""

    connections: int = 10
    size: int = 1024
    """ping-pong: bytes per message; stream: bytes per write."""
    duration: float = 5.0
    stream: bool = False
    window: int = 4 * 1024 * 1024
    """stream: most bytes a connection has in flight."""
    drain_timeout: float = 10.0
    """After the time is up, how long the echoes of bytes in flight may take."""
    short: bool = False
    """Short connections (L{echod.shortload}): one message each, then closed,
    and another opened in its place while the run lasts."""


@dataclass
class Mismatch:
    """The first wrong byte one connection received."""

    connection: int
    offset: int
    expected: int
    got: int


@dataclass
class LoadResult:
    """Everything one run measured."""

    settings: LoadSettings
    elapsed: float = 0.0
    requests: int = 0
    """ping-pong round trips completed within the time."""
    bytes_sent: int = 0
    bytes_verified: int = 0
    bytes_in_time: int = 0
    """Bytes echoed back within the time (for the rate)."""
    latencies: DurationHistogram = field(default_factory=DurationHistogram)
    connect_times: DurationHistogram = field(default_factory=DurationHistogram)
    """Seconds from the connect call to the TCP connection (name lookup
    included). All connections are opened at once, so with many these include
    waiting on each other."""
    handshake_times: DurationHistogram = field(default_factory=DurationHistogram)
    """Over TLS: seconds from the TCP connection to the handshake done."""
    clean: int = 0
    """Connections that got every byte back, then the server's EOF."""
    opened: int = 0
    """Short connections: how many connected."""
    mismatches: list[Mismatch] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every byte of every connection came back, in order."""
        expected = self.opened if self.settings.short else self.settings.connections
        return not self.mismatches and not self.problems and self.clean == expected

    def percentiles(self, *fractions: float) -> list[float | None]:
        """Latency percentiles in seconds (0.5 for the median)."""
        return self.latencies.percentiles(*fractions)

    def percentile(self, fraction: float) -> float | None:
        """One latency percentile in seconds."""
        return self.percentiles(fraction)[0]


@implementer(IHalfCloseableProtocol)
class CheckedConnection(Protocol):
    """What every load connection does (L{LoadProtocol}, and
    L{echod.shortload}'s): sends connection C{index}'s pattern, and takes
    back only its echo, checked where it lands; the server's EOF ends it."""

    def __init__(self, run: RunRecord, index: int) -> None:
        self.run = run
        self.index = index
        self.pattern = Pattern(index * 37 + 1)
        self.received = 0
        self.alive = True
        self.failed = False

    def take_echo(self, data: bytes, sent: int) -> bool:
        """Whether C{data}, come back after C{sent} bytes were sent, is their
        echo (counted); if not, the run is told what is wrong (a mismatch
        where it is, or more bytes than were sent) and the connection is
        dropped."""
        if self.failed:
            return False
        extra = self.received + len(data) - sent
        wrong = (
            None if extra > 0 else self.pattern.first_difference(self.received, data)
        )
        if extra > 0:
            self.run.problem(
                f"connection {self.index}: {extra:,} bytes more came back than "
                "were sent"
            )
        elif wrong is not None:
            offset = self.received + wrong
            expected = self.pattern.at(offset, 1)[0]
            self.run.mismatch(Mismatch(self.index, offset, expected, data[wrong]))
        else:
            self.received += len(data)
            self.run.echoed(len(data))
            return True
        self.abort()
        return False

    def abort(self) -> None:
        """Drop the connection at once (a wrong echo, or one that took too long)."""
        self.failed = True
        if self.alive and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def readConnectionLost(self) -> None:
        """The server's EOF: the end."""
        assert self.transport is not None
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Our half-close went out; read on until the server's EOF."""


@implementer(IHandshakeListener)
class LoadProtocol(CheckedConnection):
    """One connection of a load run: sends its pattern and checks the echo."""

    run: LoadRun

    def __init__(self, run: LoadRun, index: int) -> None:
        super().__init__(run, index)
        self.sent = 0
        self.began = False
        self.sending = False
        self.stopped = False
        self.closing = False
        self._request_started = 0.0
        self.connected_at = 0.0
        self.handshaking = False

    def connectionMade(self) -> None:
        """Wait for the run to start all connections together."""
        self.run.connection_made(self)

    def handshakeCompleted(self) -> None:
        """Over TLS: time the handshake; the run starts once all are done."""
        self.run.handshake_done(self)

    def start(self) -> None:
        """Begin sending."""
        self.began = self.sending = True
        if self.run.settings.stream:
            self._top_up()
        else:
            self._send_request()

    def stop(self) -> None:
        """The time is up: send nothing more; half-close once all is echoed."""
        self.sending = False
        if self.run.settings.stream or self.received == self.sent:
            self._half_close()

    def _write(self, length: int) -> None:
        assert self.transport is not None
        while length > 0:
            piece = min(length, MAX_PIECE)
            self.transport.write(self.pattern.at(self.sent, piece))
            self.sent += piece
            length -= piece

    def _send_request(self) -> None:
        self._request_started = self.run.now()
        self._write(self.run.settings.size)

    def _top_up(self) -> None:
        settings = self.run.settings
        while self.sending and self.sent - self.received < settings.window:
            self._write(settings.size)

    def _half_close(self) -> None:
        # Sending is over. A plain socket shuts its write side now (after what
        # is queued) and reads on until the server's EOF; TLS cannot half-close,
        # so it closes once every byte is back.
        if self.closing or not self.alive or self.transport is None:
            return  # a closed transport must not be touched again
        self.stopped = True
        if can_half_close(self.transport):
            self.closing = True
            self.transport.loseWriteConnection()  # type: ignore[attr-defined]
        elif self.received == self.sent:
            self.closing = True
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """Check the echo byte for byte; go on sending while the run lasts."""
        if not self.take_echo(data, self.sent):
            return
        if self.run.settings.stream:
            if self.sending:
                self._top_up()
            elif self.received == self.sent:
                self._half_close()
            return
        if self.received == self.sent:
            self.run.round_trip(self.run.now() - self._request_started)
            if self.sending:
                self._send_request()
            else:
                self._half_close()

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        """Report how this connection ended."""
        self.alive = False
        self.run.connection_lost(self, reason)


class RunRecord:
    """What a load run keeps (L{LoadRun}, L{echod.shortload}'s): its settings,
    clock and connector, the result its connections report into, its timers
    (the end of the time, the end of the drain), and how it fails or is
    interrupted. A run's own state is made in L{setup}."""

    def __init__(
        self,
        settings: LoadSettings,
        clock: IReactorTime,
        connect: Callable[[Factory], defer.Deferred[Any]],
        now: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.now = now or clock.seconds
        """What latencies and rates are measured on: C{echod bench} gives
        C{time.monotonic}, which no step of the wall clock moves (the
        reactor's clock, which times the run, is the wall clock); tests,
        their reactor's clock."""
        self.connect = connect
        self.result = LoadResult(settings)
        self.running = False
        self.ended = False
        self.started = 0.0
        self.done: defer.Deferred[LoadResult] = defer.Deferred()
        self._indexes = itertools.count()
        self._time_call: Any = None
        self._deadline: Any = None
        self.setup()

    def setup(self) -> None:
        """Make the run's own state (called at the end of construction)."""

    def live_protocols(self) -> Iterable[Any]:
        """The connections to abort when the run fails."""
        return ()

    def _cancel_timers(self) -> None:
        for call in (self._time_call, self._deadline):
            if call is not None and call.active():
                call.cancel()

    def _halt(self) -> None:
        """Stop at once (a failure, an interrupt): no more timers, no more
        measuring; the figures so far stay."""
        if self.running:
            self.result.elapsed = self.now() - self.started
        self.running = False
        self.ended = True
        self._cancel_timers()

    def _fail(self, failure: Failure) -> None:
        """End the run with C{failure} instead of a result."""
        self._halt()
        for protocol in list(self.live_protocols()):
            protocol.abort()
        if not self.done.called:
            self.done.errback(failure)

    def echoed(self, count: int) -> None:
        """C{count} more bytes came back, verified."""
        self.result.bytes_verified += count
        if self.running:
            self.result.bytes_in_time += count

    def mismatch(self, found: Mismatch) -> None:
        """A wrong byte came back."""
        self.result.mismatches.append(found)

    def problem(self, text: str) -> None:
        """Something other than a wrong byte went wrong."""
        self.result.problems.append(text)


class LoadRun(RunRecord):
    """Connects, runs and ends one load test; C{done} fires with the result."""

    def setup(self) -> None:
        """No connection yet."""
        self.protocols: list[LoadProtocol] = []
        self.open = 0
        self.stopped_early = False
        self._connecting_since = 0.0
        self._connected = False
        self._handshaking = 0
        """TLS connections whose handshake is not done: the run waits for them."""

    def live_protocols(self) -> Iterable[LoadProtocol]:
        """Every connection of the run."""
        return self.protocols

    def start(self) -> defer.Deferred[LoadResult]:
        """Open every connection, then run; a failed connect fails the run."""
        factory = Factory()
        factory.protocol = lambda: LoadProtocol(self, next(self._indexes))  # type: ignore[assignment,misc]
        self._connecting_since = self.now()
        attempts = [self.connect(factory) for _ in range(self.settings.connections)]
        connected = defer.gatherResults(attempts, consumeErrors=True)
        connected.addCallbacks(lambda _: self._all_connected(), self._connect_failed)
        return self.done

    def connection_made(self, protocol: LoadProtocol) -> None:
        """Count an open connection and the time it took to connect."""
        self.protocols.append(protocol)
        self.open += 1
        protocol.connected_at = self.now()
        self.result.connect_times.record(protocol.connected_at - self._connecting_since)
        if isinstance(protocol.transport, TLSMemoryBIOProtocol):
            protocol.handshaking = True
            self._handshaking += 1

    def handshake_done(self, protocol: LoadProtocol) -> None:
        """Note how long C{protocol}'s TLS handshake took; start when all are done."""
        took = self.now() - protocol.connected_at
        self.result.handshake_times.record(took)
        if self._handshake_ended(protocol):
            self._maybe_go()

    def _handshake_ended(self, protocol: LoadProtocol) -> bool:
        """C{protocol} has no handshake under way now; True if it had one."""
        if not protocol.handshaking:
            return False
        protocol.handshaking = False
        self._handshaking -= 1
        return True

    def _all_connected(self) -> None:
        self._connected = True
        self._maybe_go()

    def _maybe_go(self) -> None:
        """Start once every connection is connected and every handshake done.

        So the figures are of echoing only: a TLS handshake is neither in the
        first round trip's latency nor in the time the rates divide by.
        """
        waiting = not self._connected or self._handshaking
        if not (waiting or self.running or self.ended):
            self._go()

    def interrupt(self) -> None:
        """Stop now (Ctrl-C): keep the figures so far; close without judging.

        The connections are about to be dropped by us, not by the server, so
        their ends are counted but not reported, and C{done} never fires.
        """
        self._halt()
        self.stopped_early = True
        self.result.problems.append(
            f"interrupted after {self.result.elapsed:.1f} s, every connection "
            "still open"
        )

    def _connect_failed(self, failure: Failure) -> None:
        if isinstance(failure.value, defer.FirstError):
            failure = failure.value.subFailure
        self._fail(failure)

    def _go(self) -> None:
        self.running = True
        self.started = self.now()
        for protocol in self.protocols:
            if protocol.alive:
                protocol.start()
        self._time_call = self.clock.callLater(self.settings.duration, self._time_up)
        if not self.open:  # every connection was closed before the start
            self._time_up()

    def _time_up(self) -> None:
        if self._time_call is not None and self._time_call.active():
            self._time_call.cancel()
        self.running = False
        self.ended = True
        self.result.elapsed = self.now() - self.started
        for protocol in list(self.protocols):
            protocol.stop()
        self._deadline = self.clock.callLater(
            self.settings.drain_timeout, self._drain_over
        )
        self._maybe_done()

    def _drain_over(self) -> None:
        self._deadline = None
        stuck = [p for p in self.protocols if p.alive and not p.failed]
        if stuck:
            self.problem(
                f"{len(stuck)} connection(s) still waiting for their echo "
                f"{self.settings.drain_timeout:g} s after the end"
            )
            for protocol in stuck:
                protocol.abort()

    def round_trip(self, seconds: float) -> None:
        """A ping-pong message came back whole."""
        if self.running:
            self.result.requests += 1
            self.result.latencies.record(seconds)

    def connection_lost(self, protocol: LoadProtocol, reason: Failure) -> None:
        """Account for one ended connection; finish when all have."""
        self.open -= 1
        self.result.bytes_sent += protocol.sent
        if self.stopped_early:
            return  # interrupted: we dropped it
        handshaking = self._handshake_ended(protocol)
        if protocol.failed:
            pass  # already reported
        elif not protocol.received and reason.check(SSLError, VerificationError):
            # The TLS handshake failed: that is a failure to connect (a TLS
            # endpoint's connect fires before the handshake), as curl reports it.
            self._fail(reason)
            return
        elif not protocol.began:
            self.problem(
                f"connection {protocol.index}: closed by the server before the start"
            )
        elif not protocol.stopped:
            why = "reset" if reason.check(error.ConnectionLost) else "closed"
            self.problem(
                f"connection {protocol.index}: {why} by the server after "
                f"{protocol.received:,} of {protocol.sent:,} bytes came back"
            )
        elif protocol.received != protocol.sent:
            lost = protocol.sent - protocol.received
            self.problem(
                f"connection {protocol.index}: {lost:,} of {protocol.sent:,} bytes "
                f"never came back"
            )
        else:
            self.result.clean += 1
        if self.running and not self.open:
            self._time_up()  # nothing left to measure
        elif handshaking:
            self._maybe_go()  # the others may have been waiting for this one
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.open or not self.ended or self.done.called:
            return
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self.done.callback(self.result)
