"""A NOTIFY_SOCKET of the test's own, as systemd's, for daemons under test."""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass

from echod.workers import CREDENTIALS_SPACE, UCRED


@dataclass(frozen=True)
class Notice:
    """One sd_notify datagram: when it came, who sent it, its lines."""

    at: float
    pid: int
    lines: list[str]


class NotifySocket:
    """An abstract datagram socket that learns each sender's pid (SO_PASSCRED).

    Give C{address} to the daemon as NOTIFY_SOCKET; read what it says.
    """

    def __init__(self) -> None:
        name = f"echod-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.address = "@" + name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + name)

    def next(self, timeout: float) -> Notice:
        """The next datagram; TimeoutError if none comes within C{timeout}."""
        self.sock.settimeout(timeout)
        data, ancillary, _, _ = self.sock.recvmsg(4096, CREDENTIALS_SPACE)
        pid = UCRED.unpack(ancillary[0][2][: UCRED.size])[0]
        return Notice(time.monotonic(), pid, data.decode().split("\n"))

    def within(self, seconds: float) -> list[Notice]:
        """Every datagram that arrives within C{seconds}."""
        got: list[Notice] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.next(left))
            except TimeoutError:
                break
        return got

    def wait_for(self, line: str, timeout: float = 20.0) -> Notice:
        """The first datagram with C{line} in it, reading past any others."""
        seen: list[list[str]] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                notice = self.next(left)
            except TimeoutError:
                break
            if line in notice.lines:
                return notice
            seen.append(notice.lines)
        raise AssertionError(f"no {line} in {seen}")

    def close(self) -> None:
        """Stop listening."""
        self.sock.close()
