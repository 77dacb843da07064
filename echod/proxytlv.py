"""What a PROXY protocol v2 header says about the client's connection to the
proxy, beyond its addresses: the TLVs after them (the protocol's section 2.2).

HAProxy sends them with ``send-proxy-v2-ssl`` (or ``send-proxy-v2`` and
``proxy-v2-options ssl,ssl-cipher,authority,unique-id,crc32c,...``): the TLS
version, cipher and ALPN protocol the client made with the proxy, the host
name it asked for (SNI), the subject of its certificate, the proxy's unique
ID for the connection (its log's C{%ID}), and a CRC32C of the whole header.
echod keeps the ones worth a log line (L{ProxiedSession}), checks the CRC32C
when one is sent (a mismatch makes the header invalid, as the protocol says)
and ignores every other TLV (NETNS, NOOP, custom ones), as the protocol
allows.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from twisted.protocols.haproxy._exceptions import InvalidProxyHeader

from echod.layers import layers
from echod.logs import given, log_token

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

TYPE_ALPN = 0x01
TYPE_AUTHORITY = 0x02
TYPE_CRC32C = 0x03
TYPE_UNIQUE_ID = 0x05
TYPE_SSL = 0x20
SUBTYPE_SSL_VERSION = 0x21
SUBTYPE_SSL_CN = 0x22
SUBTYPE_SSL_CIPHER = 0x23
CLIENT_SSL = 0x01
CLIENT_CERT = 0x02 | 0x04  # PP2_CLIENT_CERT_CONN, PP2_CLIENT_CERT_SESS
"""The TLV types echod reads, and the SSL TLV's flags: the client spoke TLS;
it presented a certificate (on this connection, or in the session resumed)."""

MAX_TLVS = 4096
"""The most bytes of TLVs echod reads: HAProxy's, every option on, are a few
hundred; the bound keeps a header's CRC-32C (computed here, about 0.1 µs a
byte) from costing a connection more than half a millisecond."""

ADDRESS_LENGTHS = {0x1: 12, 0x2: 36, 0x3: 216}
"""Bytes of the address block by family (the high nibble of byte 13): IPv4,
IPv6, UNIX; the TLVs follow it."""


@dataclass(frozen=True)
class ProxiedSession:
    """The client's connection to the proxy, as the header's TLVs describe it."""

    authority: str | None = None
    """The host name the client asked the proxy for (TLS SNI)."""
    alpn: str | None = None
    """The application protocol the client and the proxy agreed on (ALPN)."""
    tls_version: str | None = None
    """The TLS version the client made with the proxy (None: not TLS)."""
    tls_cipher: str | None = None
    client_cn: str | None = None
    """The common name of the client's certificate, when it presented one."""
    client_verified: bool | None = None
    """Whether the proxy verified the certificate the client presented (None:
    it presented none)."""
    unique_id: str | None = None
    """The proxy's own ID for the connection (HAProxy's C{unique-id-format},
    C{%ID} in its log), to find one connection in both logs."""

    def log_fields(self) -> dict[str, str]:
        """The fields a connection's closed line adds for this session."""
        verified = None
        if self.client_verified is not None:
            verified = "yes" if self.client_verified else "no"
        return given(
            authority=self.authority,
            proxy_alpn=self.alpn,
            proxy_tls=self.tls_version,
            proxy_cipher=self.tls_cipher,
            proxy_client_cn=self.client_cn,
            proxy_client_verified=verified,
            unique_id=self.unique_id,
        )


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as the PROXY protocol's PP2_TYPE_CRC32C."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def tlvs(data: bytes, start: int) -> Iterator[tuple[int, int, bytes]]:
    """Each TLV of C{data} from C{start}: its type, where its value begins, the
    value; L{InvalidProxyHeader} if one runs past the end."""
    at = start
    while at < len(data):
        if at + 3 > len(data):
            raise InvalidProxyHeader("a TLV cut short")
        kind, length = data[at], struct.unpack("!H", data[at + 1 : at + 3])[0]
        if at + 3 + length > len(data):
            raise InvalidProxyHeader("a TLV past the header's end")
        yield kind, at + 3, data[at + 3 : at + 3 + length]
        at += 3 + length


def session_of(header: bytes) -> ProxiedSession | None:
    """What the v2 C{header}'s TLVs say (None for a v1 header, or a v2 one
    without them); L{InvalidProxyHeader}, saying why, for TLVs that overrun
    the header or exceed L{MAX_TLVS}, or a CRC32C that does not match it."""
    if not header.startswith(V2_SIGNATURE) or len(header) < 16:
        return None
    if header[12] & 0x0F == 0:  # LOCAL: the proxy's own connection
        return None
    start = 16 + ADDRESS_LENGTHS.get(header[13] >> 4, 0)
    if len(header) - start > MAX_TLVS:
        raise InvalidProxyHeader(f"TLVs of more than {MAX_TLVS} bytes")
    found: dict[str, Any] = {}
    for kind, at, value in tlvs(header, start):
        if kind == TYPE_CRC32C:
            zeroed = header[:at] + b"\0\0\0\0" + header[at + 4 :]
            if len(value) != 4 or crc32c(zeroed) != struct.unpack("!I", value)[0]:
                raise InvalidProxyHeader("a CRC32C that does not match")
        elif kind == TYPE_AUTHORITY and value:
            found["authority"] = log_token(value)
        elif kind == TYPE_ALPN and value:
            found["alpn"] = log_token(value)
        elif kind == TYPE_UNIQUE_ID and value:
            found["unique_id"] = log_token(value)
        elif kind == TYPE_SSL and len(value) >= 5 and value[0] & CLIENT_SSL:
            if value[0] & CLIENT_CERT:  # verify: 0 when the certificate passed
                found["client_verified"] = value[1:5] == b"\0\0\0\0"
            for sub, _, text in tlvs(value, 5):
                if not text:
                    continue  # nothing to say
                if sub == SUBTYPE_SSL_VERSION:
                    found["tls_version"] = log_token(text)
                elif sub == SUBTYPE_SSL_CIPHER:
                    found["tls_cipher"] = log_token(text)
                elif sub == SUBTYPE_SSL_CN:
                    found["client_cn"] = log_token(text)
    return ProxiedSession(**found) if found else None


def proxied_session(transport: Any) -> ProxiedSession | None:
    """The L{ProxiedSession} of the PROXY header under C{transport}, if any."""
    for layer in layers(transport):
        session = getattr(layer, "proxied_session", None)
        if session is not None:
            return session  # type: ignore[no-any-return]
    return None
