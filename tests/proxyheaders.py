"""PROXY protocol v2 headers built by hand, for tests that send their own."""

from __future__ import annotations

import socket
import struct

from echod.proxytlv import V2_SIGNATURE


def tlv(kind: int, value: bytes) -> bytes:
    """One TLV: its type, its length, its value."""
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def proxy_v2(
    tlvs: bytes = b"",
    source: tuple[str, int] = ("127.0.0.9", 1),
    destination: tuple[str, int] = ("127.0.0.1", 2),
    command: int = 0x21,
    family: int = 0x11,
) -> bytes:
    """A v2 header (PROXY, TCP over IPv4 unless told) from C{source} to
    C{destination}, with C{tlvs} after the addresses."""
    addresses = socket.inet_aton(source[0]) + socket.inet_aton(destination[0])
    body = addresses + struct.pack("!HH", source[1], destination[1]) + tlvs
    return V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(body)) + body
