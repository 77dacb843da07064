"""``echod client --count N``: N numbered messages, each echo checked and
timed, and a summary, like ping."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from twisted.internet import defer, error
from twisted.python.failure import Failure

from echod.clienterrors import OK, PROBE_FAILED, classify
from echod.session import Session


class RoundTripStats:
    """ping's C{min/avg/max/mdev} of the round trips, in constant memory
    (Welford's running mean and variance: a long C{--count} keeps no list)."""

    def __init__(self) -> None:
        self.count = 0
        self.smallest = math.inf
        self.largest = -math.inf
        self._mean = 0.0
        self._squares = 0.0  # the sum of squared distances from the mean

    def add(self, milliseconds: float) -> None:
        """Count one round trip."""
        self.count += 1
        self.smallest = min(self.smallest, milliseconds)
        self.largest = max(self.largest, milliseconds)
        moved = milliseconds - self._mean
        self._mean += moved / self.count
        self._squares += moved * (milliseconds - self._mean)

    def summary(self) -> str:
        """The line ping ends with (mdev: the population standard deviation)."""
        deviation = math.sqrt(max(self._squares, 0.0) / self.count)
        return (
            f"rtt min/avg/max/mdev = {self.smallest:.3f}/{self._mean:.3f}/"
            f"{self.largest:.3f}/{deviation:.3f} ms"
        )


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
        self.times = RoundTripStats()
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
            self.times.add(rtt)
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
        ok = self.times.count
        failed = 100.0 * (self.seq - ok) / self.seq if self.seq else 0.0
        print(f"--- {self.label} echo probe ---")
        print(
            f"{self.seq} sent, {ok} echoed intact, {self.wrong} wrong, "
            f"{self.lost} lost, {failed:.0f}% failed"
        )
        if self.times.count:
            print(self.times.summary())
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
