"""SO_REUSEPORT listeners, so that several echod processes share one TCP port.

With ``--reuse-port``, echod opens its C{tcp:} and C{tcp6:} listeners itself
with SO_REUSEPORT set and hands them to the reactor (C{adoptStreamPort}, a
public Twisted interface); every process that does the same on the same
address and port gets its own accept queue, and the kernel spreads new
connections across them. C{echod serve --workers N} starts N such processes.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint
from zope.interface import implementer


def raw_fields(text: str) -> list[str]:
    """C{text} split at the colons Twisted splits an endpoint string at (not
    at C{\\:}), each field left as written."""
    fields, current, escaped = [], "", False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append(current)
            current = ""
            continue
        current += char
    fields.append(current)
    return fields


def _unescaped(field: str) -> str:
    """A field with Twisted's backslash escapes undone."""
    out, escaped = "", False
    for char in field:
        if char == "\\" and not escaped:
            escaped = True
            continue
        out += char
        escaped = False
    return out


def split_description(description: str) -> tuple[str, list[str], dict[str, str]]:
    """An endpoint string as (type, positional args, keyword args), with
    Twisted's C{\\:} escapes undone."""
    parts = [_unescaped(field) for field in raw_fields(description)]
    kind, rest = parts[0], parts[1:]
    args = [p for p in rest if "=" not in p]
    kwargs = dict(p.split("=", 1) for p in rest if "=" in p)
    return kind, args, kwargs


@dataclass(frozen=True)
class ReusePortAddress:
    """Where a SO_REUSEPORT listener binds."""

    family: socket.AddressFamily
    interface: str
    port: int
    backlog: int


def reuse_port_address(description: str, backlog: int) -> ReusePortAddress | None:
    """The bind address of a C{tcp:}/C{tcp6:} description, or None for other types."""
    kind, args, kwargs = split_description(description)
    if kind not in ("tcp", "tcp6") or len(args) != 1:
        return None
    unknown = set(kwargs) - {"interface", "backlog"}
    if unknown:
        names = ", ".join(repr(name) for name in sorted(unknown))
        plural = "s" if len(unknown) > 1 else ""
        raise ValueError(f"unknown parameter{plural} {names} (with --reuse-port)")
    family = socket.AF_INET6 if kind == "tcp6" else socket.AF_INET
    default = "::" if kind == "tcp6" else "0.0.0.0"
    return ReusePortAddress(
        family, kwargs.get("interface", default), int(args[0]),
        int(kwargs.get("backlog", backlog)),
    )  # fmt: skip


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """A TCP server endpoint whose socket has SO_REUSEPORT set."""

    def __init__(self, reactor: Any, address: ReusePortAddress) -> None:
        self.reactor = reactor
        self.address = address

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        """Bind and listen now; the reactor adopts the socket."""
        a = self.address
        try:
            with socket.socket(a.family, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((a.interface, a.port))
                sock.listen(a.backlog)
                sock.setblocking(False)
                # adoptStreamPort duplicates the descriptor; ours closes here.
                port = self.reactor.adoptStreamPort(sock.fileno(), a.family, factory)
        except OSError as e:
            return defer.fail(e)
        return defer.succeed(port)
