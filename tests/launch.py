"""Commands started in a prepared state, with no Python run between fork and exec.

subprocess's C{preexec_fn} (and C{pexpect.spawn}) run Python in the forked
child before it execs. The test process has threads (the daemon fixture's log
reader), and a fork then can deadlock the child (Python 3.12 warns). Instead a
command that needs SIGINT back, or fd 1 closed, is started through a fresh
interpreter that sets that up and execs it: the pid, and so the signals a test
sends and the exit status it reads, are the command's own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

PREPARE = """\
import os, signal, sys
if sys.argv[1] == "sigint":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
if sys.argv[2] == "close-stdout":
    os.close(1)
os.execvp(sys.argv[3], sys.argv[3:])
"""


def prepared(
    argv: Sequence[str], *, default_sigint: bool = False, close_stdout: bool = False
) -> list[str]:
    """C{argv} run with SIGINT as a terminal gives it, and/or fd 1 closed.

    C{default_sigint}: a CI job started in the background inherits SIGINT
    ignored, and Python then leaves it ignored; a test of Ctrl-C needs it back.
    """
    return [
        sys.executable, "-c", PREPARE,
        "sigint" if default_sigint else "-",
        "close-stdout" if close_stdout else "-",
        *argv,
    ]  # fmt: skip
