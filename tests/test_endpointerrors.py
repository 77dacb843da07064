"""echod.endpointerrors: Twisted's parser errors said in endpoint-string words."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor

from echod.endpointerrors import (
    empty_unix_path,
    listen_failure_message,
    lock_holder,
    own_port_hint,
    parse_error_message,
)

TOO_MANY_FIELDS = (
    "more fields than the endpoint takes: a ':' inside a value (an IPv6 "
    "address, a path) is written '\\:', as in interface=\\:\\:1"
)


@pytest.mark.parametrize(
    ("parse", "description", "message"),
    [
        (serverFromString, "tcp", "missing 'port'"),
        (serverFromString, "unix", "missing 'address'"),
        (serverFromString, "tcp:10000:frob=1", "unknown parameter 'frob'"),
        (serverFromString, "tcp:ten", "'ten' is not a number"),
        (serverFromString, "tcp:10000:backlog=many", "'many' is not a number"),
        (serverFromString, "pigeon:1", "Unknown endpoint type: 'pigeon'"),
        # were "_parseTCP() got multiple values for argument 'interface'" and
        # "_parseUNIX() takes from 2 to 5 positional arguments but 7 were given"
        (serverFromString, "tcp:7:interface=::1", TOO_MANY_FIELDS),
        (serverFromString, "tcp6:7:interface=::1", TOO_MANY_FIELDS),
        (serverFromString, "tcp:7:backlog=5:interface=::", TOO_MANY_FIELDS),
        (serverFromString, "tcp:1:2:3:4:5:6", TOO_MANY_FIELDS),
        (serverFromString, "unix:/tmp/a:b:c:d:e:f", TOO_MANY_FIELDS),
        (clientFromString, "tcp:host=localhost", "missing 'port'"),
        (clientFromString, "tcp:host=h:port=7:frob=2", "unknown parameter 'frob'"),
        (clientFromString, "tcp:host=h:port=seven", "'seven' is not a number"),
    ],
)
def test_twisted_parser_errors(
    parse: Callable[[Any, str], object], description: str, message: str
) -> None:
    """The real parsers' errors (they change with Twisted; this catches it)."""
    with pytest.raises(Exception) as raised:
        parse(MemoryReactor(), description)
    assert parse_error_message(raised.value) == message


def test_other_errors_keep_their_words() -> None:
    assert parse_error_message(TypeError("something else")) == "something else"
    assert parse_error_message(KeyError()) == "KeyError"


@pytest.mark.parametrize(
    ("description", "empty"),
    [
        ("unix:", True),
        ("unix::mode=660", True),
        ("unix:address=", True),
        ("unix:mode=600:address=", True),
        ("unix:path=", True),
        ("unix:/run/e.sock", False),
        ("unix:path=/run/e.sock:timeout=3", False),
        ("unix:mode=600", False),  # no path at all: Twisted's parser says so
        ("tcp:", False),
    ],
)
def test_empty_unix_path(description: str, empty: bool) -> None:
    assert empty_unix_path(description) is empty


def test_listen_failure_message_names_the_file() -> None:
    """The lock file a unix: listener takes fails as a symlink error."""
    lock = FileNotFoundError(errno.ENOENT, "No such file or directory", "4242")
    lock.filename2 = b"/run/x/e.sock.lock"
    assert listen_failure_message(lock) == (
        "/run/x/e.sock.lock: No such file or directory"
    )
    denied = PermissionError(errno.EACCES, "Permission denied", "/run/e.sock")
    assert listen_failure_message(denied) == "/run/e.sock: Permission denied"
    unix = CannotListenError(None, b"/run/x/e.sock", FileNotFoundError(2, "gone"))
    assert listen_failure_message(unix) == (
        "Couldn't listen on /run/x/e.sock: [Errno 2] gone."
    )
    # TCP keeps Twisted's own words, as the README shows them.
    tcp = CannotListenError("127.0.0.1", 80, OSError(98, "Address already in use"))
    assert listen_failure_message(tcp) == str(tcp)
    assert listen_failure_message(OSError("no room")) == "no room"


def test_own_port_hint() -> None:
    """A port in use by one of the daemon's own listeners is said so."""
    in_use = OSError(errno.EADDRINUSE, "Address already in use")
    v4_any = CannotListenError("", 7000, in_use)
    v6_any = CannotListenError("::", 7000, in_use)
    dual = " (a tcp6 listener on :: takes IPv4 connections too"
    assert own_port_hint(v4_any, [IPv6Address("TCP", "::", 7000)]).startswith(dual)
    assert own_port_hint(v6_any, [IPv4Address("TCP", "0.0.0.0", 7000)]).startswith(dual)
    assert own_port_hint(v4_any, [IPv4Address("TCP", "0.0.0.0", 7000)]) == (
        " (an earlier --port of this echod listens there)"
    )
    # someone else's port, another port, UDP, another error: no hint
    assert own_port_hint(v4_any, []) == ""
    assert own_port_hint(v4_any, [IPv6Address("TCP", "::", 7001)]) == ""
    assert own_port_hint(v4_any, [IPv6Address("UDP", "::", 7000)]) == ""
    denied = CannotListenError("", 7000, OSError(errno.EACCES, "Permission denied"))
    assert own_port_hint(denied, [IPv6Address("TCP", "::", 7000)]) == ""
    assert own_port_hint(OSError("no room"), [IPv6Address("TCP", "::", 7000)]) == ""


def test_a_link_local_interface_without_its_zone_says_so() -> None:
    """Binding fe80::1 without a zone: Linux's bare "Invalid argument"."""
    invalid = OSError(errno.EINVAL, "Invalid argument")
    message = listen_failure_message(CannotListenError("fe80::1", 7, invalid))
    assert message.endswith(
        "(fe80::1 is a link-local address: it needs its zone, the interface it is "
        "on, as in tcp6:7:interface=fe80\\:\\:1%eth0)"
    )
    other = CannotListenError("::1", 7, invalid)
    assert listen_failure_message(other) == str(other)


def test_lock_holder_names_the_pid(tmp_path: Path) -> None:
    lock = tmp_path / "e.sock.lock"
    assert lock_holder(str(lock)) == f"{lock} is held by another process."
    lock.symlink_to("4242")
    assert lock_holder(str(lock)).startswith(f"{lock} says process 4242 listens there")
    taken = CannotListenError(None, bytes(tmp_path / "e.sock"), "Cannot acquire lock")
    assert listen_failure_message(taken).startswith(
        f"Couldn't listen on {tmp_path / 'e.sock'}: {lock} says process 4242"
    )
