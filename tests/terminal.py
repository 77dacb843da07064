"""Commands on a terminal of their own, driven with pexpect, started without forkpty.

C{pexpect.spawn} forks the test process and runs Python in the child before it
execs; the test process has threads (the daemon fixture's log reader), and a
fork then can deadlock the child (Python 3.12 warns: DeprecationWarning on
forkpty). Here subprocess starts the command (fork and exec in C) on a new
pseudo-terminal, C{setsid --ctty} makes it the command's controlling terminal
(so Ctrl-C and Ctrl-D act as a person's would), and pexpect's C{fdspawn} reads
and writes the other side with the usual C{expect} and C{send} calls.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence

from pexpect.fdpexpect import fdspawn

from tests.daemon import need_tool
from tests.launch import prepared


class Terminal(fdspawn):  # type: ignore[misc]
    """A command running on a pseudo-terminal; C{expect}, C{send} and friends."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 10,
        encoding: str | None = None,
        dimensions: tuple[int, int] = (24, 80),
        default_sigint: bool = False,
    ) -> None:
        master, terminal = os.openpty()
        rows, columns = dimensions
        fcntl.ioctl(
            terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0)
        )
        command = [need_tool("setsid"), "--ctty", *argv]
        self.process = subprocess.Popen(
            prepared(command, default_sigint=default_sigint) if default_sigint
            else command,
            stdin=terminal, stdout=terminal, stderr=terminal, cwd=cwd, env=env,
        )  # fmt: skip
        os.close(terminal)
        super().__init__(master, timeout=timeout, encoding=encoding)

    def _control_character(self, index: int) -> None:
        os.write(self.child_fd, termios.tcgetattr(self.child_fd)[6][index])

    def sendeof(self) -> None:
        """Type the terminal's end-of-file character (Ctrl-D)."""
        self._control_character(termios.VEOF)

    def wait_for_line_editing(self, timeout: float = 10.0) -> None:
        """Wait until the program reads a line with readline (the terminal out
        of canonical mode), so that what is typed next reaches readline.

        A Ctrl-D typed while the terminal is still canonical (between one line
        and the next prompt) is consumed by the terminal driver as an EOF that
        nobody reads, and lost when readline switches modes.
        """
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.child_fd)[3] & termios.ICANON:
            if time.monotonic() > deadline:
                raise AssertionError("the program never started reading a line")
            time.sleep(0.02)

    def sendintr(self) -> None:
        """Type the terminal's interrupt character (Ctrl-C)."""
        self._control_character(termios.VINTR)

    def sendcontrol(self, char: str) -> int:
        """Type Ctrl and C{char} (C{"]"} for telnet's escape)."""
        return os.write(self.child_fd, bytes([ord(char) & 0x1F]))

    def wait(self) -> int:
        """Wait for the command to end; its exit status (negative: a signal),
        also kept in C{exitstatus} as pexpect does."""
        self.exitstatus = self.process.wait(self.timeout)
        return int(self.exitstatus)

    def close(self, force: bool = True) -> None:
        """Close our side (the terminal hangs up) and reap the command; kill it
        if it has not ended within 5 s and C{force}."""
        super().close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            if not force:
                raise
            self.process.kill()
            self.process.wait()
        self.exitstatus = self.process.returncode
