"""Unit tests of echod.proxytlv: a PROXY v2 header's TLVs."""

from __future__ import annotations

import struct

import pytest
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader

from echod.proxytlv import (
    ProxiedSession,
    crc32c,
    proxied_session,
    session_of,
)
from tests.proxyheaders import proxy_v2, tlv

HAPROXY_2_6 = bytes.fromhex(
    "0d0a0d0a000d0a515549540a21110069"  # signature, PROXY TCP4, 105 bytes follow
    "7f0000017f0000018cd24844"  # 127.0.0.1:36050 to 127.0.0.1:18500
    "030004151556690200096563686f2e74657374050000"  # CRC32C, authority, unique ID
    "2000440100000000"  # SSL: the client spoke TLS; verify 0
    "210007544c5376312e33250005454332353624001165636473612d776974682d534841323536"
    "230016544c535f4145535f3235365f47434d5f534841333834"
)
"""What Debian's HAProxy 2.6 sent with send-proxy-v2-ssl-cn and proxy-v2-options
ssl-cipher,authority,unique-id,crc32c,cert-sig,cert-key (captured by hand)."""


HAPROXY_2_6_ALPN_UNIQUE_ID = bytes.fromhex(
    "0d0a0d0a000d0a515549540a211100697f0000017f000001ea36427c"  # 105 bytes follow
    "0300040d8702cc"  # CRC32C
    "0100046563686f"  # ALPN: echo
    "0200096563686f2e74657374"  # authority: echo.test
    "05002e37463030303030313a454133365f37463030303030313a343237435f364230394541"
    "36375f303030303a30343636"  # unique ID
    "20000f0100000000210007544c5376312e33"  # SSL: TLSv1.3
)
"""The same HAProxy, its frontend binding with C{alpn echo,x-other} and a
C{unique-id-format %{+X}o %ci:%cp_%fi:%fp_%Ts_%rt:%pid}, its server with
send-proxy-v2-ssl and proxy-v2-options unique-id,authority,crc32c, for a client
that offered ALPN echo (captured by hand)."""


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the Castagnoli check value


def test_what_haproxy_sends() -> None:
    assert session_of(HAPROXY_2_6) == ProxiedSession(
        authority="echo.test",
        tls_version="TLSv1.3",
        tls_cipher="TLS_AES_256_GCM_SHA384",
    )


def test_the_alpn_protocol_and_the_unique_id() -> None:
    session = session_of(HAPROXY_2_6_ALPN_UNIQUE_ID)
    assert session == ProxiedSession(
        authority="echo.test",
        alpn="echo",
        tls_version="TLSv1.3",
        unique_id="7F000001:EA36_7F000001:427C_6B09EA67_0000:0466",
    )
    assert list(session.log_fields()) == [
        "authority", "proxy_alpn", "proxy_tls", "unique_id"
    ]  # fmt: skip


def test_a_unique_id_is_one_token_in_the_log() -> None:
    session = session_of(proxy_v2(tlv(0x05, b"a b\nc")))
    assert session is not None and session.log_fields() == {
        "unique_id": "a\\x20b\\x0ac"
    }


def test_a_changed_byte_fails_haproxy_s_crc32c() -> None:
    changed = HAPROXY_2_6[:40] + b"x" + HAPROXY_2_6[41:]  # in the authority
    with pytest.raises(InvalidProxyHeader):
        session_of(changed)


def test_a_client_certificate_s_name() -> None:
    ssl = tlv(0x20, b"\x07\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.2") + tlv(0x22, b"m e"))
    session = ProxiedSession(
        tls_version="TLSv1.2", client_cn="m\\x20e", client_verified=True
    )  # one token
    assert session_of(proxy_v2(ssl)) == session
    failed = tlv(0x20, b"\x03\x00\x00\x00\x14" + tlv(0x22, b"me"))  # verify 20
    assert session_of(proxy_v2(failed)) == ProxiedSession(
        client_cn="me", client_verified=False
    )
    assert ProxiedSession(client_verified=False).log_fields() == {
        "proxy_client_verified": "no"
    }


@pytest.mark.parametrize(
    "header",
    [
        proxy_v2(b""),  # no TLVs
        proxy_v2(tlv(0x04, b"\0\0")),  # only a NOOP
        proxy_v2(tlv(0x02, b"")),  # an empty authority
        proxy_v2(tlv(0x20, b"\x00\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3"))),  # not TLS
        proxy_v2(tlv(0x02, b"local.test"), command=0x20),  # LOCAL: the proxy's own
        b"PROXY TCP4 127.0.0.9 127.0.0.1 1 2\r\n",  # v1
    ],
)
def test_nothing_to_say(header: bytes) -> None:
    assert session_of(header) is None


@pytest.mark.parametrize(
    "header",
    [
        proxy_v2(tlv(0x02, b"name")[:-1]),  # a value past the end
        proxy_v2(b"\x02\x00"),  # a length cut short
        proxy_v2(tlv(0x20, b"\x01\x00\x00\x00\x00" + b"\x21\x00\x09TLS")),  # a sub-TLV
        proxy_v2(tlv(0x03, b"\x00\x00\x00\x00")),  # a CRC32C that is not this header's
        proxy_v2(tlv(0x03, b"\x00\x00")),  # a CRC32C of two bytes
        proxy_v2(tlv(0x04, bytes(4094))),  # more than 4 KiB of TLVs: 4,097 bytes
    ],
)
def test_invalid_tlvs(header: bytes) -> None:
    with pytest.raises(InvalidProxyHeader):
        session_of(header)


def test_4_kib_of_tlvs_pass() -> None:
    assert session_of(proxy_v2(tlv(0x04, bytes(4089)) + tlv(0x02, b"x"))) is not None


def test_a_right_crc32c_passes() -> None:
    header = proxy_v2(tlv(0x03, b"\0\0\0\0") + tlv(0x02, b"ok.test"))
    crc = struct.pack("!I", crc32c(header))
    at = header.index(b"\x03\x00\x04") + 3
    signed = header[:at] + crc + header[at + 4 :]
    assert session_of(signed) == ProxiedSession(authority="ok.test")


def test_log_fields_leave_out_what_was_not_said() -> None:
    assert ProxiedSession(authority="a", tls_version="TLSv1.3").log_fields() == {
        "authority": "a",
        "proxy_tls": "TLSv1.3",
    }
    assert ProxiedSession(client_cn="me").log_fields() == {"proxy_client_cn": "me"}


class Layer:
    def __init__(self, transport: object = None, session: object = None) -> None:
        self.transport = transport
        self.proxied_session = session


def test_the_session_is_found_under_other_layers() -> None:
    session = ProxiedSession(authority="a")
    assert proxied_session(Layer(Layer(None, session))) == session
    assert proxied_session(Layer(Layer())) is None
    assert proxied_session(None) is None
