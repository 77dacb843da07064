"""The standard streams of the echod commands: never missing, never a traceback.

Two things a mature command-line tool gets right about fds 0, 1 and 2:

- started with one of them closed (C{>&-}), it must not let a socket or a file
  take that number, or its output would go into the connection:
  L{reserve_standard_fds} puts C{/dev/null} there first (stdout opened for
  reading only, so that a command that must write its output there fails
  with a clear C{Bad file descriptor} instead of losing it silently);
- when the reader of its report goes away (C{| head -1}), it must not print a
  traceback: L{report_stdout} drops the rest of the report and lets the
  command end by its own verdict, as pipe mode does when stdout closes; when
  the report cannot be written for another reason (C{> /dev/full}), the
  command says so and fails (exit 13, as echod fetch), as coreutils do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO


def reserve_standard_fds() -> None:
    """Give any closed fd of 0, 1 and 2 a C{/dev/null}, and Python a stream on it.

    stdin reads as empty; stdout refuses writes (EBADF); stderr discards.
    """
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_RDONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, mode)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - lives as long as we do
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def discard_stdout(fd: int = 1) -> None:
    """Point stdout's fd at C{/dev/null}, once it cannot be written.

    What Python still holds in its buffers then goes nowhere at exit, instead
    of failing again there with "Exception ignored".
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


QUIETLY_GONE = (errno.EPIPE, errno.EBADF)
"""stdout errors that mean nobody wants the report: its reader went away, or
stdout was closed."""


class ReportStdout:
    """C{sys.stdout} for a command whose stdout is a report (probe, bench).

    When it cannot be written (its reader went away: EPIPE; or it was closed:
    EBADF), fd 1 is pointed at C{/dev/null} and the rest of the report is
    dropped without a word: the command goes on and its exit code still says
    what it found. Any other failure (a full disk: ENOSPC, EIO) loses a
    report someone wanted: it is kept in C{error} for the command to say.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.dropped = False
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        """Write C{text}, or drop it once stdout is gone."""
        try:
            return self._stream.write(text)
        except OSError as e:
            self._drop(e)
            return len(text)

    def flush(self) -> None:
        """Flush, or drop what is buffered once stdout is gone."""
        try:
            self._stream.flush()
        except OSError as e:
            self._drop(e)

    def _drop(self, error: OSError) -> None:
        self.dropped = True
        if error.errno not in QUIETLY_GONE and self.error is None:
            self.error = error
        discard_stdout(self._stream.fileno())
        self._stream.flush()  # what was buffered goes to /dev/null

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def report_stdout() -> Iterator[ReportStdout]:
    """C{sys.stdout} is a L{ReportStdout} inside the block."""
    original = sys.stdout
    guarded = ReportStdout(original)
    sys.stdout = guarded  # type: ignore[assignment]
    try:
        yield guarded
    finally:
        guarded.flush()  # now, while a failure can still be dropped
        sys.stdout = original
