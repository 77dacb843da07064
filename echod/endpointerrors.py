"""Endpoint errors in the words of the endpoint string, not of Twisted's internals."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable

from twisted.internet.address import IPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IAddress

from echod.reuseport import raw_fields
from echod.unixnames import path_field
from echod.zones import missing_zone, needs_zone


def parse_error_message(error: Exception) -> str:
    """What Twisted's endpoint parsers raised, in the words of an endpoint string.

    The parsers are Python functions (or endpoint classes) called with the
    string's fields as arguments, so a missing or unknown field arrives as a
    C{TypeError} about C{_parseTCP()} or C{TCP4ClientEndpoint.__init__()},
    and a port that is not a number as C{int()}'s complaint.
    """
    message = str(error) or error.__class__.__name__
    if isinstance(error, TypeError):
        missing = re.search(
            r"missing \d+ required positional arguments?: (.+)", message
        )
        if missing:
            return f"missing {missing.group(1)}"
        unknown = re.search(r"unexpected keyword argument ('.+')", message)
        if unknown:
            return f"unknown parameter {unknown.group(1)}"
        if re.search(
            r"got multiple values for argument|positional arguments? but \d+ "
            r"(were|was) given",
            message,
        ):
            # tcp:7:interface=::1 splits into fields 7, interface=, '', 1.
            return (
                "more fields than the endpoint takes: a ':' inside a value "
                "(an IPv6 address, a path) is written '\\:', as in interface=\\:\\:1"
            )
    not_int = re.fullmatch(r"invalid literal for int\(\) with base 10: (.+)", message)
    if not_int:
        return f"{not_int.group(1)} is not a number"
    return message


def empty_unix_path(description: str) -> bool:
    """True for a C{unix:} endpoint string whose socket path is empty.

    Twisted's parsers take an empty path; binding or connecting then fails
    with a bare "Invalid argument" or a lock-file error.
    """
    kind, _, rest = description.partition(":")
    if kind != "unix":
        return False
    found = path_field(raw_fields(rest))
    return found is not None and found[2] in ("", "@")  # "@": an empty abstract name


def lock_holder(lock: str) -> str:
    """Why a C{unix:} listener could not take its lock file C{lock}.

    Twisted's lock is a symbolic link to the pid of the process holding it,
    taken over when that process is gone; so the holder is running (or was
    still a zombie, not yet reaped).
    """
    try:
        pid = os.readlink(lock)
    except OSError:
        return f"{lock} is held by another process."
    return (
        f"{lock} says process {pid} listens there, and it is running "
        "(another echod? stop it, or listen on another path)."
    )


def listen_failure_message(error: BaseException | None) -> str:
    """Why listening failed, naming the file when a file was the trouble.

    Twisted's own messages say it for TCP ("Couldn't listen on 127.0.0.1:80:
    [Errno 13] Permission denied."). For a UNIX socket they show the path as
    a bytes repr, and the lock file a C{unix:} listener takes by default fails
    as a symlink error ("'4242' -> b'/run/x/e.sock.lock'") that names the pid
    it would have written before the file it could not create.
    """
    if isinstance(error, CannotListenError) and isinstance(error.port, bytes):
        path = os.fsdecode(error.port)
        if error.socketError == "Cannot acquire lock":
            return f"Couldn't listen on {path}: {lock_holder(path + '.lock')}"
        return f"Couldn't listen on {path}: {error.socketError}."
    if (
        isinstance(error, CannotListenError)
        and getattr(error.socketError, "errno", None) == errno.EINVAL
        and needs_zone(error.interface or "")
    ):
        escaped = f"{error.interface}%eth0".replace(":", "\\:")
        example = f"tcp6:{error.port}:interface={escaped}"
        return f"{error} ({missing_zone(error.interface, example)})"
    if isinstance(error, OSError) and error.strerror:
        path = error.filename if error.filename2 is None else error.filename2
        if isinstance(path, (str, bytes)):
            return f"{os.fsdecode(path)}: {error.strerror}"
    return "an unknown error" if error is None else str(error)


def own_port_hint(error: BaseException | None, held: Iterable[IAddress]) -> str:
    """Why a TCP port is in use when one of this daemon's own listeners holds it.

    The common case is C{-p tcp:P -p tcp6:P:interface=\\:\\:}, nginx's
    C{listen P; listen [::]:P;}: Twisted's IPv6 listener on C{::} is dual
    stack (Linux's default, C{net.ipv6.bindv6only=0}), so it already takes
    IPv4 and the IPv4 listener on the same port cannot bind. "" when the
    error is something else.
    """
    if not (
        isinstance(error, CannotListenError)
        and isinstance(error.port, int)
        and getattr(error.socketError, "errno", None) == errno.EADDRINUSE
    ):
        return ""
    failing_v6 = ":" in (error.interface or "")
    for address in held:
        if getattr(address, "type", None) != "TCP":
            continue
        if getattr(address, "port", None) != error.port:
            continue
        held_v6 = isinstance(address, IPv6Address)
        if held_v6 != failing_v6 and "::" in (
            getattr(address, "host", ""),
            error.interface,
        ):
            return (
                " (a tcp6 listener on :: takes IPv4 connections too: one "
                "listener serves both, leave out the IPv4 one)"
            )
        return " (an earlier --port of this echod listens there)"
    return ""
