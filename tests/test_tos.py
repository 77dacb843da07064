"""Unit tests of echod.tos: nc's -T names and numbers, and the socket option."""

from __future__ import annotations

import socket

import pytest

from echod.tos import TOS_NAMES, mark_listener, parse_tos, set_tos


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("ef", 0xB8),
        ("EF", 0xB8),
        ("af11", 0x28),
        ("af23", 0x58),
        ("af41", 0x88),
        ("af43", 0x98),
        ("cs0", 0x00),
        ("cs1", 0x20),
        ("cs7", 0xE0),
        ("lowdelay", 0x10),
        ("throughput", 0x08),
        ("reliability", 0x04),
        ("lowcost", 0x02),
        ("critical", 0xA0),
        ("inetcontrol", 0xC0),
        ("netcontrol", 0xE0),
        ("0", 0),
        ("184", 184),
        ("0xb8", 0xB8),
        ("255", 255),
    ],
)
def test_names_and_numbers_as_openbsd_nc(text: str, value: int) -> None:
    """The values of OpenBSD's <netinet/ip.h> IPTOS_* that nc's -T maps."""
    assert parse_tos(text) == value


@pytest.mark.parametrize("text", ["256", "-1", "0x100", "af44", "cs8", "", "1.5"])
def test_what_is_not_a_tos(text: str) -> None:
    with pytest.raises(ValueError, match=f"-T '{text}': not a TOS"):
        parse_tos(text)


def test_every_name_is_a_byte() -> None:
    assert all(0 <= value <= 255 for value in TOS_NAMES.values())


def test_set_on_ipv4_and_ipv6_sockets() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as four:
        set_tos(four, 0xB8)
        assert four.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 0xB8
    if not socket.has_ipv6:
        return
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as six:
        set_tos(six, 0x88)
        assert six.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS) == 0x88


def test_a_listener_is_marked_unless_it_is_not_ip() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        assert mark_listener(listener, 0x48)
        assert listener.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 0x48
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        assert not mark_listener(unix, 0x48)
