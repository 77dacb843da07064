"""twistd's own options, as echod needs them: where the log goes, and files
that twistd would otherwise fail on with a traceback.

twistd parses its options (C{--logfile}, C{--pidfile}, C{--rundir},
C{--nodaemon}, ...) before the plugin's, and a subcommand's L{usage.Options}
can read them as C{parent}. echod reads them for two things:

- C{--log-format json} replaces twistd's log observer, so it must write where
  twistd would have written (C{--logfile}, C{twistd.log} when daemonized,
  stdout with C{-n}), not always to stdout (which a daemon has closed);
- a log file, pid file or run directory that cannot be used is one line and
  exit 2 before anything starts, not a traceback from deep in twistd.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.python import usage

DEFAULT_DAEMON_LOG = "twistd.log"


def log_destination(twistd: Mapping[str, Any]) -> Path | None:
    """The file twistd would log to with these options, or None for stdout.

    As twistd's own choice: C{--logfile=-}, or C{-n} without C{--logfile}, is
    stdout; a daemon without C{--logfile} logs to C{twistd.log}.
    """
    name = twistd.get("logfile")
    if name == "-" or (not name and twistd.get("nodaemon")):
        return None
    return Path(name or DEFAULT_DAEMON_LOG)


def check_twistd_options(twistd: Mapping[str, Any], log_format: str) -> None:
    """Refuse, as a usage error, twistd options that would fail after start-up.

    Checks that the log file's directory and the pid file's directory exist
    and can be written, that the run directory and chroot exist, and what
    C{--log-format json} cannot go with (twistd's C{--syslog} and C{--logger}
    choose the log's output themselves).
    """
    if log_format == "json" and twistd.get("logger"):
        raise usage.UsageError(
            "--log-format json and twistd's --logger both choose the log's "
            "output: give one"
        )
    if log_format == "json" and twistd.get("syslog"):
        raise usage.UsageError(
            "--log-format json writes to --logfile or stdout, not to syslog "
            "(twistd's --syslog)"
        )
    if not (twistd.get("syslog") or twistd.get("logger")):  # twistd's own log
        if twistd.get("logfile") == "-" and not twistd.get("nodaemon"):
            raise usage.UsageError(
                "twistd --logfile=- (stdout) needs -n (--nodaemon): a daemon has "
                "no stdout"
            )
        log_file = log_destination(twistd)
        if log_file is not None:
            _check_writable("twistd --logfile", log_file)
    chroot = twistd.get("chroot")
    if chroot:
        _check_directory("twistd --chroot", Path(chroot))
        return  # the run directory and the pid file are inside the chroot
    _check_directory("twistd --rundir", Path(twistd.get("rundir") or "."))
    pidfile = twistd.get("pidfile")
    if pidfile:  # relative to where twistd starts, as its own abspath() makes it
        _check_writable("twistd --pidfile", Path(pidfile))


def _check_directory(option: str, path: Path) -> None:
    """Refuse C{path} unless it is a directory."""
    if not path.is_dir():
        why = "not a directory" if path.exists() else "no such directory"
        raise usage.UsageError(f"{option} {str(path)!r}: {why}")


def _check_writable(option: str, path: Path) -> None:
    """Refuse C{path} unless it is a writable file, or could be created."""
    if path.is_dir():
        raise usage.UsageError(f"{option} {str(path)!r}: is a directory")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise usage.UsageError(f"{option} {str(path)!r}: permission denied")
        return
    directory = path.parent
    if not directory.is_dir():
        raise usage.UsageError(
            f"{option} {str(path)!r}: no such directory {str(directory)!r}"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise usage.UsageError(
            f"{option} {str(path)!r}: cannot create files in {str(directory)!r}"
        )
