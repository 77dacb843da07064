"""systemd's service notification (sd_notify) for ``Type=notify`` units.

A few lines on $NOTIFY_SOCKET rather than a dependency: a datagram of
C{KEY=value} lines to a UNIX socket (C{@name} is the abstract namespace).
echod sends READY=1 once every listener is up, STOPPING=1 when a stop
begins, STATUS= lines a person reads in C{systemctl status}, and WATCHDOG=1
every half of $WATCHDOG_USEC when the unit sets WatchdogSec=. Without
$NOTIFY_SOCKET every call does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger(namespace="echod")


class SystemdNotifier:
    """Sends notifications to the service manager, if there is one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.watchdog_seconds = 0.0
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1e6
        self._watchdog: LoopingCall | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        """True when started by a service manager that listens."""
        return bool(self.address)

    def notify(self, *fields: str) -> None:
        """Send C{KEY=value} fields in one datagram; errors are logged once."""
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as e:
            if not self._failed:
                self._failed = True
                log.warn(
                    "cannot notify systemd at {address}: {e}", address=self.address, e=e
                )

    def ready(self, status: str) -> None:
        """Every listener is up: READY=1, and start the watchdog if asked for."""
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def start_watchdog(self, clock: IReactorTime) -> None:
        """Send WATCHDOG=1 every half of the watchdog interval."""
        if self.enabled and self.watchdog_seconds and self._watchdog is None:
            self._watchdog = LoopingCall(self.notify, "WATCHDOG=1")
            self._watchdog.clock = clock
            self._watchdog.start(self.watchdog_seconds / 2, now=True)

    def stopping(self, status: str) -> None:
        """A stop has begun: STOPPING=1 (the watchdog goes on until exit)."""
        self.notify("STOPPING=1", f"STATUS={status}")

    def stop_watchdog(self) -> None:
        """Stop sending WATCHDOG=1."""
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self._watchdog = None
