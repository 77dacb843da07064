"""A second stop signal while a stop is under way: a log line, not a traceback.

Twisted's own reactors call C{stop()} for every SIGTERM and SIGINT, and
C{stop()} raises ReactorNotRunning once a stop has begun, so a second signal
during echod's drain logs a critical traceback. A second signal is ordinary:
systemd signals every process of a unit, C{echod serve --workers} passes the
signal on to its workers too, and an impatient operator presses Ctrl-C twice.
L{echod.reactor.LeanEPollReactor} (the default) stops once by itself; on any
other reactor (C{twistd --reactor=...}) L{stop_once} wraps the handlers the
reactor installed as it started, so that only the first signal, or none once
a stop has begun another way, reaches them.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from twisted.logger import Logger

log = Logger(namespace="echod")

STOP_SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
"""The signals a reactor stops on, by name for the log."""


def stop_once(reactor: Any) -> None:
    """Let only the first stop signal reach C{reactor}'s own handlers.

    Call it once the reactor runs (C{callWhenRunning}): it installs its
    handlers as it starts. A signal whose handler is not a function (the
    reactor installed none: C{SIG_DFL}, C{SIG_IGN}) is left as it is.
    """
    stopping = False

    def stop_begun() -> None:
        nonlocal stopping
        stopping = True

    reactor.addSystemEventTrigger("before", "shutdown", stop_begun)
    for number, name in STOP_SIGNALS.items():
        installed = signal.getsignal(number)
        if not callable(installed):
            continue

        def handler(
            signum: int,
            frame: FrameType | None,
            installed: Any = installed,
            name: str = name,
        ) -> None:
            nonlocal stopping
            if stopping:
                reactor.callFromThread(
                    log.info, "Received {signal} again; already stopping", signal=name
                )
                return
            stopping = True
            installed(signum, frame)

        signal.signal(number, handler)
