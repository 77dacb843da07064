"""A leaner dispatch for Twisted's epoll reactor, installed when none was chosen.

Profiling echod under a 100-connection ping-pong (docs/PERFORMANCE.md) showed
about a quarter of its Python time in C{log.callWithLogger}: for every I/O
event the stock C{EPollReactor.doPoll} builds a legacy log context (the
selectable's C{logPrefix()} as C{system}) around the handler.
L{LeanEPollReactor} is the same reactor with a C{doPoll} that calls the
handlers directly: a plain readable event goes straight to C{doRead}; any
other event goes through the reactor's own C{_doReadOrWrite}. Exceptions are
still caught per event (in the handler and in the disconnection that follows
it), logged, and disconnect only that selectable.

Its C{mainLoop} also skips the timer bookkeeping on turns where nothing is
due: the stock loop runs C{runUntilCurrent} and C{timeout} (two clock
reads, a context manager, a dozen attribute lookups) before every poll; the
lean loop reads the clock once, and calls them only when a thread call, a
new or due timed call or a stop is waiting. With one connection in
ping-pong that is every turn, so every request (docs/PERFORMANCE.md).

Busy polling, off by default (C{twistd echod --busy-poll USEC}, as HAProxy's
C{busy-polling}): after a turn that handled I/O, the lean loop polls with a
zero timeout for the next USEC microseconds instead of sleeping in
epoll_wait. Each wake-up from epoll_wait costs microseconds of latency (more
on a virtual machine); a one-connection ping-pong then answers faster than
a C server that sleeps between requests, at the price of a busy core while
traffic flows. Once USEC passes without an event the loop sleeps again, so
an idle daemon does not spin.

The one visible difference: legacy C{log.msg} calls made inside an I/O
handler have no per-connection C{system} prefix. echod logs through
twisted.logger with its own namespace, so its lines are unchanged.

A stop signal (SIGTERM, SIGINT) that comes while a stop is under way is
logged and ignored, where the stock reactor logs a ReactorNotRunning
traceback (L{LeanEPollReactor._stop_once}).

Timed calls keep their delays when the wall clock steps. Twisted's reactor
time is the wall clock: stepped back an hour (NTP), every pending call (the
idle sweeper's looks, the drain and TLS handshake timeouts) would wait an
hour more; stepped forward, all would fire at once. Each turn the lean loop
compares the wall clock with the monotonic one; when their difference moves
by more than L{CLOCK_STEP} seconds, it moves every pending call's time by the
same amount and logs the step once.

C{twistd --reactor=epoll echod} chooses the stock reactor instead, and an
untested Twisted (L{echod.compat}) gets it automatically.
"""

from __future__ import annotations

import errno
import itertools
import select
import sys
import time
from typing import Any

from twisted.logger import Logger

from echod.compat import running_twisted_tested

log = Logger(namespace="echod.reactor")

LONGEST_POLL = 2147483
"""The longest poll timeout in seconds: epoll_wait takes an int of milliseconds."""

CLOCK_STEP = 0.5
"""Seconds by which the wall clock must move against the monotonic clock
between two turns for the lean loop to take it as a step (NTP slews it by
at most half a millisecond a second)."""

try:
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # not Linux
    EPollReactor = None  # type: ignore[assignment,misc]


