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

The one visible difference: legacy C{log.msg} calls made inside an I/O
handler have no per-connection C{system} prefix. echod logs through
twisted.logger with its own namespace, so its lines are unchanged.

C{twistd --reactor=epoll echod} chooses the stock reactor instead, and an
untested Twisted (L{echod.compat}) gets it automatically.
"""

from __future__ import annotations

import errno
import select
import sys
from typing import Any

from twisted.logger import Logger

from echod.compat import twisted_tested

log = Logger(namespace="echod.reactor")

try:
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # not Linux
    EPollReactor = None  # type: ignore[assignment,misc]


if EPollReactor is not None:

    class LeanEPollReactor(EPollReactor):  # type: ignore[misc,valid-type]
        """Twisted's epoll reactor without the per-event legacy log context."""

        def doPoll(self, timeout: float | None) -> None:
            """Poll for events and dispatch them (see the module docstring)."""
            if timeout is None:
                timeout = -1
            try:
                events = self._poller.poll(timeout, len(self._selectables))
            except OSError as err:
                if err.errno == errno.EINTR:
                    return
                raise
            selectables = self._selectables
            dispatch = self._doReadOrWrite
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
                        dispatch(selectable, fd, event)
                except BaseException:
                    log.failure("handling an event of {s}", s=selectable)

        doIteration = doPoll


def install_if_unset() -> str:
    """Install L{LeanEPollReactor} unless a reactor is already installed.

    Returns a short description of the reactor in use, for the start log.
    """
    unset = "twisted.internet.reactor" not in sys.modules
    if unset and EPollReactor is not None and twisted_tested():
        from twisted.internet.main import installReactor

        installReactor(LeanEPollReactor())
    from twisted.internet import reactor

    return describe(reactor)


def describe(reactor: Any) -> str:
    """C{module.Class} of a reactor."""
    cls = type(reactor)
    return f"{cls.__module__}.{cls.__qualname__}"
