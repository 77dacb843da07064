"""The IP TOS byte (IPv6: traffic class) a client's packets carry, as nc's
C{-T}: a DiffServ code point (C{ef}, C{af11} to C{af43}, C{cs0} to C{cs7}),
one of the old TOS names, or a number (decimal, or hex with C{0x}).

For a path through firewalls and QoS policies that match on DSCP: the SYN
already carries it (L{echod.sockopts} sets it before the connect).
"""

from __future__ import annotations

import socket

TOS_NAMES: dict[str, int] = {
    "ef": 0xB8,
    **{f"af{c}{d}": (8 * c + 2 * d) << 2 for c in range(1, 5) for d in range(1, 4)},
    **{f"cs{n}": n << 5 for n in range(8)},
    # the precedences and TOS bits OpenBSD nc also names
    "critical": 0xA0,
    "inetcontrol": 0xC0,
    "netcontrol": 0xE0,
    "lowdelay": 0x10,
    "throughput": 0x08,
    "reliability": 0x04,
    "lowcost": 0x02,
}
"""nc's -T keywords and the TOS byte each stands for."""


def parse_tos(text: str) -> int:
    """The TOS byte for C{text}; ValueError, saying what is taken, if none."""
    name = text.lower()
    if name in TOS_NAMES:
        return TOS_NAMES[name]
    try:
        value = int(name, 16) if name.startswith("0x") else int(name, 10)
    except ValueError:
        value = -1
    if not 0 <= value <= 255:
        raise ValueError(
            f"-T {text!r}: not a TOS: a DiffServ name (ef, af11 ... af43, cs0 ... "
            "cs7), lowdelay, throughput, reliability, lowcost, critical, "
            "inetcontrol, netcontrol, or a number 0-255 (0x for hex)"
        )
    return value


def set_tos(skt: socket.socket, value: int) -> None:
    """Make C{skt}'s packets carry the TOS byte (IPv6: traffic class) C{value}."""
    if skt.family == socket.AF_INET6:
        skt.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, value)
    else:
        skt.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, value)


def mark_listener(handle: socket.socket, value: int) -> bool:
    """Mark what the listening socket C{handle} sends, and what the sockets it
    accepts send (Linux copies the option to each, and answers the SYN with
    it): True, or False for a socket that is not IP (a UNIX one)."""
    if handle.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    set_tos(handle, value)
    return True