if EPollReactor is not None:

    class LeanEPollReactor(EPollReactor):  # type: ignore[misc,valid-type]
        """Twisted's epoll reactor without the per-event legacy log context."""

        busy_poll = 0.0
        """Seconds to keep polling without sleeping after the last I/O event."""

        def doPoll(self, timeout: float | None) -> int:
            """Poll for events and dispatch them (see the module docstring).

            Returns how many events there were (Twisted ignores it; busy
            polling needs it).
            """
            if timeout is None:
                timeout = -1
            try:
                events = self._poller.poll(timeout, len(self._selectables))
            except OSError as err:
                if err.errno == errno.EINTR:
                    return 0
                raise
            selectables = self._selectables
            for fd, event in events:
                selectable = selectables.get(fd)
                if selectable is None:
                    continue
                # As the stock reactor's callWithLogger did, nothing one
                # selectable raises may escape: the rest of this batch of
                # events must still be handled.
                try:
                    if event == select.EPOLLIN:
                        try:
                            why = selectable.doRead()
                        except BaseException:
                            why = sys.exc_info()[1]
                            log.failure("reading from {s}", s=selectable)
                        if why:
                            self._disconnectSelectable(selectable, why, True)
                    else:
                        self._doReadOrWrite(selectable, fd, event)
                except BaseException:
                    log.failure("handling an event of {s}", s=selectable)
            return len(events)

        doIteration = doPoll

        def sigInt(self, number: int, frame: Any = None) -> None:
            """SIGINT: stop, once (see L{_stop_once})."""
            self._stop_by_signal("SIGINT", number)

        def sigTerm(self, number: int, frame: Any = None) -> None:
            """SIGTERM: stop, once (see L{_stop_once})."""
            self._stop_by_signal("SIGTERM", number)

        def _stop_by_signal(self, name: str, number: int) -> None:
            self._exitSignal = number  # twistd ends by the signal, as stock
            self.callFromThread(self._stop_once, name)

        def _stop_once(self, name: str) -> None:
            """Stop the reactor, unless a stop has begun already.

            The stock handlers call C{stop()} for every signal, and a second
            one while the first stop drains raises ReactorNotRunning: a
            critical traceback in the log. A second signal is ordinary:
            systemd signals every process of a unit and C{echod serve
            --workers} passes the signal on too, so each worker gets two.
            """
            if self._stopped:
                log.info("Received {signal} again; already stopping", signal=name)
                return
            log.info("Received {signal}, shutting down.", signal=name)
            self.stop()

        def _clock_stepped(self, step: float) -> None:
            """The wall clock moved by C{step} seconds against the monotonic
            one: move every timed call by as much, so that each keeps the
            delay it was given (a uniform move keeps the heap's order)."""
            for call in (*self._pendingTimedCalls, *self._newTimedCalls):
                call.time += step
            log.info(
                "the wall clock stepped by {step:+.3f} s; timed calls keep "
                "their delays",
                step=step,
            )

        def mainLoop(self) -> None:
            """Run until stopped; an unexpected error is logged and the loop goes on."""
            while self._started:
                with log.failureHandler("Unexpected error in main loop"):
                    self._run_turns()
            log.info("Main loop terminated.")

        def _run_turns(self) -> None:
            # The stock loop, turn by turn: runUntilCurrent(), then
            # doIteration(running and timeout()). Here both are called only
            # when they have work; otherwise the poll timeout is the time
            # left until the first pending timed call, as timeout() computes.
            #
            # A for loop, not "while self._started": CPython 3.11 warms a
            # function's bytecode up for specialisation on entry and on the
            # unconditional backward jump of a for loop, never on the
            # conditional one a while loop ends with, so a while loop entered
            # once runs generic bytecode for ever (docs/PERFORMANCE.md,
            # lesson 9).
            seconds = self.seconds
            poll = self.doPoll
            busy = self.busy_poll
            # The spin's end on the monotonic clock: the reactor's is the wall
            # clock, and one stepped back would otherwise spin for the step.
            monotonic = time.monotonic
            spin_until = 0.0
            offset = seconds() - monotonic()  # the wall clock's lead, kept
            step_above, step_below = CLOCK_STEP, -CLOCK_STEP  # locals: no lookups
            events = 0
            unchecked = 0  # busy turns since the clock was last compared
            for _ in itertools.count():
                if not self._started:
                    break
                pending = self._pendingTimedCalls
                now = seconds()
                # A step of the wall clock is looked for after a poll that
                # found nothing (the loop slept: the clock may have stepped),
                # when a call looks due (it may only look so after a step
                # forward), and every 64th turn; not on every busy turn, where
                # the clock read would cost 5 % of a one-connection request.
                due = pending and pending[0].time <= now
                unchecked += 1
                if not events or unchecked == 64 or due:
                    unchecked = 0
                    step = now - monotonic() - offset
                    if step > step_above or step < step_below:
                        self._clock_stepped(step)
                        offset += step
                        due = pending and pending[0].time <= now
                if (
                    self.threadCallQueue
                    or self._newTimedCalls
                    or self._justStopped
                    or due
                ):
                    self.runUntilCurrent()
                    # Again before timeout() reads the clock: a step during
                    # the calls would otherwise set this poll's timeout.
                    step = seconds() - monotonic() - offset
                    if step > step_above or step < step_below:
                        self._clock_stepped(step)
                        offset += step
                    timeout = self.timeout()
                elif pending:
                    timeout = pending[0].time - now
                    if timeout > LONGEST_POLL:  # not min(): a call to parse
                        timeout = LONGEST_POLL
                else:
                    timeout = None
                if spin_until:
                    if monotonic() < spin_until:
                        timeout = 0
                    else:
                        spin_until = 0.0
                events = poll(self.running and timeout)
                if events and busy:
                    spin_until = monotonic() + busy


def install_if_unset() -> str:
    """Install L{LeanEPollReactor} unless a reactor is already installed.

    Returns a short description of the reactor in use, for the start log.
    """
    unset = "twisted.internet.reactor" not in sys.modules
    if unset and EPollReactor is not None and running_twisted_tested():
        from twisted.internet.main import installReactor

        installReactor(LeanEPollReactor())
    from twisted.internet import reactor

    return describe(reactor)


def is_lean(reactor: Any) -> bool:
    """Whether C{reactor} is L{LeanEPollReactor} (which stops once by itself,
    and can busy-poll)."""
    return EPollReactor is not None and isinstance(reactor, LeanEPollReactor)


def enable_busy_poll(reactor: Any, seconds: float) -> None:
    """Make C{reactor} poll without sleeping for C{seconds} after each I/O event.

    Only L{LeanEPollReactor} can; for any other reactor this raises
    L{ValueError} with a line for the user.
    """
    if not is_lean(reactor):
        raise ValueError(
            "--busy-poll needs echod's own reactor (leave out --reactor); "
            f"this one is {describe(reactor)}"
        )
    reactor.busy_poll = seconds


def describe(reactor: Any) -> str:
    """C{module.Class} of a reactor."""
    cls = type(reactor)
    return f"{cls.__module__}.{cls.__qualname__}"
