"""Network interfaces by name, for C{echod fetch --interface NAME} (curl's).

curl on Linux, given an interface name, binds its socket to that device
(C{SO_BINDTODEVICE}: the connection leaves by that interface whatever the
routing table prefers), and when that is not permitted (before Linux 5.7
it needs C{CAP_NET_RAW}) binds it to the interface's address of the
connection's IP version instead. This module does both:
L{interface_addresses} finds the addresses, L{InterfaceBinding.reactor}
makes Twisted's TCP endpoints bind their sockets to the device
(L{echod.sockopts}).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from echod import sockopts
from echod.sockopts import PreparingReactor

SIOCGIFADDR = 0x8915
"""Linux's ioctl for an interface's (first) IPv4 address."""

IF_INET6 = Path("/proc/net/if_inet6")
"""Linux's table of IPv6 addresses: address, index, prefix, scope, flags, name."""

_SCOPE_GLOBAL, _SCOPE_LINK = 0x00, 0x20
_RANK = {_SCOPE_GLOBAL: 0, _SCOPE_LINK: 2}  # global first, link-local last
_SKIPPED_FLAGS = 0x40 | 0x08  # IFA_F_TENTATIVE, IFA_F_DADFAILED: not usable


def is_interface(name: str) -> bool:
    """Whether C{name} is a network interface of this machine."""
    try:
        socket.if_nametoindex(name)
    except (OSError, ValueError):
        return False
    return True


def interface_addresses(name: str, if_inet6: Path = IF_INET6) -> dict[int, str]:
    """The address of each IP version (4, 6) the interface C{name} has: its
    first IPv4 address, and an IPv6 one, global before link-local (which is
    given with its zone, C{fe80::1%eth0}; loopback's C{::1} is neither).
    Empty when it has none."""
    found: dict[int, str] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("256s", name.encode()[:15])
        try:
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
        except OSError as e:
            if e.errno not in (errno.EADDRNOTAVAIL, errno.ENODEV):
                raise
        else:
            found[4] = socket.inet_ntoa(answer[20:24])
    try:
        table = if_inet6.read_text()
    except OSError:  # no IPv6 in this kernel
        table = ""
    candidates: list[tuple[int, str]] = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) != 6 or fields[5] != name:
            continue
        scope, flags = int(fields[3], 16), int(fields[4], 16)
        if flags & _SKIPPED_FLAGS:
            continue
        address = str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
        if scope == _SCOPE_LINK:
            address = f"{address}%{name}"
        candidates.append((_RANK.get(scope, 1), address))
    if candidates:
        found[6] = min(candidates)[1]
    return found


def may_bind_to_device(name: str) -> bool:
    """Whether this process may bind a socket to the interface C{name}
    (C{SO_BINDTODEVICE}: anyone since Linux 5.7, before it C{CAP_NET_RAW});
    tried on a socket of its own."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            bind_to_device(probe, name)
        except PermissionError:
            return False
    return True


def bind_to_device(skt: socket.socket, name: str) -> None:
    """Make C{skt} send and receive through the interface C{name} only."""
    skt.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode())


@dataclass(frozen=True)
class InterfaceBinding:
    """How a connection goes out by the interface C{name}: bound to the device
    (C{device}), or, where this process may not (or Twisted is not a release
    L{echod.sockopts} was tested with), from the interface's C{addresses}."""

    name: str
    device: bool
    addresses: dict[int, str] = field(default_factory=dict)
    why_not: str = "was not permitted (before Linux 5.7 it needs CAP_NET_RAW)"
    """Why the socket is not bound to the device."""

    @classmethod
    def of(cls, name: str) -> InterfaceBinding:
        """The binding this process can make to the interface C{name}."""
        if not sockopts.supported():
            why = "is not done on a Twisted release echod was not tested with"
            return cls(name, False, interface_addresses(name), why)
        if may_bind_to_device(name):
            return cls(name, True)
        return cls(name, False, interface_addresses(name))

    def source_for(self, address: str) -> str | None:
        """The local address to connect to C{address} from: none (the
        device decides), or the interface's of C{address}'s IP version;
        ValueError, saying why, when it has none."""
        if self.device:
            return None
        version = 6 if ":" in address else 4
        if version not in self.addresses:
            raise ValueError(
                f"--interface {self.name} has no IPv{version} address to reach "
                f"{address} from (binding to the interface itself {self.why_not})"
            )
        return self.addresses[version]

    def reactor(self, reactor: Any) -> Any:
        """The reactor for the connection: one binding to the device, or
        C{reactor} itself."""
        if not self.device:
            return reactor
        return PreparingReactor(reactor, partial(bind_to_device, name=self.name))

    def describe(self) -> str:
        """What the binding is, for C{-v}."""
        if self.device:
            return f"through the interface {self.name} (bound to the device)"
        shown = ", ".join(self.addresses.values()) or "none"
        return (
            f"from the interface {self.name}'s address ({shown}): binding to the "
            f"interface itself {self.why_not}"
        )
